package resilient_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
)

// Each invalid option of NewThrottle is an *OptionError that names it,
// with the exact message; several are all reported.
func TestThrottleOptionsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		opt    resilient.ThrottleOption
		option string
		want   string // after "resilient: option: "
	}{
		{"k below one", resilient.WithAcceptMultiplier(0.5), "WithAcceptMultiplier", "k must be >= 1 and finite, got 0.5"},
		{"k NaN", resilient.WithAcceptMultiplier(math.NaN()), "WithAcceptMultiplier", "k must be >= 1 and finite, got NaN"},
		{"k infinite", resilient.WithAcceptMultiplier(math.Inf(1)), "WithAcceptMultiplier", "k must be >= 1 and finite, got +Inf"},
		{"window zero", resilient.WithThrottleWindow(0), "WithThrottleWindow", "d must be >= 10ns, got 0s"},
		{"window negative", resilient.WithThrottleWindow(-time.Second), "WithThrottleWindow", "d must be >= 10ns, got -1s"},
		{"nil option", nil, "NewThrottle", "nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th, err := resilient.NewThrottle(tt.opt)
			assert.Nil(t, th)
			requireOptionErrors(t, err, tt.option)
			assert.EqualError(t, err, "resilient: "+tt.option+": "+tt.want)
			assert.Panics(t, func() { resilient.MustNewThrottle(tt.opt) })
		})
	}
	t.Run("several", func(t *testing.T) {
		th, err := resilient.NewThrottle(nil, resilient.WithThrottleWindow(9), resilient.WithAcceptMultiplier(0))
		assert.Nil(t, th)
		requireOptionErrors(t, err, "NewThrottle", "WithThrottleWindow", "WithAcceptMultiplier")
	})
	_, err := resilient.New(resilient.WithThrottle(nil))
	requireOptionErrors(t, err, "WithThrottle")
	assert.EqualError(t, err, "resilient: WithThrottle: nil throttle")
}

// report feeds a throttle n attempts with outcome o, as an executor would.
func throttleReport(t *testing.T, th *resilient.Throttle, o resilient.Outcome, n int) {
	t.Helper()
	for range n {
		pm, err := th.Admit(t.Context(), 1)
		require.NoError(t, err)
		th.Done(pm, resilient.Report{Attempt: 1, Outcome: o})
	}
}

// throttleNever is a random source under which the throttle never refuses.
func throttleNever() float64 { return 0.9999999 }

// throttleAlways is a random source under which the throttle refuses whenever its
// probability is above 0.
func throttleAlways() float64 { return 0 }

// TestThrottleProbability checks the SRE formula,
// max(0, (requests − K·accepts)/(requests + 1)), over named mixes.
func TestThrottleProbability(t *testing.T) {
	tests := []struct {
		name                     string
		k                        float64
		success, fail, retry, ig int
		want                     float64
	}{
		{"empty", 2, 0, 0, 0, 0, 0},
		{"healthy", 2, 1000, 0, 0, 0, 0},
		{"half rejected, K=2", 2, 50, 0, 50, 0, 0},
		{"two thirds rejected, K=2", 2, 30, 0, 70, 0, (100 - 60.0) / 101},
		{"permanent failures are accepts", 2, 0, 40, 60, 0, (100 - 80.0) / 101},
		{"ignored attempts do not count", 2, 10, 0, 90, 1000, (100 - 20.0) / 101},
		{"total outage", 2, 0, 0, 99, 0, 99.0 / 100},
		{"K=1 throttles sooner", 1, 60, 0, 40, 0, (100 - 60.0) / 101},
		{"K=3 throttles later", 3, 30, 0, 70, 0, (100 - 90.0) / 101},
		{"batch of accepts not yet stamped", 2, 5, 0, 95, 0, (100 - 10.0) / 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				th := resilient.MustNewThrottle(resilient.WithAcceptMultiplier(tt.k), resilient.WithThrottleRandom(throttleNever))
				throttleReport(t, th, resilient.Success, tt.success)
				throttleReport(t, th, resilient.Fail, tt.fail)
				throttleReport(t, th, resilient.Retry, tt.retry)
				throttleReport(t, th, resilient.Ignore, tt.ig)
				assert.InDelta(t, tt.want, th.Probability(), 1e-12)
			})
		})
	}
}

// TestThrottleRefuses: with the probability above 0, attempts are refused
// locally at that rate, fail fast, and count as requests.
func TestThrottleRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := resilient.MustNewThrottle(resilient.WithThrottleRandom(throttleAlways))
		ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithThrottle(th))
		_, err := resilient.Do(t.Context(), protectFailing, ex)
		require.ErrorIs(t, err, errProtectUpstream)
		require.InDelta(t, 0.5, th.Probability(), 1e-12, "1 request, 0 accepts")

		var calls int
		_, err = resilient.Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 1, nil
		}, ex)
		assert.Zero(t, calls, "refused locally, the upstream is not called")
		require.ErrorIs(t, err, resilient.ErrThrottled)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, resilient.ReasonRejected, re.Reason)
		assert.Equal(t, 0, re.Attempts)
		assert.InDelta(t, 2.0/3, th.Probability(), 1e-12, "the refusal counts as a request")
	})
}

