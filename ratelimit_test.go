package resilient_test

import (
	"context"
	"errors"
	"math"
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

// Each invalid argument or option of NewRateLimiter is an *OptionError
// that names it, with the exact message; several are all reported.
func TestRateLimiterOptionsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		rate   float64
		opt    resilient.RateLimiterOption
		option string
		want   string // after "resilient: option: "
	}{
		{"rate zero", 0, nil, "NewRateLimiter", "perSecond must be in (0, 1e+09], got 0"},
		{"rate negative", -1, nil, "NewRateLimiter", "perSecond must be in (0, 1e+09], got -1"},
		{"rate NaN", math.NaN(), nil, "NewRateLimiter", "perSecond must be in (0, 1e+09], got NaN"},
		{"rate infinite", math.Inf(1), nil, "NewRateLimiter", "perSecond must be in (0, 1e+09], got +Inf"},
		{"rate too high", 2e9, nil, "NewRateLimiter", "perSecond must be in (0, 1e+09], got 2e+09"},
		{"burst zero", 1, resilient.WithBurst(0), "WithBurst", "n must be >= 1, got 0"},
		{"burst too large", 1e-9, resilient.WithBurst(math.MaxInt), "WithBurst", "n is too large for the rate, got 9223372036854775807"},
		{"max wait negative", 1, resilient.WithMaxWait(-time.Second), "WithMaxWait", "d must be >= 0, got -1s"},
		{"nil option", 1, nil, "NewRateLimiter", "nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []resilient.RateLimiterOption
			if tt.opt != nil || tt.name == "nil option" {
				opts = append(opts, tt.opt)
			}
			l, err := resilient.NewRateLimiter(tt.rate, opts...)
			assert.Nil(t, l)
			requireOptionErrors(t, err, tt.option)
			assert.EqualError(t, err, "resilient: "+tt.option+": "+tt.want)
			assert.Panics(t, func() { resilient.MustNewRateLimiter(tt.rate, opts...) })
		})
	}
	t.Run("several", func(t *testing.T) {
		l, err := resilient.NewRateLimiter(math.NaN(), resilient.WithBurst(-1), nil, resilient.WithMaxWait(-1))
		assert.Nil(t, l)
		requireOptionErrors(t, err, "NewRateLimiter", "WithBurst", "NewRateLimiter", "WithMaxWait")
	})
}

func TestWithRateLimitInvalid(t *testing.T) {
	var typedNil *resilient.RateLimiter
	tests := []struct {
		name    string
		opt     resilient.Option
		options []string
		want    string
	}{
		{"nil", resilient.WithRateLimit(nil), []string{"WithRateLimit"}, "resilient: WithRateLimit: nil limiter"},
		{"typed nil", resilient.WithRateLimit(typedNil), []string{"WithRateLimit"}, "resilient: WithRateLimit: nil limiter"},
		{"nil option", resilient.WithRateLimit(resilient.MustNewRateLimiter(1), nil), []string{"WithRateLimit"}, "resilient: WithRateLimit: nil option"},
		{"both", resilient.WithRateLimit(nil, resilient.RateLimitNoWait(), nil), []string{"WithRateLimit", "WithRateLimit"},
			"resilient: WithRateLimit: nil limiter\nresilient: WithRateLimit: nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resilient.New(tt.opt)
			requireOptionErrors(t, err, tt.options...)
			assert.EqualError(t, err, tt.want)
		})
	}
}

func TestRateLimiterZeroValueRefuses(t *testing.T) {
	var l resilient.RateLimiter
	assert.False(t, l.Allow())
	assert.ErrorIs(t, l.Wait(t.Context()), resilient.ErrRateLimited)
	assert.Zero(t, l.Rate())
}

func TestRateLimiterAccessors(t *testing.T) {
	l := resilient.MustNewRateLimiter(4, resilient.WithBurst(3))
	assert.Equal(t, 4.0, l.Rate())
	assert.Equal(t, 3, l.Burst())
	assert.Equal(t, 1, resilient.MustNewRateLimiter(4).Burst(), "smooth by default")
	assert.Equal(t, 1e9, resilient.MustNewRateLimiter(resilient.MaxRate).Rate())
}

