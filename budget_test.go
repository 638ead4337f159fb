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

var errProtectUpstream = errors.New("upstream: 503")

func protectFailing(context.Context) (int, error) { return 0, errProtectUpstream }

func protectSucceeding(context.Context) (int, error) { return 1, nil }

// Each invalid option of both budget constructors is an *OptionError that
// names it, with the exact message.
func TestBudgetOptionsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		opt    resilient.BudgetOption
		option string // "" for the constructor's name
		want   string // after "resilient: option: "
	}{
		{"ratio zero", resilient.WithRetryRatio(0), "WithRetryRatio", "r must be in (0, 1], got 0"},
		{"ratio negative", resilient.WithRetryRatio(-0.1), "WithRetryRatio", "r must be in (0, 1], got -0.1"},
		{"ratio above one", resilient.WithRetryRatio(1.5), "WithRetryRatio", "r must be in (0, 1], got 1.5"},
		{"ratio NaN", resilient.WithRetryRatio(math.NaN()), "WithRetryRatio", "r must be in (0, 1], got NaN"},
		{"ratio too fine", resilient.WithRetryRatio(1e-9), "WithRetryRatio", "r must be at least 1e-06, got 1e-09"},
		{"burst zero", resilient.WithRetryBurst(0), "WithRetryBurst", "n must be >= 1, got 0"},
		{"burst negative", resilient.WithRetryBurst(-3), "WithRetryBurst", "n must be >= 1, got -3"},
		{"burst overflow", resilient.WithRetryBurst(math.MaxInt), "WithRetryBurst", "n must be at most 9223372036854, got 9223372036854775807"},
		{"floor negative", resilient.WithMinRetryRate(-1), "WithMinRetryRate", "perSecond must be >= 0 and finite, got -1"},
		{"floor infinite", resilient.WithMinRetryRate(math.Inf(1)), "WithMinRetryRate", "perSecond must be >= 0 and finite, got +Inf"},
		{"floor NaN", resilient.WithMinRetryRate(math.NaN()), "WithMinRetryRate", "perSecond must be >= 0 and finite, got NaN"},
		{"nil option", nil, "", "nil option"},
	}
	constructors := []struct {
		name string
		new  func(...resilient.BudgetOption) (*resilient.Budget, error)
		must func(...resilient.BudgetOption) *resilient.Budget
	}{
		{"NewBudget", resilient.NewBudget, resilient.MustNewBudget},
		{"NewAdaptiveBudget", resilient.NewAdaptiveBudget, resilient.MustNewAdaptiveBudget},
	}
	for _, c := range constructors {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				option := tt.option
				if option == "" {
					option = c.name
				}
				b, err := c.new(tt.opt)
				assert.Nil(t, b)
				requireOptionErrors(t, err, option)
				assert.EqualError(t, err, "resilient: "+option+": "+tt.want)
				assert.Panics(t, func() { c.must(tt.opt) })
			})
		}
		t.Run(c.name+"/several", func(t *testing.T) {
			b, err := c.new(resilient.WithRetryRatio(2), resilient.WithRetryBurst(3), nil, resilient.WithMinRetryRate(-1))
			assert.Nil(t, b)
			requireOptionErrors(t, err, "WithRetryRatio", c.name, "WithMinRetryRate")
			assert.EqualError(t, err, "resilient: WithRetryRatio: r must be in (0, 1], got 2\n"+
				"resilient: "+c.name+": nil option\n"+
				"resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got -1")
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
	requireOptionErrors(t, err, "WithBudget")
	assert.EqualError(t, err, "resilient: WithBudget: nil budget")
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

// grpcThrottle is gRPC's retry throttling (A6, "Retry Throttling"), for
// comparison: a bucket of maxTokens, starting full; every failed attempt
// costs one token, every successful one earns ratio; retries are allowed
// while the bucket holds more than half of maxTokens.
type grpcThrottle struct {
	mu                sync.Mutex
	tokens, maxTokens float64
	ratio             float64
}

func newGRPCThrottle(maxTokens, ratio float64) *grpcThrottle {
	return &grpcThrottle{tokens: maxTokens, maxTokens: maxTokens, ratio: ratio}
}

func (g *grpcThrottle) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, nil
}

func (g *grpcThrottle) Done(_ resilient.Permit, r resilient.Report) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch r.Outcome {
	case resilient.Success:
		g.tokens = min(g.tokens+g.ratio, g.maxTokens)
	case resilient.Retry:
		g.tokens = max(g.tokens-1, 0)
	}
}

