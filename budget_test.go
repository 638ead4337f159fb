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

var errProtectUpstream = errors.New("upstream: 503")

func protectFailing(context.Context) (int, error) { return 0, errProtectUpstream }

func protectSucceeding(context.Context) (int, error) { return 1, nil }

func TestBudgetOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		opt  resilient.BudgetOption
		want string
	}{
		{"ratio zero", resilient.WithRetryRatio(0), "resilient: WithRetryRatio: r must be in (0, 1], got 0"},
		{"ratio negative", resilient.WithRetryRatio(-0.1), "resilient: WithRetryRatio: r must be in (0, 1], got -0.1"},
		{"ratio above one", resilient.WithRetryRatio(1.5), "resilient: WithRetryRatio: r must be in (0, 1], got 1.5"},
		{"ratio NaN", resilient.WithRetryRatio(math.NaN()), "resilient: WithRetryRatio: r must be in (0, 1], got NaN"},
		{"ratio too fine", resilient.WithRetryRatio(1e-9), "resilient: WithRetryRatio: r must be at least 1e-06, got 1e-09"},
		{"burst zero", resilient.WithRetryBurst(0), "resilient: WithRetryBurst: n must be >= 1, got 0"},
		{"burst negative", resilient.WithRetryBurst(-3), "resilient: WithRetryBurst: n must be >= 1, got -3"},
		{"burst overflow", resilient.WithRetryBurst(math.MaxInt), "resilient: WithRetryBurst: n must be >= 1"},
		{"floor negative", resilient.WithMinRetryRate(-1), "resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got -1"},
		{"floor infinite", resilient.WithMinRetryRate(math.Inf(1)), "resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got +Inf"},
		{"floor NaN", resilient.WithMinRetryRate(math.NaN()), "resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got NaN"},
		{"nil option", nil, "resilient: NewBudget: nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := resilient.NewBudget(tt.opt)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Contains(t, err.Error(), tt.want)
			assert.Panics(t, func() { resilient.MustNewBudget(tt.opt) })
		})
	}
}

func TestBudgetOptionsValid(t *testing.T) {
	tests := []struct {
		name      string
		opts      []resilient.BudgetOption
		available float64
	}{
		{"defaults", nil, resilient.DefaultRetryBurst},
		{"burst", []resilient.BudgetOption{resilient.WithRetryBurst(3)}, 3},
		{"ratio one, no floor", []resilient.BudgetOption{resilient.WithRetryRatio(1), resilient.WithMinRetryRate(0)}, resilient.DefaultRetryBurst},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := resilient.NewBudget(tt.opts...)
			require.NoError(t, err)
			assert.Equal(t, tt.available, b.Available())
		})
	}
}

func TestWithBudgetNil(t *testing.T) {
	_, err := resilient.New(resilient.WithBudget(nil))
	require.Error(t, err)
	assert.Equal(t, "resilient: WithBudget: nil budget", err.Error())
}

// TestBudgetRefusalEndsCallAtOnce: a refused retry ends the call before the
// wait, with an error that names the budget and wraps the last error.
func TestBudgetRefusalEndsCallAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
		ex := resilient.MustNew(resilient.WithAttempts(10), resilient.WithBudget(b),
			resilient.WithBackoff(resilient.Constant(time.Second)), resilient.WithJitter(resilient.NoJitter))
		start := time.Now()
		var calls int
		_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 0, errProtectUpstream
		}, ex)
		assert.Equal(t, 2, calls, "one retry paid by the one token, the next refused")
		assert.Equal(t, time.Second, time.Since(start), "one wait, none after the refusal")
		require.ErrorIs(t, err, resilient.ErrBudgetExhausted)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		assert.ErrorIs(t, err, errProtectUpstream)
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, resilient.ReasonRejected, re.Reason)
		assert.Equal(t, 2, re.Attempts)
	})
}

// TestBudgetNeverRefusesFirstAttempt: an empty budget still lets every call
// make its first attempt.
func TestBudgetNeverRefusesFirstAttempt(t *testing.T) {
	b := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
	require.NoError(t, b.AllowRetry(2))
	require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
	ex := resilient.MustNew(resilient.WithAttempts(3), resilient.WithBudget(b))
	for range 20 {
		var calls int
		v, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 7, nil
		}, ex)
		require.NoError(t, err)
		assert.Equal(t, 7, v)
		assert.Equal(t, 1, calls)
	}
	assert.NoError(t, b.AllowRetry(1))
}

func TestBudgetAccounting(t *testing.T) {
	tests := []struct {
		name    string
		reports []resilient.Report
		want    float64
	}{
		{"first attempts deposit whatever the outcome", []resilient.Report{
			{Attempt: 1, Outcome: resilient.Success},
			{Attempt: 1, Outcome: resilient.Retry},
			{Attempt: 1, Outcome: resilient.Fail},
		}, 0.3},
		{"retries deposit nothing", []resilient.Report{
			{Attempt: 2, Outcome: resilient.Success},
			{Attempt: 3, Outcome: resilient.Retry},
		}, 0},
		{"ignored attempts deposit nothing", []resilient.Report{
			{Attempt: 1, Outcome: resilient.Ignore},
		}, 0},
		{"capped at the burst", func() []resilient.Report {
			rs := make([]resilient.Report, 100)
			for i := range rs {
				rs[i] = resilient.Report{Attempt: 1, Outcome: resilient.Success}
			}
			return rs
		}(), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := resilient.MustNewBudget(resilient.WithRetryBurst(2), resilient.WithMinRetryRate(0))
			require.NoError(t, b.AllowRetry(2))
			require.NoError(t, b.AllowRetry(3))
			require.Zero(t, b.Available())
			for _, r := range tt.reports {
				pm, err := b.Admit(t.Context(), r.Attempt)
				require.NoError(t, err)
				b.Done(pm, r)
			}
			assert.InDelta(t, tt.want, b.Available(), 1e-9)
		})
	}
}

