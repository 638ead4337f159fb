package resilient

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// stall returns a function whose attempt i (from 1) takes delays[i-1] (or
// the last delay) and returns i, or returns ctx.Err() if cancelled first. It
// tracks the most attempts in flight at once.
type stall struct {
	mu       sync.Mutex
	delays   []time.Duration
	errs     []error
	calls    int
	inflight int
	peak     int
}

func (s *stall) fn(ctx context.Context) (int, error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.inflight++
	s.peak = max(s.peak, s.inflight)
	d := s.delays[min(n, len(s.delays))-1]
	var err error
	if n <= len(s.errs) {
		err = s.errs[n-1]
	}
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.inflight--; s.mu.Unlock() }()
	select {
	case <-time.After(d):
		return n, err
	case <-ctx.Done():
		return -n, ctx.Err()
	}
}

func TestHedgeWinsAndLoserIsCancelledAndReleased(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var released []int
		ex := MustNew(WithHedge(100*time.Millisecond, 2), WithPolicy(rec), OnDiscard(func(v int) { released = append(released, v) }))
		s := &stall{delays: []time.Duration{time.Hour, 10 * time.Millisecond}}
		start := time.Now()
		r := DoResult(t.Context(), s.fn, ex)
		require.NoError(t, r.Err)
		assert.Equal(t, 2, r.Value, "the hedge won")
		assert.Equal(t, 110*time.Millisecond, time.Since(start))
		assert.Equal(t, 2, r.Attempts)
		assert.Equal(t, 110*time.Millisecond, r.Elapsed)
		assert.Equal(t, []int{-1}, released, "the loser's value is released")
		assert.ElementsMatch(t, []Outcome{Success, Ignore}, rec.outcomes(), "the cancelled loser is not counted against the upstream")
		require.Len(t, r.History, 2)
		hedged := map[int]bool{}
		for _, a := range r.History {
			hedged[a.Number] = a.Hedged
		}
		assert.Equal(t, map[int]bool{1: false, 2: true}, hedged, "the second attempt is marked as a hedge")
	})
}

func TestHedgeNotStartedWhenFirstIsFast(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		s := &stall{delays: []time.Duration{50 * time.Millisecond}}
		v, err := DoHedged(t.Context(), s.fn, WithHedge(100*time.Millisecond, 3))
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, 1, s.calls)
	})
}

func TestHedgeBoundsInFlightAndAttempts(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		s := &stall{delays: []time.Duration{time.Second}}
		v, err := DoHedged(t.Context(), s.fn, WithHedge(10*time.Millisecond, 3), WithAttempts(5))
		require.NoError(t, err)
		assert.Equal(t, 1, v, "the first to finish wins")
		assert.Equal(t, 3, s.peak, "never more than maxInFlight at once")
		assert.Equal(t, 3, s.calls)
	})
	synctest.Test(t, func(t *testing.T) {
		s := &stall{delays: []time.Duration{time.Second}}
		_, err := DoHedged(t.Context(), s.fn, WithHedge(10*time.Millisecond, 4), WithAttempts(2))
		require.NoError(t, err)
		assert.Equal(t, 2, s.calls, "hedges count against the attempts")
	})
}

func TestHedgeRetryableFailureWaitsForOthersThenRetries(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		s := &stall{
			delays: []time.Duration{150 * time.Millisecond, 60 * time.Millisecond, 10 * time.Millisecond},
			errs:   []error{errFlaky, errFlaky},
		}
		var released []int
		ex := MustNew(WithHedge(100*time.Millisecond, 2), WithBackoff(Constant(time.Second)), WithJitter(NoJitter),
			OnDiscard(func(v int) { released = append(released, v) }))
		start := time.Now()
		v, err := DoHedged(t.Context(), s.fn, ex)
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		// round 1: #1 (0-150ms) and its hedge #2 (100-160ms) both fail;
		// wait 1s; round 2: #3 succeeds at 1.17s.
		assert.Equal(t, 1170*time.Millisecond, time.Since(start))
		assert.Equal(t, []int{1, 2}, released)
	})
}

