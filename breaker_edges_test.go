package resilient

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// waitFor spins until cond holds, and fails the test if it does not within
// a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// waitGroup waits for wg, and fails the test if it does not end within a
// few seconds.
func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for goroutines")
	}
}

// TestBreakerResetDropsEarlierResults: results of calls
// admitted before a Reset never reach the window the Reset starts, however
// their reports interleave with it. Workers report failures (or, for the
// executor's path, successes on a time window) with permits of the current
// generation, as fast as they can, while the breaker is reset under them;
// the fresh window must stay empty. Before the fix a report that read the
// generation before the Reset and the window after it landed in the new
// window.
func TestBreakerResetDropsEarlierResults(t *testing.T) {
	defer goleak.VerifyNone(t)
	for name, tc := range map[string]struct {
		opts   []BreakerOption
		report func(b *Breaker, p Permit)
	}{
		"count window, failures": {
			opts:   []BreakerOption{WithCountWindow(1000), WithMinCalls(1000), WithFailureRate(1)},
			report: func(b *Breaker, p Permit) { b.Done(p, Report{Outcome: Fail, Err: errBrBoom}) },
		},
		"time window, successes through Do's path": {
			opts:   []BreakerOption{WithTimeWindow(time.Hour, 10)},
			report: func(b *Breaker, p Permit) { b.closedSuccess(p.Token) },
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := MustNewBreaker(tc.opts...)
			defer b.Reset() // stops a time window's ticker
			var (
				round     atomic.Int64 // the worker reports while it is odd
				reporting atomic.Int64 // 1 while the worker reports
				quit      atomic.Bool
				permit    atomic.Uint64
				wg        sync.WaitGroup
			)
			wg.Go(func() {
				for seen := int64(0); !quit.Load(); {
					r := round.Load()
					if r == seen || r%2 == 0 {
						runtime.Gosched()
						continue
					}
					seen = r
					p := Permit{Token: permit.Load()}
					reporting.Store(1)
					for round.Load() == r {
						tc.report(b, p)
					}
					reporting.Store(0)
				}
			})
			leaked, rounds := 0, 0
			start := time.Now()
			for ; rounds < 100000 && time.Since(start) < 2*time.Second && leaked < 3; rounds++ {
				p, _ := b.Allow()
				permit.Store(p.Token)
				round.Add(1) // odd: report
				waitFor(t, "the worker to report", func() bool { return reporting.Load() == 1 })
				b.Reset()
				round.Add(1) // even: stop
				waitFor(t, "the worker to stop", func() bool { return reporting.Load() == 0 })
				if m := b.Metrics(); m.Calls != 0 {
					leaked++
					t.Errorf("round %d: %d results of the previous generation in the fresh window", rounds, m.Calls)
				}
			}
			quit.Store(true)
			waitGroup(t, &wg)
			t.Logf("%d resets, %d with leaks", rounds, leaked)
		})
	}
}

// TestBreakerProbeSuccessesSaturate: successes that land
// between the one that reaches the number needed and the transition it
// makes never carry out of their field into the generation: the breaker
// closes once, in the next generation, reporting exactly that many.
func TestBreakerProbeSuccessesSaturate(t *testing.T) {
	rec := &brRecorder{}
	b := MustNewBreaker(WithConsecutiveFailures(1), WithHalfOpenProbes(MaxProbes),
		WithHalfOpenSuccesses(MaxProbes), WithStateListener(rec.listen))
	b.transition(anyGen, numStates, StateHalfOpen, nil, 0)
	gen := wordGen(b.word.Load())
	var held []Permit
	for range MaxProbes {
		p, err := b.Allow()
		require.NoError(t, err)
		held = append(held, p)
	}
	for _, p := range held[:MaxProbes-1] {
		b.Record(p, nil)
	}
	extra, err := b.Allow() // a slot was freed: one more probe
	require.NoError(t, err)
	require.Equal(t, MaxProbes-1, wordSuccs(b.word.Load()))

	// The reports that reach the count and go past it wait for the lock
	// that the transition needs: they land before it, as on a busy machine.
	b.mu.Lock()
	var wg sync.WaitGroup
	wg.Go(func() { b.Record(held[MaxProbes-1], nil) })
	waitFor(t, "the last needed success", func() bool { return wordProbes(b.word.Load()) == 1 })
	wg.Go(func() { b.Record(extra, nil) })
	waitFor(t, "a success beyond it", func() bool { return wordProbes(b.word.Load()) == 0 })
	assert.Equal(t, gen, wordGen(b.word.Load()), "the generation is untouched")
	assert.Equal(t, MaxProbes, wordSuccs(b.word.Load()), "the count saturates")
	b.mu.Unlock()
	waitGroup(t, &wg)

	assert.Equal(t, StateClosed, b.State())
	assert.Equal(t, gen+1, wordGen(b.word.Load()), "one change of state, one generation")
	events := rec.get()
	require.Len(t, events, 3, "initial, half-open, closed")
	assert.Equal(t, StateClosed, events[2].To)
	assert.Equal(t, MaxProbes, events[2].Metrics.ProbeSuccesses)
}