func (g *grpcThrottle) AllowRetry(int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tokens > g.maxTokens/2 {
		return nil
	}
	return resilient.ErrBudgetExhausted
}

// budgetSim is a simulated upstream and its callers: callers, each making
// calls one after another with a pause between them, through one executor
// of up to attempts attempts; each attempt takes latency and fails, on its
// own, with probability failure.
type budgetSim struct {
	callers  int
	attempts int
	latency  time.Duration
	pause    time.Duration
	warmup   time.Duration // calls started before it are not counted
	length   time.Duration
}

type budgetSimResult struct {
	calls, succeeded, requests    int64
	firstSucceeded, retriesFailed int64
}

// success is the share of calls that succeeded.
func (r budgetSimResult) success() float64 { return float64(r.succeeded) / float64(r.calls) }

// amplification is the number of upstream requests per call.
func (r budgetSimResult) amplification() float64 { return float64(r.requests) / float64(r.calls) }

// run runs the simulation in a synctest bubble; gate builds, inside the
// bubble, the policy under test (nil: none).
func (s budgetSim) run(t *testing.T, failure float64, gate func() resilient.Policy) budgetSimResult {
	t.Helper()
	var res budgetSimResult
	synctest.Test(t, func(t *testing.T) {
		opts := []resilient.Option{
			resilient.WithAttempts(s.attempts),
			resilient.WithBackoff(resilient.Exponential(20*time.Millisecond, time.Second)),
		}
		if gate != nil {
			opts = append(opts, resilient.WithPolicy(gate()))
		}
		ex := resilient.MustNew(opts...)
		start := time.Now()
		var calls, succeeded, requests, firstSucceeded, retriesFailed atomic.Int64
		var wg sync.WaitGroup
		for c := range s.callers {
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			var mu sync.Mutex // hedged attempts may run at once
			wg.Go(func() {
				for time.Since(start) < s.length {
					counted := time.Since(start) >= s.warmup
					var n atomic.Int64
					_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
						retry := n.Add(1) > 1
						if counted {
							requests.Add(1)
						}
						time.Sleep(s.latency)
						mu.Lock()
						failed := rng.Float64() < failure
						mu.Unlock()
						switch {
						case !counted:
						case failed && retry:
							retriesFailed.Add(1)
						case !failed && !retry:
							firstSucceeded.Add(1)
						}
						if failed {
							return 0, errProtectUpstream
						}
						return 1, nil
					}, ex)
					if counted {
						calls.Add(1)
						if err == nil {
							succeeded.Add(1)
						}
					}
					time.Sleep(s.pause)
				}
			})
		}
		wg.Wait()
		res = budgetSimResult{
			calls: calls.Load(), succeeded: succeeded.Load(), requests: requests.Load(),
			firstSucceeded: firstSucceeded.Load(), retriesFailed: retriesFailed.Load(),
		}
	})
	return res
}

