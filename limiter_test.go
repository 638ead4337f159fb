package resilient_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
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

// queueUpstream is a simulated upstream with a fixed capacity: capacity
// requests are served in parallel, each taking service (±jitter); the others
// wait in a queue, first come first served. Its latency is the service time
// while at most capacity requests are in flight, and grows with the queue
// beyond.
type queueUpstream struct {
	slots   chan struct{} // blocked senders are served in order
	service time.Duration
	jitter  float64 // a share of service
	mu      sync.Mutex
	rng     *rand.Rand
}

func newQueueUpstream(capacity int, service time.Duration, jitter float64) *queueUpstream {
	return &queueUpstream{
		slots:   make(chan struct{}, capacity),
		service: service,
		jitter:  jitter,
		rng:     rand.New(rand.NewPCG(1, 2)),
	}
}

func (u *queueUpstream) call(ctx context.Context) (int, error) {
	select {
	case u.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-u.slots }()
	u.mu.Lock()
	d := time.Duration(float64(u.service) * (1 + u.jitter*(2*u.rng.Float64()-1)))
	u.mu.Unlock()
	time.Sleep(d)
	return 1, nil
}

// limiterSim drives a queueUpstream with requests arriving at a steady rate,
// each one call through ex, and records what callers see.
type limiterSim struct {
	capacity int
	service  time.Duration
	jitter   float64       // of the service time, ±
	arrivals float64       // per second
	length   time.Duration // of the run
	measure  time.Duration // the last part of the run, which is measured
	// lose, if not zero, is how many of its slots the upstream loses
	// halfway through the run.
	lose int
}

type limiterSimResult struct {
	throughput float64       // calls that succeeded per second, while measured
	p99        time.Duration // of the calls that succeeded, while measured
	rejected   float64       // share of calls refused, while measured
	limits     []int         // the limit every 100ms while measured
}