// TestThrottleRandomDraw: an attempt is refused when the draw falls below
// the probability, and admitted otherwise.
func TestThrottleRandomDraw(t *testing.T) {
	tests := []struct {
		name    string
		draw    float64
		refused bool
	}{
		{"draw below p", 0.49, true},
		{"draw at p", 0.5, false},
		{"draw above p", 0.51, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				th := resilient.MustNewThrottle(resilient.WithThrottleRandom(func() float64 { return tt.draw }))
				throttleReport(t, th, resilient.Retry, 1) // p = 1/2
				_, err := th.Admit(t.Context(), 1)
				if tt.refused {
					assert.ErrorIs(t, err, resilient.ErrThrottled)
				} else {
					assert.NoError(t, err)
				}
			})
		})
	}
}

// TestThrottleWindowSlides: history older than the window is forgotten, a
// tenth of the window at a time.
func TestThrottleWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := resilient.MustNewThrottle(resilient.WithThrottleWindow(10*time.Second), resilient.WithThrottleRandom(throttleNever))
		throttleReport(t, th, resilient.Retry, 99)
		require.InDelta(t, 0.99, th.Probability(), 1e-12)
		time.Sleep(5 * time.Second)
		throttleReport(t, th, resilient.Success, 40)
		assert.InDelta(t, (139-80.0)/140, th.Probability(), 1e-12, "both halves in the window")
		time.Sleep(5 * time.Second)
		assert.Zero(t, th.Probability(), "the failures left the window")
		time.Sleep(5 * time.Second)
		throttleReport(t, th, resilient.Retry, 1)
		assert.InDelta(t, 0.5, th.Probability(), 1e-12, "the successes left too")
		time.Sleep(time.Hour)
		assert.Zero(t, th.Probability())
	})
}

// TestThrottleOutage: in a total outage the throttle lets only a trickle
// reach the upstream, and once it recovers, stops refusing.
func TestThrottleOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		th := resilient.MustNewThrottle(resilient.WithThrottleWindow(time.Minute), resilient.WithThrottleRandom(r.Float64))
		ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithThrottle(th))
		var down atomic.Bool
		var reached int
		fn := func(context.Context) (int, error) {
			reached++
			if down.Load() {
				return 0, errProtectUpstream
			}
			return 1, nil
		}
		call := func(n int) (throttled int) {
			for range n {
				_, err := resilient.Do(t.Context(), fn, ex)
				if errors.Is(err, resilient.ErrThrottled) {
					throttled++
				}
				time.Sleep(10 * time.Millisecond)
			}
			return throttled
		}
		require.Zero(t, call(1000), "healthy: nothing refused")
		require.Equal(t, 1000, reached)

		down.Store(true)
		reached = 0
		call(6000) // one window: the healthy history leaves it
		warm := reached
		reached = 0
		throttled := call(3000)
		t.Logf("outage: %d of 6000, then %d of 3000 reached the upstream", warm, reached)
		assert.Equal(t, 3000, throttled+reached)
		assert.Less(t, reached, 30, "in a steady outage, all but a trickle is refused locally")
		assert.Positive(t, warm+reached, "a trickle still reaches the upstream")

		down.Store(false)
		var windows int
		for windows = 1; windows <= 30; windows++ {
			if call(6000) == 0 {
				break
			}
		}
		t.Logf("recovered in %d windows", windows)
		assert.LessOrEqual(t, windows, 30)
		reached = 0
		assert.Zero(t, call(1000), "recovered: nothing refused")
		assert.Equal(t, 1000, reached)
	})
}

// TestThrottleHammer: concurrent attempts from many goroutines keep the
// counts exact: every report is counted once.
func TestThrottleHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	const goroutines, each = 32, 500
	// K = 1 and half the attempts failing: the throttle refuses some, at
	// random, concurrently with the reports and refreshes.
	th := resilient.MustNewThrottle(resilient.WithThrottleRandom(rand.Float64), resilient.WithAcceptMultiplier(1))
	var refused, accepted atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				pm, err := th.Admit(context.Background(), 1)
				if err != nil {
					assert.ErrorIs(t, err, resilient.ErrThrottled)
					refused.Add(1)
					continue
				}
				o := resilient.Success
				if (g+i)%2 == 0 {
					o = resilient.Retry
				} else {
					accepted.Add(1)
				}
				th.Done(pm, resilient.Report{Attempt: 1, Outcome: o})
				if i%16 == 0 {
					p := th.Probability()
					assert.True(t, p >= 0 && p < 1, "p = %v", p)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("refused %d of %d", refused.Load(), goroutines*each)
	assert.Positive(t, refused.Load())
	// With K = 1, p = (requests − accepts)/(requests + 1): exact counts only.
	requests, accepts := float64(goroutines*each), float64(accepted.Load())
	assert.InDelta(t, (requests-accepts)/(requests+1), th.Probability(), 1e-12)
}

func TestThrottleSuccessPathAllocs(t *testing.T) {
	th := resilient.MustNewThrottle()
	ex := resilient.MustNew(resilient.WithThrottle(th))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
	assert.Zero(t, th.Probability())
}