func TestHedgeKeepsRacingAfterAFailure(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		s := &stall{
			delays: []time.Duration{150 * time.Millisecond, time.Hour, 10 * time.Millisecond},
			errs:   []error{errFlaky},
		}
		start := time.Now()
		v, err := DoHedged(t.Context(), s.fn, WithHedge(100*time.Millisecond, 2))
		require.NoError(t, err)
		assert.Equal(t, 3, v, "a third attempt joins the stalled second after the first failed")
		assert.Equal(t, 210*time.Millisecond, time.Since(start))
	})
}

func TestDoRefusesHedgingExecutor(t *testing.T) {
	ex := MustNew(WithHedge(time.Second, 2))
	calls := 0
	_, err := Do(context.Background(), script(&calls), ex)
	assert.ErrorIs(t, err, ErrHedgeNeedsDoHedged)
	assert.ErrorIs(t, ex.Run(context.Background(), func(context.Context) error { calls++; return nil }), ErrHedgeNeedsDoHedged)
	assert.Zero(t, calls)
	v, err := DoHedged(context.Background(), script(&calls), ex)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
}

func TestHedgeGatedByRetryGates(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		g := &gate{allow: func(int) error { return errNo }}
		s := &stall{delays: []time.Duration{time.Second}}
		v, err := DoHedged(t.Context(), s.fn, WithHedge(10*time.Millisecond, 3), WithPolicy(g))
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, 1, s.calls, "a refused hedge is not started")
	})
}

func TestHedgePanicRepanicsInCaller(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var calls atomic.Int32
		var otherEnded atomic.Bool
		fn := func(ctx context.Context) (int, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done()
				otherEnded.Store(true)
				return 0, ctx.Err()
			}
			panic("hedge exploded")
		}
		assert.PanicsWithValue(t, "hedge exploded", func() {
			_, _ = DoHedged(t.Context(), fn, WithHedge(10*time.Millisecond, 2), WithPolicy(rec))
		})
		assert.True(t, otherEnded.Load(), "the other attempt ended before the panic reached the caller")
		assert.ElementsMatch(t, []Outcome{Fail, Ignore}, rec.outcomes())
	})
}

func TestHedgeCallerCancellation(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		s := &stall{delays: []time.Duration{time.Hour}}
		_, err := DoHedged(ctx, s.fn, WithHedge(10*time.Millisecond, 3))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 3, s.calls)
	})
}

func TestAdaptiveHedgeFollowsLatency(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		ex := MustNew(WithAdaptiveHedge(0.9, time.Second, 2))
		fast := &stall{delays: []time.Duration{20 * time.Millisecond}}
		for range 32 {
			fast.calls = 0
			_, err := DoHedged(t.Context(), fast.fn, ex)
			require.NoError(t, err)
		}
		assert.Equal(t, 20*time.Millisecond, ex.hedge.delay(), "the 90th percentile of recent attempts")
		s := &stall{delays: []time.Duration{time.Hour, time.Millisecond}}
		start := time.Now()
		v, err := DoHedged(t.Context(), s.fn, ex)
		require.NoError(t, err)
		assert.Equal(t, 2, v)
		assert.Equal(t, 21*time.Millisecond, time.Since(start))
	})
}

func TestHedgeInvalid(t *testing.T) {
	for _, tc := range []struct {
		opt Option
		msg string
	}{
		{WithHedge(0, 2), "resilient: WithHedge: delay must be > 0, got 0s"},
		{WithHedge(time.Second, 1), "resilient: WithHedge: maxInFlight must be >= 2, got 1"},
		{WithAdaptiveHedge(1, time.Second, 2), "resilient: WithAdaptiveHedge: percentile must be in (0, 1), got 1"},
		{WithAdaptiveHedge(nan(), time.Second, 2), "resilient: WithAdaptiveHedge: percentile must be in (0, 1), got NaN"},
	} {
		_, err := New(tc.opt)
		assert.EqualError(t, err, tc.msg)
	}
}