// run runs the simulation in a synctest bubble; limiter builds, inside the
// bubble, the limiter under test (nil: none).
func (s limiterSim) run(t *testing.T, limiter func() *resilient.ConcurrencyLimiter) limiterSimResult {
	t.Helper()
	var res limiterSimResult
	synctest.Test(t, func(t *testing.T) {
		up := newQueueUpstream(s.capacity, s.service, s.jitter)
		opts := []resilient.Option{resilient.WithAttempts(1)}
		var lim *resilient.ConcurrencyLimiter
		if limiter != nil {
			lim = limiter()
			opts = append(opts, resilient.WithConcurrencyLimit(lim))
		}
		ex := resilient.MustNew(opts...)
		start := time.Now()
		from := start.Add(s.length - s.measure)
		var (
			mu        sync.Mutex
			latencies []time.Duration
			calls     int
			rejected  int
			wg        sync.WaitGroup
		)
		every := time.Duration(float64(time.Second) / s.arrivals)
		if s.lose > 0 {
			wg.Go(func() {
				time.Sleep(s.length / 2)
				for range s.lose { // queued behind the requests waiting, then held
					up.slots <- struct{}{}
				}
			})
		}
		wg.Go(func() {
			for time.Since(start) < s.length {
				if lim != nil && !time.Now().Before(from) && time.Since(from)%(100*time.Millisecond) < every {
					res.limits = append(res.limits, lim.Limit())
				}
				wg.Go(func() {
					t0 := time.Now()
					_, err := resilient.Do(t.Context(), up.call, ex)
					if t0.Before(from) {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					calls++
					if err != nil {
						rejected++
						return
					}
					latencies = append(latencies, time.Since(t0))
				})
				time.Sleep(every)
			}
		})
		wg.Wait()
		slices.Sort(latencies)
		res.throughput = float64(len(latencies)) / s.measure.Seconds()
		res.p99 = latencies[len(latencies)*99/100]
		res.rejected = float64(rejected) / float64(calls)
	})
	return res
}

// TestConcurrencyLimiterConverges runs each algorithm against an upstream of
// capacity C fed with 1.5 times what it can serve, starting from a limit far
// below C and far above it. The limit must settle within 20% of C, callers
// that get through must see a p99 latency within twice the uncontended one,
// and the throughput must stay within 10% of the upstream's capacity. Run
// with -v for the figures.
func TestConcurrencyLimiterConverges(t *testing.T) {
	const capacity = 20
	sim := limiterSim{
		capacity: capacity,
		service:  10 * time.Millisecond,
		jitter:   0.1,
		arrivals: 1.5 * capacity / 0.010,
		length:   20 * time.Second,
		measure:  10 * time.Second,
	}
	// Uncontended: a tenth of the capacity, no limiter.
	quiet := sim
	quiet.arrivals = capacity / 0.010 / 10
	base := quiet.run(t, nil)
	t.Logf("uncontended p99 %v", base.p99)
	unlimited := sim.run(t, nil)
	t.Logf("no limiter: throughput %.0f/s, p99 %v", unlimited.throughput, unlimited.p99)

	capacityRate := float64(capacity) / sim.service.Seconds()
	tests := []struct {
		name string
		opts []resilient.ConcurrencyOption
	}{
		{"gradient2 from below", []resilient.ConcurrencyOption{resilient.WithInitialLimit(2)}},
		{"gradient2 from above", []resilient.ConcurrencyOption{resilient.WithInitialLimit(200)}},
		{"aimd from below", []resilient.ConcurrencyOption{resilient.WithInitialLimit(2),
			resilient.WithAIMD(resilient.AIMD{Slow: 12 * time.Millisecond})}},
		{"aimd from above", []resilient.ConcurrencyOption{resilient.WithInitialLimit(200),
			resilient.WithAIMD(resilient.AIMD{Slow: 12 * time.Millisecond})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sim.run(t, func() *resilient.ConcurrencyLimiter { return resilient.MustNewConcurrencyLimiter(tt.opts...) })
			lo, hi := slices.Min(r.limits), slices.Max(r.limits)
			t.Logf("limit in [%d, %d], throughput %.0f/s (%.1f%% of capacity), p99 %v (%.2fx), rejected %.1f%%",
				lo, hi, r.throughput, 100*r.throughput/capacityRate, r.p99, float64(r.p99)/float64(base.p99), 100*r.rejected)
			assert.GreaterOrEqual(t, float64(lo), 0.8*capacity, "limit")
			assert.LessOrEqual(t, float64(hi), 1.2*capacity, "limit")
			assert.LessOrEqual(t, r.p99, 2*base.p99, "p99")
			assert.GreaterOrEqual(t, r.throughput, 0.9*capacityRate, "throughput")
		})
	}
}

// TestConcurrencyLimiterFollowsCapacity: when the upstream loses half its
// capacity, the limit follows it down, and callers keep their latency.
func TestConcurrencyLimiterFollowsCapacity(t *testing.T) {
	const capacity = 20
	sim := limiterSim{
		capacity: capacity,
		service:  10 * time.Millisecond,
		jitter:   0.1,
		arrivals: 1.5 * capacity / 0.010,
		length:   20 * time.Second,
		measure:  5 * time.Second,
		lose:     capacity / 2,
	}
	quiet := sim
	quiet.arrivals, quiet.lose = capacity/0.010/10, 0
	base := quiet.run(t, nil)
	for _, tt := range []struct {
		name string
		opt  resilient.ConcurrencyOption
	}{
		{"gradient2", resilient.WithGradient2(resilient.Gradient2{})},
		{"aimd", resilient.WithAIMD(resilient.AIMD{Slow: 12 * time.Millisecond})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := sim.run(t, func() *resilient.ConcurrencyLimiter { return resilient.MustNewConcurrencyLimiter(tt.opt) })
			lo, hi := slices.Min(r.limits), slices.Max(r.limits)
			left := float64(capacity - sim.lose)
			t.Logf("limit in [%d, %d], throughput %.0f/s (%.1f%% of what is left), p99 %.2fx", lo, hi, r.throughput,
				100*r.throughput/(left/sim.service.Seconds()), float64(r.p99)/float64(base.p99))
			assert.GreaterOrEqual(t, float64(lo), 0.8*left)
			assert.LessOrEqual(t, float64(hi), 1.2*left)
			assert.LessOrEqual(t, r.p99, 2*base.p99)
			assert.GreaterOrEqual(t, r.throughput, 0.9*left/sim.service.Seconds())
		})
	}
}

