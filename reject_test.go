package resilient

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// hostRefusal is what a guard inside fn refuses with: a breaker the
// executor cannot see.
var hostRefusal = &OpenError{Name: "api.example.com", State: StateOpen, Cause: errFlaky}

func TestRejectNil(t *testing.T) {
	assert.NoError(t, Reject(nil))
}

// TestRejectFirstAttempt: a refusal returned by fn is a rejection on every
// way into the first attempt: 0 attempts, ReasonRejected, the refusal as
// Cause, no attempt record or event, Ignore for every policy.
func TestRejectFirstAttempt(t *testing.T) {
	type setup struct {
		opts []Option
		run  func(context.Context, func(context.Context) (int, error), ...Option) (int, error)
	}
	do := Do[int]
	result := func(ctx context.Context, fn func(context.Context) (int, error), opts ...Option) (int, error) {
		r := DoResult(ctx, fn, opts...)
		if r.Attempts != 0 || len(r.History) != 0 || r.Reason != ReasonRejected {
			return 0, errors.New("DoResult counted the refused attempt")
		}
		return r.Value, r.Err
	}
	for name, tc := range map[string]func(rec *recorder, br *Breaker) setup{
		"no policy":        func(*recorder, *Breaker) setup { return setup{nil, do} },
		"lone breaker":     func(_ *recorder, br *Breaker) setup { return setup{[]Option{WithBreaker(br)}, do} },
		"disabled breaker": func(_ *recorder, br *Breaker) setup { br.Disable(); return setup{[]Option{WithBreaker(br)}, do} },
		"policies":         func(rec *recorder, br *Breaker) setup { return setup{[]Option{WithBreaker(br), WithPolicy(rec)}, do} },
		"attempt timeout": func(rec *recorder, br *Breaker) setup {
			return setup{[]Option{WithPolicy(rec), WithBreaker(br), WithAttemptTimeout(time.Hour)}, do}
		},
		"DoResult": func(rec *recorder, br *Breaker) setup {
			return setup{[]Option{WithPolicy(rec), WithBreaker(br)}, result}
		},
		"DoHedged": func(rec *recorder, br *Breaker) setup {
			return setup{[]Option{WithPolicy(rec), WithBreaker(br), WithHedge(time.Hour, 2)}, DoHedged[int]}
		},
		"DoHedged, no policy": func(*recorder, *Breaker) setup { return setup{[]Option{WithHedge(time.Hour, 2)}, DoHedged[int]} },
	} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			rec := &recorder{}
			br := MustNewBreaker(WithConsecutiveFailures(1))
			s := tc(rec, br)
			var attempts, dones []string
			var released atomic.Int32
			ex := MustNew(append(s.opts, noWait(),
				OnDiscard(func(int) { released.Add(1) }),
				WithHooks(Hooks{
					OnAttempt: func(e AttemptEvent) { attempts = append(attempts, e.Outcome.String()) },
					OnDone:    func(e DoneEvent) { dones = append(dones, e.Reason.String()) },
				}))...)
			calls := 0
			v, err := s.run(context.Background(), func(context.Context) (int, error) {
				calls++
				return 7, Reject(hostRefusal)
			}, ex)
			assert.Zero(t, v, "no attempt, no value")
			assert.EqualValues(t, 1, released.Load(), "the value returned with the refusal is released")
			assert.Equal(t, 1, calls, "never retried")
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, ReasonRejected, rerr.Reason)
			assert.Zero(t, rerr.Attempts)
			assert.Same(t, hostRefusal, rerr.Cause)
			assert.Nil(t, rerr.Last)
			assert.ErrorIs(t, err, ErrOpen)
			assert.ErrorIs(t, err, ErrRejected)
			assert.Equal(t, PolicyBreaker, RejectedBy(err))
			assert.Empty(t, attempts, "no attempt event")
			assert.Equal(t, []string{"rejected"}, dones)
			m := br.Metrics()
			assert.Zero(t, m.Calls, "the breaker counts nothing")
			for _, o := range rec.outcomes() {
				assert.Equal(t, Ignore, o)
			}
		})
	}
}

// TestRejectRetry: a refusal of a retry ends the call at once with the
// last attempt's error; the refused attempt is not counted.
func TestRejectRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		ex := MustNew(WithAttempts(5), WithBackoff(Constant(time.Second)), WithJitter(NoJitter), WithPolicy(rec))
		calls := 0
		start := time.Now()
		r := DoResult(t.Context(), func(context.Context) (int, error) {
			calls++
			if calls == 1 {
				return 1, errFlaky
			}
			return 0, Reject(hostRefusal)
		}, ex)
		assert.Equal(t, time.Second, time.Since(start), "one wait, none after the refusal")
		assert.Equal(t, 2, calls)
		assert.Equal(t, 1, r.Attempts)
		assert.Len(t, r.History, 1)
		var rerr *Error
		require.ErrorAs(t, r.Err, &rerr)
		assert.Equal(t, ReasonRejected, rerr.Reason)
		assert.Equal(t, 1, rerr.Attempts)
		assert.Same(t, errFlaky, rerr.Last)
		assert.Same(t, hostRefusal, rerr.Cause)
		assert.Equal(t, []Outcome{Retry, Ignore}, rec.outcomes())
	})
}

// TestRejectedHedgeDoesNotEndTheRound: a hedge refused by fn's own guard
// while the first attempt is in flight leaves the round to that attempt.
func TestRejectedHedgeDoesNotEndTheRound(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		br := MustNewBreaker(WithConsecutiveFailures(1))
		var calls atomic.Int32
		start := time.Now()
		r := DoResult(t.Context(), func(ctx context.Context) (int, error) {
			if calls.Add(1) == 1 {
				time.Sleep(150 * time.Millisecond)
				return 1, nil
			}
			return 0, Reject(hostRefusal)
		}, WithHedge(100*time.Millisecond, 3), WithBreaker(br))
		require.NoError(t, r.Err)
		assert.Equal(t, 1, r.Value)
		assert.Equal(t, 150*time.Millisecond, time.Since(start))
		assert.EqualValues(t, 2, calls.Load(), "the hedge at 100ms was refused; none at 200ms: the round had ended")
		assert.Equal(t, 1, r.Attempts, "the refused hedge is not an attempt")
		require.Len(t, r.History, 1)
		assert.Equal(t, 1, r.History[0].Number)
		assert.Equal(t, StateClosed, br.State())
		assert.Equal(t, 1, br.Metrics().Calls)
	})
}

// TestRejectAllocatesNothing: refusing through fn costs no allocation in the
// executor once the refusal is the same error value.
func TestRejectAllocatesNothing(t *testing.T) {
	rej := Reject(hostRefusal)
	fn := func(context.Context) (int, error) { return 0, rej }
	ctx := context.Background()
	for name, ex := range map[string]*Executor{
		"no policy":    MustNew(),
		"lone breaker": MustNew(WithBreaker(MustNewBreaker())),
		"policies": MustNew(WithPolicy(policyFuncs{admit: func(int) error { return nil }, done: func(Report) {}}),
			WithBreaker(MustNewBreaker())),
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			assert.Zero(t, testing.AllocsPerRun(1000, func() { _, err = Do(ctx, fn, ex) }))
			assert.ErrorIs(t, err, ErrOpen)
		})
	}
}