func TestFallback(t *testing.T) {
	var seen error
	released := 0
	ex := MustNew(noWait(),
		WithHooks(Hooks{OnDone: func(e DoneEvent) { seen = e.Err }}),
		OnDiscard(func(int) { released++ }),
		WithFallback(func(ctx context.Context, err error) (int, error) {
			if errors.Is(err, ErrExhausted) {
				return 99, nil // stale but served
			}
			return 0, err
		}))
	calls := 0
	v, err := Do(context.Background(), script(&calls, errFlaky, errFlaky, errFlaky), ex)
	require.NoError(t, err)
	assert.Equal(t, 99, v)
	assert.ErrorIs(t, seen, errFlaky, "hooks see the original error")
	assert.Equal(t, 3, released, "every value, the last one included, is released")

	calls = 0
	v, err = Do(context.Background(), script(&calls), ex)
	require.NoError(t, err)
	assert.Equal(t, 1, v, "no fallback on success")

	s, err := Do(context.Background(), func(context.Context) (string, error) { return "", Permanent(errFlaky) }, ex)
	assert.ErrorIs(t, err, errFlaky, "a fallback for another type is not used")
	assert.Empty(t, s)
}

func TestHedgeNotStartedAfterAServerHint(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		// #1 is throttled at 150ms with a 1s hint while its hedge #2 (from
		// 100ms) stalls until 500ms: no third attempt may start before the
		// hint has passed.
		s := &stall{
			delays: []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, time.Millisecond},
			errs:   []error{RetryAfter(errFlaky, time.Second), errFlaky},
		}
		var (
			mu     sync.Mutex
			starts []time.Duration
		)
		start := time.Now()
		fn := func(ctx context.Context) (int, error) {
			mu.Lock()
			starts = append(starts, time.Since(start))
			mu.Unlock()
			return s.fn(ctx)
		}
		v, err := DoHedged(t.Context(), fn, WithHedge(100*time.Millisecond, 3), WithJitter(NoJitter), WithBackoff(Constant(0)))
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		assert.Equal(t, []time.Duration{0, 100 * time.Millisecond, 1500 * time.Millisecond}, starts,
			"the hint, kept over the later unhinted failure, is waited for from the round's end")
	})
}

func TestHedgeComposesWithTimeouts(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		// Every attempt stalls: each is cut by the attempt timeout (300ms),
		// hedged after 100ms, and the whole call by its time limit (1s).
		s := &stall{delays: []time.Duration{time.Hour}}
		start := time.Now()
		r := DoResult(t.Context(), s.fn, WithHedge(100*time.Millisecond, 2), WithAttemptTimeout(300*time.Millisecond),
			WithMaxElapsed(time.Second), WithAttempts(Unlimited), WithBackoff(Constant(50*time.Millisecond)), WithJitter(NoJitter))
		assert.ErrorIs(t, r.Err, ErrMaxElapsed)
		assert.LessOrEqual(t, time.Since(start), time.Second)
		for _, a := range r.History {
			assert.LessOrEqual(t, a.Duration, 300*time.Millisecond, "attempt %d bounded by the attempt timeout", a.Number)
		}
		assert.Greater(t, r.Attempts, 2)
	})
}

func TestHedgePassesTheBulkhead(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBulkhead(1)
		// Hedges at 100ms and 200ms find the slot taken; the first attempt
		// ends at 250ms, clear of the hedge timer.
		s := &stall{delays: []time.Duration{250 * time.Millisecond}}
		v, err := DoHedged(t.Context(), s.fn, WithHedge(100*time.Millisecond, 3), WithBulkhead(b))
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, 1, s.calls, "a hedge the bulkhead refuses is not started")
		assert.Equal(t, 1, s.peak)
		assert.Zero(t, b.InFlight(), "every slot given back")
	})
}

func TestWithoutHedging(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hedging := MustNew(WithHedge(10*time.Millisecond, 3), WithPolicy(rec))
		once := MustNew(hedging, WithoutHedging())
		s := &stall{delays: []time.Duration{100 * time.Millisecond}}
		v, err := Do(t.Context(), s.fn, once)
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, 1, s.calls, "no hedge")
		assert.Len(t, rec.reports, 1, "the policy is still shared")
		_, err = Do(t.Context(), s.fn, hedging)
		assert.ErrorIs(t, err, ErrHedgeNeedsDoHedged, "the base still hedges")
	})
}