// TestConcurrencyLimiterNoisyLatency: with the defaults, latency that
// varies by ±90% from one attempt to the next does not make Gradient2 take
// noise for a queue and starve the callers.
func TestConcurrencyLimiterNoisyLatency(t *testing.T) {
	const capacity = 20
	sim := limiterSim{
		capacity: capacity,
		service:  10 * time.Millisecond,
		jitter:   0.9,
		arrivals: 1.5 * capacity / 0.010,
		length:   20 * time.Second,
		measure:  10 * time.Second,
	}
	quiet := sim
	quiet.arrivals = capacity / 0.010 / 10
	base := quiet.run(t, nil)
	for _, initial := range []int{2, 200} {
		r := sim.run(t, func() *resilient.ConcurrencyLimiter {
			return resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(initial))
		})
		t.Logf("from %d: limit in [%d, %d], throughput %.1f%% of capacity, p99 %.2fx", initial,
			slices.Min(r.limits), slices.Max(r.limits), 100*r.throughput*sim.service.Seconds()/capacity, float64(r.p99)/float64(base.p99))
		assert.GreaterOrEqual(t, r.throughput, 0.85*capacity/sim.service.Seconds())
		assert.LessOrEqual(t, r.p99, 2*base.p99)
	}
}

// Each invalid option of NewConcurrencyLimiter is an *OptionError that
// names it, with the exact message; several are all reported, and so is
// every invalid field of one option.
func TestConcurrencyLimiterOptionsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		opt    resilient.ConcurrencyOption
		option string
		want   string // after "resilient: option: "
	}{
		{"initial zero", resilient.WithInitialLimit(0), "WithInitialLimit", "n must be >= 1, got 0"},
		{"bounds min zero", resilient.WithLimitBounds(0, 10), "WithLimitBounds", "need 1 <= min <= max, got min 0, max 10"},
		{"bounds max below min", resilient.WithLimitBounds(5, 4), "WithLimitBounds", "need 1 <= min <= max, got min 5, max 4"},
		{"wait negative", resilient.WithLimitWait(-time.Second), "WithLimitWait", "d must be >= 0, got -1s"},
		{"samples zero", resilient.WithMinSamples(0), "WithMinSamples", "n must be >= 1, got 0"},
		{"aimd slow negative", resilient.WithAIMD(resilient.AIMD{Slow: -1}), "WithAIMD", "Slow must be >= 0, got -1ns"},
		{"aimd backoff one", resilient.WithAIMD(resilient.AIMD{Backoff: 1}), "WithAIMD", "Backoff must be in [0.5, 1), got 1"},
		{"aimd backoff low", resilient.WithAIMD(resilient.AIMD{Backoff: 0.3}), "WithAIMD", "Backoff must be in [0.5, 1), got 0.3"},
		{"aimd backoff NaN", resilient.WithAIMD(resilient.AIMD{Backoff: math.NaN()}), "WithAIMD", "Backoff must be in [0.5, 1), got NaN"},
		{"aimd every field", resilient.WithAIMD(resilient.AIMD{Slow: -time.Second, Backoff: 2}), "WithAIMD",
			"Slow must be >= 0, got -1s; Backoff must be in [0.5, 1), got 2"},
		{"gradient tolerance below one", resilient.WithGradient2(resilient.Gradient2{Tolerance: 0.9}), "WithGradient2", "Tolerance must be >= 1 and finite, got 0.9"},
		{"gradient tolerance infinite", resilient.WithGradient2(resilient.Gradient2{Tolerance: math.Inf(1)}), "WithGradient2", "Tolerance must be >= 1 and finite, got +Inf"},
		{"gradient tolerance NaN", resilient.WithGradient2(resilient.Gradient2{Tolerance: math.NaN()}), "WithGradient2", "Tolerance must be >= 1 and finite, got NaN"},
		{"gradient smoothing above one", resilient.WithGradient2(resilient.Gradient2{Smoothing: 1.5}), "WithGradient2", "Smoothing must be in (0, 1], got 1.5"},
		{"gradient smoothing negative", resilient.WithGradient2(resilient.Gradient2{Smoothing: -0.1}), "WithGradient2", "Smoothing must be in (0, 1], got -0.1"},
		{"gradient probe every one", resilient.WithGradient2(resilient.Gradient2{ProbeEvery: 1}), "WithGradient2", "ProbeEvery must be >= 2, got 1"},
		{"gradient every field", resilient.WithGradient2(resilient.Gradient2{Tolerance: -1, Smoothing: 2, ProbeEvery: -3}), "WithGradient2",
			"Tolerance must be >= 1 and finite, got -1; Smoothing must be in (0, 1], got 2; ProbeEvery must be >= 2, got -3"},
		{"nil option", nil, "NewConcurrencyLimiter", "nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := resilient.NewConcurrencyLimiter(tt.opt)
			assert.Nil(t, c)
			requireOptionErrors(t, err, tt.option)
			assert.EqualError(t, err, "resilient: "+tt.option+": "+tt.want)
			assert.Panics(t, func() { resilient.MustNewConcurrencyLimiter(tt.opt) })
		})
	}
	t.Run("several", func(t *testing.T) {
		c, err := resilient.NewConcurrencyLimiter(resilient.WithInitialLimit(0), resilient.WithLimitBounds(1, 10),
			nil, resilient.WithAIMD(resilient.AIMD{Backoff: 3}), resilient.WithLimitWait(-1))
		assert.Nil(t, c)
		requireOptionErrors(t, err, "WithInitialLimit", "NewConcurrencyLimiter", "WithAIMD", "WithLimitWait")
	})
	_, err := resilient.New(resilient.WithConcurrencyLimit(nil))
	requireOptionErrors(t, err, "WithConcurrencyLimit")
	assert.EqualError(t, err, "resilient: WithConcurrencyLimit: nil limiter")
}