// TestRateLimiterSmoothSpacesEvenly: in the smooth mode, callers that come
// together are let through one by one, exactly 1/rate apart, in the order
// they asked.
func TestRateLimiterSmoothSpacesEvenly(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(10)
		start := time.Now()
		var mu sync.Mutex
		got := map[int]time.Duration{}
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				time.Sleep(time.Duration(i)) // asks in order i
				require.NoError(t, l.Wait(t.Context()))
				mu.Lock()
				got[i] = time.Since(start)
				mu.Unlock()
			})
		}
		wg.Wait()
		for i := range 5 {
			assert.Equal(t, time.Duration(i)*100*time.Millisecond, got[i].Truncate(time.Millisecond), "caller %d", i)
		}
	})
}

// TestRateLimiterBursty: in the bursty mode a full bucket lets burst events
// go at once, then the pace is the rate; it refills with time, up to burst.
func TestRateLimiterBursty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(10, resilient.WithBurst(3))
		for i := range 3 {
			assert.True(t, l.Allow(), "burst %d", i)
		}
		assert.False(t, l.Allow())
		start := time.Now()
		require.NoError(t, l.Wait(t.Context()))
		assert.Equal(t, 100*time.Millisecond, time.Since(start))
		time.Sleep(10 * time.Second)
		n := 0
		for l.Allow() {
			n++
		}
		assert.Equal(t, 3, n, "a long quiet spell refills the burst, no more")
	})
}

// TestRateLimiterAllowNeverJumpsTheQueue: a caller of Allow does not take
// the token a waiter is waiting for.
func TestRateLimiterAllowNeverJumpsTheQueue(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(10)
		require.True(t, l.Allow())
		done := make(chan time.Duration, 1)
		start := time.Now()
		go func() {
			assert.NoError(t, l.Wait(t.Context()))
			done <- time.Since(start)
		}()
		synctest.Wait() // the waiter has its slot, at 100ms
		time.Sleep(100 * time.Millisecond)
		assert.False(t, l.Allow(), "the token due now is the waiter's")
		synctest.Wait()
		assert.Equal(t, 100*time.Millisecond, <-done)
		time.Sleep(100 * time.Millisecond)
		assert.True(t, l.Allow())
	})
}

// TestRateLimiterWaitPastDeadlineFailsAtOnce: a wait that would end at or
// after the context's deadline, or last longer than the maximum wait, is
// refused at once and takes no token.
func TestRateLimiterWaitPastDeadlineFailsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(1, resilient.WithMaxWait(2*time.Second))
		require.True(t, l.Allow())
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		assert.ErrorIs(t, l.Wait(ctx), resilient.ErrRateLimited, "due at 1s, the deadline")
		assert.Zero(t, time.Since(start))
		ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second+time.Nanosecond)
		defer cancel2()
		assert.NoError(t, l.Wait(ctx2), "the refusal took no token: due at 1s, before this deadline")
		assert.Equal(t, time.Second, time.Since(start))

		// Two seconds of waits queued: the next one would wait 2s, allowed;
		// the one after, 3s, is over the maximum.
		start = time.Now()
		l2 := resilient.MustNewRateLimiter(1, resilient.WithMaxWait(2*time.Second))
		require.True(t, l2.Allow())
		var wg sync.WaitGroup
		wg.Go(func() { assert.NoError(t, l2.Wait(t.Context())) }) // 1s
		synctest.Wait()
		wg.Go(func() { assert.NoError(t, l2.Wait(t.Context())) }) // 2s
		synctest.Wait()
		assert.ErrorIs(t, l2.Wait(t.Context()), resilient.ErrRateLimited, "3s is over the maximum wait")
		wg.Wait()
		assert.Equal(t, 2*time.Second, time.Since(start))
	})
}