func TestFallbackServesRefusedCalls(t *testing.T) {
	br := MustNewBreaker()
	br.ForceOpen()
	for name, opts := range map[string][]Option{
		"breaker alone":       {WithBreaker(br)},
		"with another policy": {WithBreaker(br), WithPolicy(&recorder{})},
	} {
		t.Run(name, func(t *testing.T) {
			ex := MustNew(append(opts, WithFallback(func(ctx context.Context, err error) (string, error) {
				if errors.Is(err, ErrOpen) {
					return "stale", nil
				}
				return "", err
			}))...)
			calls := 0
			v, err := Do(context.Background(), func(context.Context) (string, error) { calls++; return "fresh", nil }, ex)
			require.NoError(t, err)
			assert.Equal(t, "stale", v)
			assert.Zero(t, calls)
		})
	}
}

// TestHedgeLoserIsAbandoned: the attempt that loses a hedged round has its
// context cancelled with ErrAbandoned, and every policy and hook takes it
// for Ignore, whatever it returns; so a breaker behind hedged traffic that
// always succeeds never opens.
func TestHedgeLoserIsAbandoned(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		br := MustNewBreaker(WithConsecutiveFailures(1))
		var hooked []Outcome
		ex := MustNew(WithHedge(100*time.Millisecond, 2), WithBreaker(br), WithPolicy(rec),
			WithHooks(Hooks{OnAttempt: func(e AttemptEvent) { hooked = append(hooked, e.Outcome) }}))
		causes := make(chan error, 8)
		for range 3 {
			var calls atomic.Int32
			v, err := DoHedged(t.Context(), func(ctx context.Context) (int, error) {
				if calls.Add(1) == 1 { // slow: loses to its hedge
					<-ctx.Done()
					causes <- context.Cause(ctx)
					return 0, errors.New("a real-looking failure, after the cancellation")
				}
				return 2, nil
			}, ex)
			require.NoError(t, err)
			assert.Equal(t, 2, v)
			select {
			case c := <-causes:
				assert.ErrorIs(t, c, ErrAbandoned)
			default:
				t.Fatal("the loser did not report its context's cause")
			}
		}
		assert.Equal(t, []Outcome{Success, Ignore, Success, Ignore, Success, Ignore}, rec.outcomes())
		assert.Equal(t, []Outcome{Success, Ignore, Success, Ignore, Success, Ignore}, hooked)
		assert.Equal(t, StateClosed, br.State(), "losers never count against the upstream")
		assert.Zero(t, br.Metrics().Failures)
	})
}

// TestHedgeCauses: only the executor's own abandonment is ErrAbandoned. The
// caller's cancellation keeps the caller's cause (Ignore too); a
// per-attempt timeout is context.DeadlineExceeded and an ordinary failure.
func TestHedgeCauses(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("caller", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			stop := errors.New("caller stops")
			ctx, cancel := context.WithCancelCause(t.Context())
			time.AfterFunc(50*time.Millisecond, func() { cancel(stop) })
			causes := make(chan error, 2)
			_, err := DoHedged(ctx, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return 0, ctx.Err()
			}, WithHedge(10*time.Millisecond, 2), WithPolicy(rec))
			assert.ErrorIs(t, err, stop)
			require.Len(t, causes, 2)
			assert.Same(t, stop, <-causes)
			assert.Same(t, stop, <-causes)
			assert.Equal(t, []Outcome{Ignore, Ignore}, rec.outcomes())
		})
	})
	t.Run("attempt timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			causes := make(chan error, 2)
			_, err := DoHedged(t.Context(), func(ctx context.Context) (int, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return 0, ctx.Err()
			}, WithHedge(time.Hour, 2), WithAttemptTimeout(time.Second), WithAttempts(1), WithPolicy(rec))
			assert.ErrorIs(t, err, ErrExhausted)
			require.Len(t, causes, 1)
			assert.Equal(t, context.DeadlineExceeded, <-causes)
			assert.Equal(t, []Outcome{Retry}, rec.outcomes(), "a timeout is a failure of the upstream")
		})
	})
	t.Run("max elapsed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{}
			_, err := DoHedged(t.Context(), func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			}, WithHedge(time.Hour, 2), WithMaxElapsed(time.Second), WithPolicy(rec))
			assert.ErrorIs(t, err, ErrMaxElapsed)
			assert.Equal(t, []Outcome{Retry}, rec.outcomes(), "as without hedging: the call's own limit cut a slow attempt")
		})
	})
}