func TestConcurrencyLimiterDefaults(t *testing.T) {
	c, err := resilient.NewConcurrencyLimiter()
	require.NoError(t, err)
	assert.Equal(t, resilient.DefaultInitialLimit, c.Limit())
	assert.Equal(t, 0, c.InFlight())
	assert.Equal(t, 5, resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(2), resilient.WithLimitBounds(5, 9)).Limit(),
		"the initial limit is brought within the bounds")
	assert.Equal(t, 9, resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(20), resilient.WithLimitBounds(5, 9)).Limit())
}

// TestConcurrencyLimiterRefusesAtOnce: at the limit, an attempt is refused
// at once with ErrConcurrencyLimit, named by RejectedBy, and fn is not
// called; a retry refused keeps the call's last error.
func TestConcurrencyLimiterRefusesAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(1, 1))
		ex := resilient.MustNew(resilient.WithConcurrencyLimit(c), resilient.WithBackoff(resilient.Constant(time.Second)), resilient.WithJitter(resilient.NoJitter))
		hold := make(chan struct{})
		go func() {
			_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) { <-hold; return 1, nil }, ex)
		}()
		synctest.Wait()
		require.Equal(t, 1, c.InFlight())

		start := time.Now()
		called := false
		_, err := resilient.Do(t.Context(), func(context.Context) (int, error) { called = true; return 1, nil }, ex)
		assert.False(t, called)
		assert.Zero(t, time.Since(start))
		require.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		assert.Equal(t, resilient.PolicyConcurrency, resilient.RejectedBy(err))
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 0, re.Attempts)

		// The slot comes free after the first attempt of a call fails; its
		// retry, a second later, finds it taken again.
		close(hold)
		synctest.Wait()
		hold2 := make(chan struct{})
		n := 0
		go func() {
			time.Sleep(500 * time.Millisecond)
			_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) { <-hold2; return 1, nil }, ex)
		}()
		_, err = resilient.Do(t.Context(), func(context.Context) (int, error) { n++; return 0, errProtectUpstream }, ex)
		assert.Equal(t, 1, n)
		require.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
		assert.ErrorIs(t, err, errProtectUpstream, "the last attempt's error is kept")
		close(hold2)
	})
}

// TestConcurrencyLimiterWaits: with a wait, attempts over the limit queue
// for a slot in order of arrival, are refused when the wait passes, and
// leave on their context.
func TestConcurrencyLimiterWaits(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(1, 1), resilient.WithLimitWait(time.Second))
		p, err := c.Admit(t.Context(), 1)
		require.NoError(t, err)
		var order []int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * time.Millisecond)
				p, err := c.Admit(t.Context(), 1)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
				c.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
			})
		}
		time.Sleep(50 * time.Millisecond)
		c.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		wg.Wait()
		assert.Equal(t, []int{0, 1, 2}, order, "first come, first served")

		p, err = c.Admit(t.Context(), 1)
		require.NoError(t, err)
		start := time.Now()
		_, err = c.Admit(t.Context(), 1)
		assert.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
		assert.Equal(t, time.Second, time.Since(start), "refused when the wait passes")

		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start = time.Now()
		_, err = c.Admit(ctx, 1)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 300*time.Millisecond, time.Since(start))
		c.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		assert.Equal(t, 0, c.InFlight())
	})
}