// TestBreakerIgnoredProbeIsNotPunished: a probe whose
// caller cancelled (or that the upstream throttled) leaves the round as if
// it never started: no max-wait reopening, no longer open time. A probe
// still in flight keeps the round's timer.
func TestBreakerIgnoredProbeIsNotPunished(t *testing.T) {
	for name, report := range map[string]func(b *Breaker, p Permit){
		"cancelled": func(b *Breaker, p Permit) { b.Done(p, Report{Outcome: Ignore}) },
		"throttled": func(b *Breaker, p Permit) { b.Record(p, err429) },
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(time.Second),
					WithOpenBackoff(time.Hour, NoJitter), WithHalfOpenMaxWait(10*time.Second), WithHalfOpenProbes(2))
				brCall(b, errBrBoom)
				time.Sleep(time.Second)
				synctest.Wait()
				require.Equal(t, StateHalfOpen, b.State())

				p, err := b.Allow()
				require.NoError(t, err)
				report(b, p)
				time.Sleep(time.Minute) // well past the max wait
				synctest.Wait()
				assert.Equal(t, StateHalfOpen, b.State(), "no probe hung: nothing to time out")

				// The round starts again with the next probe, timer and all.
				p1, err := b.Allow()
				require.NoError(t, err)
				p2, err := b.Allow()
				require.NoError(t, err)
				report(b, p2) // one released, one still in flight
				time.Sleep(10 * time.Second)
				synctest.Wait()
				require.Equal(t, StateOpen, b.State(), "the probe in flight hung: the max wait reopens it")
				_, err = b.Allow()
				var oe *OpenError
				require.ErrorAs(t, err, &oe)
				assert.ErrorIs(t, oe.Cause, ErrProbeTimeout)
				assert.Equal(t, 2*time.Second, oe.RetryAfter(), "one failed round: the open time doubled once, not twice")
				b.Record(p1, nil) // late: ignored
				b.Reset()
			})
		})
	}
}

// TestBreakerRateJudgedWhenSuccessesFillTheMinimum:
// three failures then two successes is 60% of five calls; with a minimum of
// five and a 50% rate the breaker opens on the fifth call (a count window),
// or at the next tick (a time window), without waiting for another
// failure, and the cause is the last failure.
func TestBreakerRateJudgedWhenSuccessesFillTheMinimum(t *testing.T) {
	for _, via := range brVias {
		t.Run(via.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := MustNewBreaker(WithCountWindow(10), WithMinCalls(5), WithFailureRate(0.5))
				brRunSteps(t, b, via.call, []brStep{
					{fail: 3, ok: 1, want: StateClosed},
					{ok: 1, want: StateOpen},
				})
				var oe *OpenError
				_, err := b.Allow()
				require.ErrorAs(t, err, &oe)
				assert.Same(t, errBrBoom, oe.Cause)
				b.Reset()

				tw := MustNewBreaker(WithTimeWindow(10*time.Second, 10), WithMinCalls(5), WithFailureRate(0.5))
				brRunSteps(t, tw, via.call, []brStep{
					{fail: 3, want: StateClosed},
					{ok: 2, want: StateClosed},
					{wait: time.Second, want: StateOpen}, // one bucket
				})
				tw.Reset()

				calm := MustNewBreaker(WithCountWindow(10), WithMinCalls(5), WithFailureRate(0.5))
				brRunSteps(t, calm, via.call, []brStep{
					{fail: 2, ok: 3, want: StateClosed}, // 40% at the minimum
					{ok: 20, want: StateClosed},
				})
			})
		})
	}
}

// TestBreakerTotals: totals since creation count every
// result that counted and every refusal, across states and generations,
// exactly, under many goroutines.
func TestBreakerTotals(t *testing.T) {
	for _, via := range brVias {
		t.Run(via.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := MustNewBreaker(WithConsecutiveFailures(3), WithOpenDuration(time.Second), WithTotals())
				brRunSteps(t, b, via.call, []brStep{
					{ok: 5, fail: 3, want: StateOpen},         // 8 calls, 3 failures
					{ok: 4, want: StateOpen, rejected: 4},     // 4 refusals
					{ignore: 2, want: StateOpen, rejected: 2}, // 2 more
					{wait: time.Second, want: StateHalfOpen},  //
					{ok: 1, want: StateClosed},                // a probe: 9 calls
					{ignore: 3, fail: 1, want: StateClosed},   // 10 calls, 4 failures
					{ok: 1, fail: 1, want: StateClosed},       // 12, 5
				})
				m := b.Metrics()
				assert.Equal(t, uint64(12), m.TotalCalls)
				assert.Equal(t, uint64(5), m.TotalFailures)
				assert.Equal(t, uint64(6), m.TotalRejections)
				b.Reset()
				assert.Equal(t, uint64(12), b.Metrics().TotalCalls, "a Reset keeps them")
			})
		})
	}
	t.Run("parallel", func(t *testing.T) {
		b := MustNewBreaker(WithCountWindow(1000), WithMinCalls(1000), WithFailureRate(1), WithTotals())
		const goroutines, each = 32, 2000
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					if (g+i)%4 == 0 {
						brCall(b, errBrBoom)
					} else {
						brDoCall(b, nil)
					}
				}
			})
		}
		waitGroup(t, &wg)
		m := b.Metrics()
		assert.Equal(t, uint64(goroutines*each), m.TotalCalls)
		assert.Equal(t, uint64(goroutines*each/4), m.TotalFailures)
		assert.Zero(t, m.TotalRejections)
	})
	t.Run("off by default", func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1))
		brCall(b, nil)
		brCall(b, errBrBoom)
		_, err := b.Allow()
		require.ErrorIs(t, err, ErrOpen)
		m := b.Metrics()
		assert.Zero(t, m.TotalCalls+m.TotalFailures+m.TotalRejections)
	})
}