// TestRateLimiterMaxWaitZeroNeverWaits: WithMaxWait(0) makes Wait behave
// as Allow.
func TestRateLimiterMaxWaitZeroNeverWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(1, resilient.WithMaxWait(0))
		assert.NoError(t, l.Wait(t.Context()))
		assert.ErrorIs(t, l.Wait(t.Context()), resilient.ErrRateLimited)
		time.Sleep(time.Second)
		assert.NoError(t, l.Wait(t.Context()))
	})
}

// TestRateLimiterCancelledWaiterGivesBack: a waiter whose context ends
// returns the context's error, and gives its slot back when nobody asked
// after it.
func TestRateLimiterCancelledWaiterGivesBack(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(1)
		require.True(t, l.Allow())
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- l.Wait(ctx) }()
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		cancel()
		synctest.Wait()
		assert.ErrorIs(t, <-errc, context.Canceled)
		start := time.Now()
		require.NoError(t, l.Wait(t.Context()))
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "the cancelled slot, at 1s, was given back")

		// An already cancelled context: refused at once when a wait is
		// needed, and nothing is taken.
		done, cancelDone := context.WithCancel(t.Context())
		cancelDone()
		assert.ErrorIs(t, l.Wait(done), context.Canceled)
		start = time.Now()
		require.NoError(t, l.Wait(t.Context()))
		assert.Equal(t, time.Second, time.Since(start))
	})
}

// TestRateLimiterFairUnderContention: many goroutines waiting on one
// limiter are served in turn: the rate is never exceeded, nobody starves,
// and each one's longest wait is bounded by the number of callers.
func TestRateLimiterFairUnderContention(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		const (
			goroutines = 50
			events     = 20 // each
			rate       = 100.0
		)
		interval := time.Duration(float64(time.Second) / rate)
		l := resilient.MustNewRateLimiter(rate)
		start := time.Now()
		var mu sync.Mutex
		var times []time.Duration
		longest := make([]time.Duration, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for range events {
					t0 := time.Now()
					require.NoError(t, l.Wait(t.Context()))
					longest[g] = max(longest[g], time.Since(t0))
					mu.Lock()
					times = append(times, time.Since(start))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Len(t, times, goroutines*events)
		for i := 1; i < len(times); i++ {
			assert.GreaterOrEqual(t, times[i]-times[i-1], interval, "event %d: the rate is exceeded", i)
		}
		assert.Equal(t, time.Duration(goroutines*events-1)*interval, times[len(times)-1], "no slot was lost")
		for g, d := range longest {
			assert.LessOrEqual(t, d, goroutines*interval, "goroutine %d waited longer than its turn", g)
		}
	})
}

// TestRateLimiterAllowHammer: under many goroutines on real time, Allow
// never lets more through than the burst plus the rate over the time
// elapsed.
func TestRateLimiterAllowHammer(t *testing.T) {
	const rate, burst = 1000.0, 20
	l := resilient.MustNewRateLimiter(rate, resilient.WithBurst(burst))
	start := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 2000 {
				if l.Allow() {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	assert.LessOrEqual(t, float64(allowed.Load()), burst+rate*elapsed.Seconds()+1)
	assert.GreaterOrEqual(t, allowed.Load(), int64(burst))
}

// TestWithRateLimitThroughExecutor: every attempt takes a token, retries
// included, waiting for it; a wait past the deadline ends the call at once,
// as a rejection named by RejectedBy, with the last attempt's error.
func TestWithRateLimitThroughExecutor(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(10)
		ex := resilient.MustNew(resilient.WithRateLimit(l), resilient.WithAttempts(3), resilient.WithBackoff(resilient.Constant(0)))
		start := time.Now()
		var at []time.Duration
		_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
			at = append(at, time.Since(start))
			return 0, errProtectUpstream
		}, ex)
		require.ErrorIs(t, err, resilient.ErrExhausted)
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, at, "retries wait for their token")

		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		start = time.Now()
		calls := 0
		_, err = resilient.Do(ctx, func(context.Context) (int, error) { calls++; return 0, errProtectUpstream }, ex)
		assert.Equal(t, 1, calls)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "waited for the first token only")
		require.ErrorIs(t, err, resilient.ErrRateLimited)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		assert.ErrorIs(t, err, errProtectUpstream)
		assert.Equal(t, resilient.PolicyRateLimit, resilient.RejectedBy(err))
	})
}