// TestConcurrencyLimiterWaitEndedByCallerContext: through an executor, a
// wait ended by the caller's context ends the call with the context's
// reason, not as a rejection.
func TestConcurrencyLimiterWaitEndedByCallerContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(1, 1), resilient.WithLimitWait(time.Minute))
		ex := resilient.MustNew(resilient.WithConcurrencyLimit(c))
		p, err := c.Admit(t.Context(), 1)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = resilient.Do(ctx, protectSucceeding, ex)
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, resilient.ReasonDeadline, re.Reason)
		assert.Empty(t, resilient.RejectedBy(err))
		c.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	})
}

// TestAIMDSteps: AIMD grows by one per window in which the limit was used,
// holds when it was not, and shrinks by its backoff after a window with a
// failure or an attempt slower than its threshold.
func TestAIMDSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(10), resilient.WithMinSamples(1),
			resilient.WithAIMD(resilient.AIMD{Slow: 50 * time.Millisecond, Backoff: 0.5}))
		// window runs n attempts, all in flight at once, each taking d and
		// ending with outcome o: a window, when n is the limit.
		window := func(n int, d time.Duration, o resilient.Outcome) {
			var wg sync.WaitGroup
			for range n {
				p, err := c.Admit(t.Context(), 1)
				require.NoError(t, err)
				wg.Go(func() {
					time.Sleep(d)
					c.Done(p, resilient.Report{Attempt: 1, Outcome: o})
				})
			}
			wg.Wait()
		}
		window(10, 10*time.Millisecond, resilient.Success)
		assert.Equal(t, 11, c.Limit(), "used: +1")
		window(11, 10*time.Millisecond, resilient.Success)
		assert.Equal(t, 12, c.Limit())
		window(12, 60*time.Millisecond, resilient.Success)
		assert.Equal(t, 6, c.Limit(), "slower than the threshold: halved")
		window(6, 10*time.Millisecond, resilient.Fail)
		assert.Equal(t, 7, c.Limit(), "a permanent failure was answered: not a drop")
		window(7, 10*time.Millisecond, resilient.Retry)
		assert.Equal(t, 3, c.Limit(), "a transient failure: halved")
		for range 20 { // two at a time: less than half of the limit once it grows
			window(2, 10*time.Millisecond, resilient.Success)
		}
		// From 3.5 (7 halved) to 4.5; at 4.5, two in flight are less than half.
		assert.Equal(t, 4, c.Limit(), "grows only while at least half of it is used")
	})
}

// TestConcurrencyLimiterIgnoresIgnored: attempts classified Ignore (the
// caller's cancellation, a hedge that lost) free their slot but teach the
// limiter nothing, however slow they were.
func TestConcurrencyLimiterIgnoresIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(10), resilient.WithMinSamples(5),
			resilient.WithAIMD(resilient.AIMD{Slow: 50 * time.Millisecond}))
		for range 100 {
			p, err := c.Admit(t.Context(), 1)
			require.NoError(t, err)
			time.Sleep(time.Second)
			c.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Ignore})
		}
		assert.Equal(t, 10, c.Limit())
		assert.Equal(t, 0, c.InFlight())
	})
}

// TestGradient2LowersOnFailures: a window in which a share f of the
// attempts failed counts as a gradient of at most 1-f, with latency at its
// baseline.
func TestGradient2LowersOnFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithInitialLimit(20), resilient.WithMinSamples(1),
			resilient.WithGradient2(resilient.Gradient2{Smoothing: 1}))
		// round admits attempts until one is refused, and ends them after
		// 10ms, the first fail of them as transient failures.
		round := func(fail int) (admitted int) {
			var ps []resilient.Permit
			for {
				p, err := c.Admit(t.Context(), 1)
				if err != nil {
					require.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
					break
				}
				ps = append(ps, p)
			}
			time.Sleep(10 * time.Millisecond)
			for i, p := range ps {
				o := resilient.Success
				if i < fail {
					o = resilient.Retry
				}
				c.Done(p, resilient.Report{Attempt: 1, Outcome: o})
			}
			return len(ps)
		}
		assert.Equal(t, 20, round(0), "the first window sets a provisional baseline, and probes")
		assert.Equal(t, 10, round(0), "the probe, at half the limit")
		assert.Equal(t, 20, round(0), "refills the queue: not judged")
		require.Equal(t, 20, c.Limit())
		round(5) // a quarter failed: gradient 0.75, smoothing 1
		assert.Equal(t, 15, c.Limit())
	})
}