// TestBudgetBrownoutVersusOutage compares, on a simulated upstream, the
// adaptive budget with no budget, the fixed-ratio budget as Finagle sets it
// up (20% of requests, 10 retries per second) and gRPC's retry throttling
// (10 tokens, ratio 0.1). In a brownout (30% of attempts fail, each on its
// own) a call's retries succeed, and the adaptive budget lets every call
// make them: success approaches 1-0.3^4. In an outage (every attempt fails)
// they do not, and it stops them: in steady state (after a warm-up) the
// upstream sees at most 1.2 requests per call. Run with -v for the table.
func TestBudgetBrownoutVersusOutage(t *testing.T) {
	sim := budgetSim{
		callers:  40,
		attempts: 4,
		latency:  10 * time.Millisecond,
		pause:    40 * time.Millisecond,
		warmup:   3 * time.Second,
		length:   20 * time.Second,
	}
	const brownout = 0.3
	ideal := 1 - math.Pow(brownout, float64(sim.attempts)) // every retry allowed
	tests := []struct {
		name string
		gate func() resilient.Policy
		// bounds asserted on the brownout's success and the outage's
		// amplification
		minSuccess, maxSuccess float64
		minAmp, maxAmp         float64
	}{
		{"no budget", nil, ideal - 0.01, 1, 4, 4},
		{"adaptive (default)", func() resilient.Policy { return resilient.MustNewAdaptiveBudget() }, ideal - 0.01, 1, 1, 1.2},
		{"fixed ratio 20% + 10/s (Finagle)", func() resilient.Policy {
			return resilient.MustNewBudget(resilient.WithRetryRatio(0.2), resilient.WithMinRetryRate(10))
		}, 0, ideal - 0.02, 1.2, 1.3},
		{"fixed ratio 10% + 1/s (NewBudget)", func() resilient.Policy { return resilient.MustNewBudget() }, 0, ideal - 0.05, 1.1, 1.2},
		{"gRPC throttling 10 / 0.1", func() resilient.Policy { return newGRPCThrottle(10, 0.1) }, 0, ideal - 0.05, 1, 1.01},
	}
	t.Logf("%-34s %10s %10s %10s %10s", "budget", "brownout", "brownout", "outage", "outage")
	t.Logf("%-34s %10s %10s %10s %10s", "", "success", "req/call", "success", "req/call")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := sim.run(t, brownout, tt.gate)
			o := sim.run(t, 1, tt.gate)
			t.Logf("%-34s %9.2f%% %10.3f %9.2f%% %10.3f", tt.name, 100*b.success(), b.amplification(), 100*o.success(), o.amplification())
			assert.GreaterOrEqual(t, b.success(), tt.minSuccess, "brownout success")
			assert.LessOrEqual(t, b.success(), tt.maxSuccess, "brownout success")
			assert.GreaterOrEqual(t, o.amplification(), tt.minAmp, "outage amplification")
			assert.LessOrEqual(t, o.amplification(), tt.maxAmp, "outage amplification")
			assert.Zero(t, o.succeeded)
		})
	}
}

// TestAdaptiveBudgetFailureSweep runs the adaptive budget's defaults through
// upstreams failing from 10% to 100% of attempts. Up to about a third of
// failures every call gets every retry it needs (success 1-p^4); beyond,
// the retries that fail never outnumber half the calls that succeeded at
// once (plus the burst, its debt, the floor, and one in flight per caller),
// so the load falls back towards one request per call as the upstream gets
// worse. Run with -v for the table.
func TestAdaptiveBudgetFailureSweep(t *testing.T) {
	sim := budgetSim{
		callers:  40,
		attempts: 4,
		latency:  10 * time.Millisecond,
		pause:    40 * time.Millisecond,
		warmup:   3 * time.Second,
		length:   20 * time.Second,
	}
	t.Logf("%8s %10s %10s %10s %14s %14s", "failure", "success", "1-p^4", "req/call", "first success", "failed retry")
	for _, p := range []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1} {
		r := sim.run(t, p, func() resilient.Policy { return resilient.MustNewAdaptiveBudget() })
		ideal := 1 - math.Pow(p, float64(sim.attempts))
		t.Logf("%7.0f%% %9.2f%% %9.2f%% %10.3f %14d %14d", 100*p, 100*r.success(), 100*ideal, r.amplification(), r.firstSucceeded, r.retriesFailed)
		if p <= 0.3 {
			assert.GreaterOrEqual(t, r.success(), ideal-0.01, "failure %v: every retry allowed", p)
		}
		// The model's bound; the warm-up's balance is at most the burst.
		bound := resilient.DefaultEarnRatio*float64(r.firstSucceeded) +
			2*resilient.DefaultRetryBurst + resilient.DefaultMinRetryRate*(sim.length-sim.warmup).Seconds() + float64(sim.callers)
		assert.LessOrEqual(t, float64(r.retriesFailed), bound, "failure %v", p)
	}
}