// TestWithRateLimitOptions: RateLimitFirstAttempts exempts retries;
// RateLimitNoWait refuses at once.
func TestWithRateLimitOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(1)
		ex := resilient.MustNew(resilient.WithRateLimit(l, resilient.RateLimitFirstAttempts()), resilient.WithAttempts(3),
			resilient.WithBackoff(resilient.Constant(0)))
		start := time.Now()
		calls := 0
		_, err := resilient.Do(t.Context(), func(context.Context) (int, error) { calls++; return 0, errProtectUpstream }, ex)
		require.ErrorIs(t, err, resilient.ErrExhausted)
		assert.Equal(t, 3, calls)
		assert.Zero(t, time.Since(start), "retries take no token")

		noWait := resilient.MustNew(resilient.WithRateLimit(l, resilient.RateLimitNoWait()))
		_, err = resilient.Do(t.Context(), protectSucceeding, noWait)
		require.ErrorIs(t, err, resilient.ErrRateLimited)
		assert.Zero(t, time.Since(start))
		time.Sleep(time.Second)
		_, err = resilient.Do(t.Context(), protectSucceeding, noWait)
		assert.NoError(t, err)
	})
}

// foreignLimiter is a Limiter that is not ours, as x/time/rate's is: its
// refusals are its own errors.
type foreignLimiter struct {
	allow bool
	err   error
}

func (f *foreignLimiter) Allow() bool { return f.allow }
func (f *foreignLimiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.err
}

// TestWithRateLimitForeignLimiter: another limiter's refusal is reported as
// ErrRateLimited, wrapping its error; a wait ended by the context ends the
// call with the context's reason, not as a rejection.
func TestWithRateLimitForeignLimiter(t *testing.T) {
	errOwn := errors.New("rate: Wait(n=1) would exceed context deadline")
	ex := resilient.MustNew(resilient.WithRateLimit(&foreignLimiter{err: errOwn}))
	_, err := resilient.Do(t.Context(), protectSucceeding, ex)
	require.ErrorIs(t, err, resilient.ErrRateLimited)
	assert.ErrorIs(t, err, errOwn)
	assert.Equal(t, resilient.PolicyRateLimit, resilient.RejectedBy(err))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = resilient.Do(ctx, protectSucceeding, ex)
	var re *resilient.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, resilient.ReasonCanceled, re.Reason)
	assert.Empty(t, resilient.RejectedBy(err))

	ok := resilient.MustNew(resilient.WithRateLimit(&foreignLimiter{allow: true}, resilient.RateLimitNoWait()))
	_, err = resilient.Do(t.Context(), protectSucceeding, ok)
	assert.NoError(t, err)
}

// TestWithRateLimitHedgesTakeTokens: a hedge is an attempt: it takes a
// token, and waits for it.
func TestWithRateLimitHedgesTakeTokens(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		l := resilient.MustNewRateLimiter(10)
		ex := resilient.MustNew(resilient.WithRateLimit(l), resilient.WithHedge(20*time.Millisecond, 2))
		start := time.Now()
		var starts []time.Duration
		var mu sync.Mutex
		_, err := resilient.DoHedged(t.Context(), func(ctx context.Context) (int, error) {
			mu.Lock()
			starts = append(starts, time.Since(start))
			mu.Unlock()
			select {
			case <-time.After(time.Second):
				return 1, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, ex)
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond}, starts, "the hedge, due at 20ms, waited for its token")
	})
}

func TestRateLimitSuccessPathAllocs(t *testing.T) {
	ex := resilient.MustNew(resilient.WithRateLimit(resilient.MustNewRateLimiter(resilient.MaxRate, resilient.WithBurst(1<<20))))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
}