// TestConcurrencyLimiterHammer: many goroutines through executors sharing a
// limiter never have more attempts in flight than its limit, every one of
// them gets through (the wait queue loses no wake-up), and every slot is
// given back.
func TestConcurrencyLimiterHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	const (
		goroutines = 64
		calls      = 50
		limit      = 5
	)
	c := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(limit, limit), resilient.WithLimitWait(time.Minute))
	ex := resilient.MustNew(resilient.WithConcurrencyLimit(c), resilient.WithAttempts(1))
	var inflight, peak, done atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
					n := inflight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					inflight.Add(-1)
					return 1, nil
				}, ex)
				if assert.NoError(t, err) {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.Load(), int64(limit))
	assert.Equal(t, int64(goroutines*calls), done.Load())
	assert.Equal(t, 0, c.InFlight())
}

// TestConcurrencyLimiterAdaptiveHammer: with the limit moving, under many
// goroutines that fail some of the time, attempts in flight never exceed
// the bounds, and the limiter ends with no slot taken.
func TestConcurrencyLimiterAdaptiveHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, opt := range []resilient.ConcurrencyOption{
		resilient.WithAIMD(resilient.AIMD{}),
		resilient.WithGradient2(resilient.Gradient2{ProbeEvery: 2}),
	} {
		c := resilient.MustNewConcurrencyLimiter(opt, resilient.WithInitialLimit(4), resilient.WithLimitBounds(2, 8), resilient.WithMinSamples(4))
		ex := resilient.MustNew(resilient.WithConcurrencyLimit(c), resilient.WithAttempts(1))
		var inflight, peak atomic.Int64
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := range 200 {
					_, _ = resilient.Do(t.Context(), func(context.Context) (int, error) {
						n := inflight.Add(1)
						defer inflight.Add(-1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						if (g+i)%5 == 0 {
							return 0, errProtectUpstream
						}
						return 1, nil
					}, ex)
				}
			})
		}
		wg.Wait()
		assert.LessOrEqual(t, peak.Load(), int64(8))
		assert.Equal(t, 0, c.InFlight())
		assert.True(t, c.Limit() >= 2 && c.Limit() <= 8)
	}
}

func TestConcurrencyLimiterSuccessPathAllocs(t *testing.T) {
	for _, opt := range []resilient.ConcurrencyOption{resilient.WithGradient2(resilient.Gradient2{}), resilient.WithAIMD(resilient.AIMD{})} {
		ex := resilient.MustNew(resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter(opt)))
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			_, _ = resilient.Do(ctx, protectSucceeding, ex)
		})
		assert.Zero(t, allocs)
	}
}

// TestConcurrencyLimiterWithHedging: a hedge takes a slot of its own; the
// loser's slot is given back when it is cancelled, and its latency is not
// learned.
func TestConcurrencyLimiterWithHedging(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		c := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(2, 2))
		ex := resilient.MustNew(resilient.WithHedge(10*time.Millisecond, 3), resilient.WithConcurrencyLimit(c))
		var n, peak atomic.Int64
		v, err := resilient.DoHedged(t.Context(), func(ctx context.Context) (int, error) {
			peak.Store(max(peak.Load(), int64(c.InFlight())))
			if n.Add(1) == 1 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			time.Sleep(5 * time.Millisecond)
			return 2, nil
		}, ex)
		require.NoError(t, err)
		assert.Equal(t, 2, v)
		assert.Equal(t, int64(2), n.Load(), "the third hedge is refused by the limit, the call goes on")
		assert.Equal(t, int64(2), peak.Load())
		assert.Equal(t, 0, c.InFlight())
	})
}