func TestAdaptiveBudgetDefaults(t *testing.T) {
	b, err := resilient.NewAdaptiveBudget()
	require.NoError(t, err)
	assert.True(t, b.Adaptive())
	assert.False(t, resilient.MustNewBudget().Adaptive())
	assert.Equal(t, float64(resilient.DefaultRetryBurst), b.Available(), "starts full")
	// Each success earns DefaultEarnRatio: from empty, two successes buy a retry.
	for b.Available() >= 1 {
		b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
	}
	require.NoError(t, b.AllowRetry(2), "the floor")
	b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
	require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted, "the floor's one retry a second is spent")
	b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	assert.InDelta(t, 1.0, b.Available(), 1e-9)
	assert.NoError(t, b.AllowRetry(2))
}

// TestAdaptiveBudgetAccounting: successes of first attempts earn, retries
// that fail cost one, and nothing else moves the balance.
func TestAdaptiveBudgetAccounting(t *testing.T) {
	tests := []struct {
		name    string
		reports []resilient.Report
		want    float64
	}{
		{"first attempts earn when they succeed", []resilient.Report{
			{Attempt: 1, Outcome: resilient.Success},
			{Attempt: 1, Outcome: resilient.Success},
			{Attempt: 1, Outcome: resilient.Retry},
			{Attempt: 1, Outcome: resilient.Fail},
		}, 3 + 2*0.5},
		{"a retry that succeeds costs nothing", []resilient.Report{
			{Attempt: 2, Outcome: resilient.Success},
			{Attempt: 4, Outcome: resilient.Success},
		}, 3},
		{"a retry that fails costs one", []resilient.Report{
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 3, Outcome: resilient.Retry},
		}, 1},
		{"a retry that ends the call permanently costs nothing", []resilient.Report{
			{Attempt: 2, Outcome: resilient.Fail},
		}, 3},
		{"ignored attempts count for nothing", []resilient.Report{
			{Attempt: 1, Outcome: resilient.Ignore},
			{Attempt: 2, Outcome: resilient.Ignore},
		}, 3},
		{"debt is kept below zero", []resilient.Report{
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 2, Outcome: resilient.Retry},
			{Attempt: 1, Outcome: resilient.Success},
		}, -2 + 0.5},
		{"earnings are capped at the burst", func() []resilient.Report {
			rs := make([]resilient.Report, 100)
			for i := range rs {
				rs[i] = resilient.Report{Attempt: 1, Outcome: resilient.Success}
			}
			return rs
		}(), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(5), resilient.WithMinRetryRate(0))
			b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
			b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
			require.InDelta(t, 3, b.Available(), 1e-9)
			for _, r := range tt.reports {
				pm, err := b.Admit(t.Context(), r.Attempt)
				require.NoError(t, err)
				b.Done(pm, r)
			}
			assert.InDelta(t, tt.want, b.Available(), 1e-9)
		})
	}
}

// TestAdaptiveBudgetAllowDoesNotWithdraw: allowing a retry takes nothing
// (its cost is settled by its outcome), so retries that are waiting for
// their backoff or running never starve the others.
func TestAdaptiveBudgetAllowDoesNotWithdraw(t *testing.T) {
	b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
	for range 100 {
		require.NoError(t, b.AllowRetry(2))
	}
	assert.InDelta(t, 1, b.Available(), 1e-9)
	assert.NoError(t, b.AllowRetry(1))
	b.Done(resilient.Permit{}, resilient.Report{Attempt: 3, Outcome: resilient.Retry})
	assert.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
	assert.NoError(t, b.AllowRetry(1), "first attempts are never refused")
}