// TestBudgetFloor: with the ratio's share spent, the floor still allows
// its rate of retries, refilled with time.
func TestBudgetFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(2))
		require.NoError(t, b.AllowRetry(2), "the token")
		require.NoError(t, b.AllowRetry(2), "floor, 1 of 2")
		require.NoError(t, b.AllowRetry(2), "floor, 2 of 2")
		require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
		time.Sleep(400 * time.Millisecond)
		require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted, "0.8 of a retry refilled")
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, b.AllowRetry(2), "one refilled after 500ms")
		require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
		time.Sleep(time.Hour)
		require.NoError(t, b.AllowRetry(2))
		require.NoError(t, b.AllowRetry(2))
		assert.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted, "the floor holds one second's worth")
	})
}

// TestBudgetOutageConverges: in a total outage, N callers sharing one
// budget make about 1 + ratio attempts per call, not the executor's max.
func TestBudgetOutageConverges(t *testing.T) {
	const (
		callers = 20
		calls   = 100 // per caller
		ratio   = 0.1
		burst   = 10
		maxAtt  = 5
	)
	tests := []struct {
		name   string
		budget bool
		lo, hi float64
	}{
		{"without budget", false, maxAtt, maxAtt},
		// Every first attempt pays ratio; the burst adds burst/(callers*calls).
		{"with budget", true, 1 + ratio, 1 + ratio + float64(burst)/(callers*calls) + 0.001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			synctest.Test(t, func(t *testing.T) {
				opts := []resilient.Option{
					resilient.WithAttempts(maxAtt),
					resilient.WithBackoff(resilient.Exponential(10*time.Millisecond, time.Second)),
				}
				if tt.budget {
					b := resilient.MustNewBudget(resilient.WithRetryRatio(ratio),
						resilient.WithRetryBurst(burst), resilient.WithMinRetryRate(0))
					opts = append(opts, resilient.WithBudget(b))
				}
				ex := resilient.MustNew(opts...)
				var attempts atomic.Int64
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range calls {
							_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
								attempts.Add(1)
								return 0, errProtectUpstream
							}, ex)
							assert.ErrorIs(t, err, errProtectUpstream)
							time.Sleep(100 * time.Millisecond)
						}
					})
				}
				wg.Wait()
				perCall := float64(attempts.Load()) / (callers * calls)
				t.Logf("attempts per call: %.4f", perCall)
				assert.GreaterOrEqual(t, perCall, tt.lo)
				assert.LessOrEqual(t, perCall, tt.hi)
			})
		})
	}
}

// TestBudgetSharedHammer: many goroutines on executors sharing one budget
// never get more retries than the budget funds.
func TestBudgetSharedHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		goroutines = 32
		calls      = 300
		burst      = 5
		ratio      = 0.25
	)
	b := resilient.MustNewBudget(resilient.WithRetryRatio(ratio), resilient.WithRetryBurst(burst), resilient.WithMinRetryRate(0))
	exs := []*resilient.Executor{
		resilient.MustNew(resilient.WithAttempts(4), resilient.WithBackoff(resilient.Constant(0)), resilient.WithBudget(b)),
		resilient.MustNew(resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0)), resilient.WithBudget(b)),
	}
	var firsts, retries atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ex := exs[g%len(exs)]
			for i := range calls {
				n := 0
				_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) {
					n++
					if n == 1 {
						firsts.Add(1)
					} else {
						retries.Add(1)
					}
					if (g+i)%3 == 0 {
						return 1, nil
					}
					return 0, errProtectUpstream
				}, ex)
				avail := b.Available()
				assert.True(t, avail >= 0 && avail <= burst, "balance %v out of [0, %d]", avail, burst)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(goroutines*calls), firsts.Load())
	funded := float64(burst) + ratio*float64(firsts.Load())
	assert.LessOrEqual(t, float64(retries.Load()), funded)
	assert.Positive(t, retries.Load())
}

func TestBudgetSuccessPathAllocs(t *testing.T) {
	b := resilient.MustNewBudget()
	ex := resilient.MustNew(resilient.WithBudget(b))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
}

// TestProtectSuccessPathAllocs: the budget, throttle and bulkhead together
// keep a prebuilt executor's success path free of allocations.
func TestProtectSuccessPathAllocs(t *testing.T) {
	ex := resilient.MustNew(
		resilient.WithBulkhead(resilient.MustNewBulkhead(4)),
		resilient.WithThrottle(resilient.MustNewThrottle()),
		resilient.WithBudget(resilient.MustNewBudget()),
	)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
}