// TestAdaptiveBudgetFloorPaysItsOwn: a retry the floor paid for is not
// charged again when it fails, so a long outage does not pile up a debt at
// the floor's rate that would hold retries back after the recovery.
func TestAdaptiveBudgetFloorPaysItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(1))
		b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
		require.Zero(t, b.Available())
		for range 3600 { // an hour of outage, one retry a second from the floor
			require.NoError(t, b.AllowRetry(2))
			b.Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Retry})
			require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
			time.Sleep(time.Second)
		}
		assert.Zero(t, b.Available(), "no debt from the floor's retries")
		b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		assert.NoError(t, b.AllowRetry(2), "two successes after the outage buy a retry")
	})
}

// TestAdaptiveBudgetOutageOnsetAndRecovery: when an outage begins, the
// retries allowed before the first failures are counted go out (at most
// the burst plus one per caller in flight), then calls make one attempt
// each; once the upstream is back, the debt is paid back by successes and
// retries resume.
func TestAdaptiveBudgetOutageOnsetAndRecovery(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		const (
			callers = 20
			burst   = 5
		)
		b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(burst), resilient.WithMinRetryRate(0))
		ex := resilient.MustNew(resilient.WithAttempts(4), resilient.WithBudget(b),
			resilient.WithBackoff(resilient.Exponential(10*time.Millisecond, time.Second)))
		var down atomic.Bool
		down.Store(true)
		var first, retries atomic.Int64
		phase := func(d time.Duration) {
			start := time.Now()
			first.Store(0)
			retries.Store(0)
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					for time.Since(start) < d {
						n := 0
						_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) {
							if n++; n == 1 {
								first.Add(1)
							} else {
								retries.Add(1)
							}
							time.Sleep(5 * time.Millisecond)
							if down.Load() {
								return 0, errProtectUpstream
							}
							return 1, nil
						}, ex)
						time.Sleep(20 * time.Millisecond)
					}
				})
			}
			wg.Wait()
		}
		phase(10 * time.Second)
		t.Logf("outage: %d calls, %d retries, balance %.1f", first.Load(), retries.Load(), b.Available())
		assert.LessOrEqual(t, retries.Load(), int64(burst+callers), "onset: the burst and one per caller in flight")
		assert.Positive(t, retries.Load())
		debt := b.Available()
		assert.Less(t, debt, 0.0)
		assert.GreaterOrEqual(t, debt, float64(-callers))

		down.Store(false)
		phase(time.Second)
		assert.Equal(t, int64(0), retries.Load(), "nothing failed: nothing to retry")
		assert.Equal(t, float64(burst), b.Available(), "the debt is paid back and the bucket refilled")
	})
}

// TestAdaptiveBudgetSharedHammer: many goroutines on executors sharing one
// adaptive budget never get more failed retries than the budget funds:
// ratio times the first attempts that succeeded, plus the burst, plus one
// retry per goroutine allowed before the failures of the others counted;
// and the debt is never deeper than one retry per goroutine.
func TestAdaptiveBudgetSharedHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		goroutines = 32
		calls      = 300
		burst      = 5
		ratio      = 0.25
	)
	b := resilient.MustNewAdaptiveBudget(resilient.WithRetryRatio(ratio), resilient.WithRetryBurst(burst), resilient.WithMinRetryRate(0))
	exs := []*resilient.Executor{
		resilient.MustNew(resilient.WithAttempts(4), resilient.WithBackoff(resilient.Constant(0)), resilient.WithBudget(b)),
		resilient.MustNew(resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0)), resilient.WithBudget(b)),
	}
	var firstOK, retriesFailed, retriesOK atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ex := exs[g%len(exs)]
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range calls {
				n := 0
				_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) {
					n++
					ok := rng.IntN(2) == 0
					switch {
					case n == 1 && ok:
						firstOK.Add(1)
					case n > 1 && ok:
						retriesOK.Add(1)
					case n > 1:
						retriesFailed.Add(1)
					}
					if ok {
						return 1, nil
					}
					return 0, errProtectUpstream
				}, ex)
				avail := b.Available()
				assert.True(t, avail <= burst && avail > -goroutines, "balance %v out of (-%d, %d]", avail, goroutines, burst)
			}
		})
	}
	wg.Wait()
	funded := float64(burst) + ratio*float64(firstOK.Load()) + goroutines
	t.Logf("first attempts succeeded %d, retries succeeded %d, failed %d (funded %.0f)", firstOK.Load(), retriesOK.Load(), retriesFailed.Load(), funded)
	assert.LessOrEqual(t, float64(retriesFailed.Load()), funded)
	assert.Positive(t, retriesOK.Load())
	assert.Positive(t, retriesFailed.Load())
}

func TestAdaptiveBudgetSuccessPathAllocs(t *testing.T) {
	ex := resilient.MustNew(resilient.WithBudget(resilient.MustNewAdaptiveBudget()))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
}

// TestAdaptiveBudgetWithHedging: a hedge that loses its race costs nothing
// (the call succeeded), and hedges that fail cost one each.
func TestAdaptiveBudgetWithHedging(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(3), resilient.WithMinRetryRate(0))
		ex := resilient.MustNew(resilient.WithAttempts(3), resilient.WithHedge(10*time.Millisecond, 2), resilient.WithBudget(b))
		var n atomic.Int64
		// The first attempt is slow and wins; the hedge, started after
		// 10ms, is cancelled.
		v, err := resilient.DoHedged(t.Context(), func(ctx context.Context) (int, error) {
			if n.Add(1) == 1 {
				time.Sleep(15 * time.Millisecond)
				return 1, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, ex)
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, int64(2), n.Load(), "a hedge was started")
		assert.InDelta(t, 3, b.Available(), 1e-9, "the losing hedge cost nothing")

		// Every attempt fails: the two hedges cost one each.
		_, err = resilient.DoHedged(t.Context(), func(context.Context) (int, error) {
			time.Sleep(15 * time.Millisecond)
			return 0, errProtectUpstream
		}, ex)
		require.ErrorIs(t, err, errProtectUpstream)
		assert.InDelta(t, 1, b.Available(), 1e-9)
	})
}

// TestAdaptiveBudgetWithBreakerHooksAndGroup: composed with a breaker,
// hooks and a dedup group, a refusal by the budget is named by RejectedBy
// and seen by the hooks, the breaker still counts every attempt, and a
// shared execution counts once.
func TestAdaptiveBudgetWithBreakerHooksAndGroup(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
		br := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(100))
		var reasons []resilient.Reason
		var mu sync.Mutex
		ex := resilient.MustNew(
			resilient.WithAttempts(4),
			resilient.WithBackoff(resilient.Constant(time.Millisecond)),
			resilient.WithBreaker(br),
			resilient.WithBudget(b),
			resilient.WithHooks(resilient.Hooks{OnDone: func(ev resilient.DoneEvent) {
				mu.Lock()
				reasons = append(reasons, ev.Reason)
				mu.Unlock()
			}}),
		)
		g := resilient.MustNewGroup[string, int]()
		var attempts atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, 5)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = g.Do(t.Context(), "k", func(ctx context.Context) (int, error) {
					return resilient.Do(ctx, func(context.Context) (int, error) {
						attempts.Add(1)
						time.Sleep(10 * time.Millisecond)
						return 0, errProtectUpstream
					}, ex)
				})
			})
		}
		wg.Wait()
		assert.Equal(t, int64(2), attempts.Load(), "one shared call: a first attempt and the one retry the budget held")
		for _, err := range errs {
			require.ErrorIs(t, err, resilient.ErrBudgetExhausted)
			assert.ErrorIs(t, err, errProtectUpstream)
			assert.Equal(t, resilient.PolicyBudget, resilient.RejectedBy(err))
		}
		assert.Equal(t, []resilient.Reason{resilient.ReasonRejected}, reasons)
		assert.Equal(t, 2, br.Metrics().ConsecutiveFailures, "the breaker counted both attempts")
		assert.InDelta(t, 0, b.Available(), 1e-9)
	})
}
