package resilient

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errFlaky = errors.New("flaky")

// script returns a function that fails with errs[i] on call i (nil: success,
// returning the call number) and counts its calls.
func script(calls *int, errs ...error) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		*calls++
		if *calls <= len(errs) && errs[*calls-1] != nil {
			return *calls, errs[*calls-1]
		}
		return *calls, nil
	}
}

func noWait() Option { return WithBackoff(Constant(0)) }

func TestDoSucceedsFirstTime(t *testing.T) {
	calls := 0
	v, err := Do(context.Background(), script(&calls))
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	assert.Equal(t, 1, calls)
}

func TestDoRetriesThenSucceeds(t *testing.T) {
	calls := 0
	v, err := Do(context.Background(), script(&calls, errFlaky, errFlaky), noWait())
	require.NoError(t, err)
	assert.Equal(t, 3, v)
	assert.Equal(t, 3, calls)
}

func TestDoExhaustedReturnsLastValueAndError(t *testing.T) {
	calls := 0
	last := errors.New("third")
	v, err := Do(context.Background(), script(&calls, errFlaky, errFlaky, last), noWait())
	require.Error(t, err)
	assert.Equal(t, 3, v, "the last attempt's value")
	assert.Equal(t, 3, calls)
	assert.ErrorIs(t, err, last)
	assert.ErrorIs(t, err, ErrExhausted)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 3, rerr.Attempts)
	assert.Equal(t, ReasonExhausted, rerr.Reason)
	assert.Equal(t, "resilient: gave up after 3 attempts (exhausted): third", err.Error())
}

type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

func TestDoPermanentStopsAndHandsBackOriginal(t *testing.T) {
	calls := 0
	orig := &codeError{code: 404}
	_, err := Do(context.Background(), script(&calls, Permanent(orig)), noWait())
	require.Error(t, err)
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, ErrPermanent)
	var ce *codeError
	require.ErrorAs(t, err, &ce)
	assert.Same(t, orig, ce)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Same(t, orig, rerr.Last, "the marker is removed")
	assert.Equal(t, 1, rerr.Attempts)
}

func TestDoAttemptsLimit(t *testing.T) {
	for _, n := range []int{1, 2, 5, 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			calls := 0
			_, err := Do(context.Background(), func(context.Context) (int, error) {
				calls++
				return 0, errFlaky
			}, WithAttempts(n), noWait())
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, n, calls)
			assert.Equal(t, n, rerr.Attempts)
		})
	}
}

func TestDoUnlimitedAttempts(t *testing.T) {
	calls := 0
	v, err := Do(context.Background(), func(context.Context) (int, error) {
		calls++
		if calls < 500 {
			return 0, errFlaky
		}
		return calls, nil
	}, WithAttempts(Unlimited), noWait())
	require.NoError(t, err)
	assert.Equal(t, 500, v)
}

func TestDoBackoffDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ex := MustNew(WithAttempts(5), WithBackoff(Exponential(100*time.Millisecond, 300*time.Millisecond)), WithJitter(NoJitter))
		var at []time.Duration
		start := time.Now()
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			at = append(at, time.Since(start))
			return 0, errFlaky
		}, ex)
		require.ErrorIs(t, err, ErrExhausted)
		ms := time.Millisecond
		assert.Equal(t, []time.Duration{0, 100 * ms, 300 * ms, 600 * ms, 900 * ms}, at)
	})
}

func TestDoFullJitterStaysBelowSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r RetryEvent
		ex := MustNew(WithAttempts(2), WithBackoff(Constant(time.Second)), WithRandom(func() float64 { return 0.25 }),
			WithHooks(Hooks{OnRetry: func(e RetryEvent) { r = e }}))
		start := time.Now()
		_, err := Do(t.Context(), func(context.Context) (int, error) { return 0, errFlaky }, ex)
		require.Error(t, err)
		assert.Equal(t, 250*time.Millisecond, time.Since(start))
		assert.Equal(t, 250*time.Millisecond, r.Delay)
		assert.Equal(t, FromBackoff, r.Source)
	})
}

func TestDoCancelDuringWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		cause := errors.New("shutting down")
		time.AfterFunc(time.Second, func() { cancel(cause) })
		calls := 0
		start := time.Now()
		v, err := Do(ctx, script(&calls, errFlaky, errFlaky), WithBackoff(Constant(time.Hour)))
		assert.Equal(t, time.Second, time.Since(start), "the wait ends the instant the context is cancelled")
		assert.Equal(t, 1, calls)
		assert.Zero(t, v)
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, cause)
		assert.ErrorIs(t, err, errFlaky, "and the last attempt's error")
		var rerr *Error
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonCanceled, rerr.Reason)
	})
}

func TestDoAlreadyCancelledCallsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	_, err := Do(ctx, script(&calls))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, calls)
}

func TestDoDoesNotSleepPastDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		calls := 0
		start := time.Now()
		v, err := Do(ctx, script(&calls, errFlaky, errFlaky), WithBackoff(Constant(2*time.Second)), WithJitter(NoJitter))
		assert.Zero(t, time.Since(start), "returns at once instead of sleeping into the deadline")
		assert.Equal(t, 1, v, "with the last value")
		assert.ErrorIs(t, err, ErrDeadline)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestDoCallerCancellationDuringAttemptIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		rec := &recorder{}
		calls := 0
		_, err := Do(ctx, func(ctx context.Context) (int, error) {
			calls++
			cancel()
			<-ctx.Done()
			return 0, ctx.Err()
		}, WithPolicy(rec), noWait())
		assert.Equal(t, 1, calls, "never retried")
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, []Outcome{Ignore}, rec.outcomes(), "never counted against the upstream")
	})
}

func TestDoAttemptTimeoutIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		rec := &recorder{}
		start := time.Now()
		v, err := Do(t.Context(), func(ctx context.Context) (int, error) {
			calls++
			if calls < 3 {
				<-ctx.Done() // a stalled upstream
				return 0, ctx.Err()
			}
			return calls, nil
		}, WithAttemptTimeout(time.Second), WithPolicy(rec), noWait())
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		assert.Equal(t, 2*time.Second, time.Since(start))
		assert.Equal(t, []Outcome{Retry, Retry, Success}, rec.outcomes())
	})
}

func TestDoAttemptContextCancelledAfterAttempt(t *testing.T) {
	var got context.Context
	_, err := Do(context.Background(), func(ctx context.Context) (int, error) {
		got = ctx
		return 1, nil
	}, WithAttemptTimeout(time.Hour))
	require.NoError(t, err)
	assert.ErrorIs(t, got.Err(), context.Canceled, "the attempt's context ends with the attempt")
}

func TestDoMaxElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		start := time.Now()
		_, err := Do(t.Context(), func(ctx context.Context) (int, error) {
			calls++
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(400 * time.Millisecond):
				return 0, errFlaky
			}
		}, WithAttempts(Unlimited), WithBackoff(Constant(100*time.Millisecond)), WithJitter(NoJitter), WithMaxElapsed(time.Second))
		assert.ErrorIs(t, err, ErrMaxElapsed)
		var rerr *Error
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonMaxElapsed, rerr.Reason)
		// 0-400 fail, 500-900 fail, then the next wait would end at 1000: stop.
		assert.Equal(t, 2, calls)
		assert.Equal(t, 900*time.Millisecond, time.Since(start))
	})
}

func TestDoMaxElapsedCutsRunningAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		_, err := Do(t.Context(), func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, WithMaxElapsed(time.Second))
		assert.Equal(t, time.Second, time.Since(start))
		assert.ErrorIs(t, err, ErrMaxElapsed)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestDoRetryAfterHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []RetryEvent
		ex := MustNew(WithBackoff(Constant(100*time.Millisecond)), WithJitter(NoJitter),
			WithHooks(Hooks{OnRetry: func(e RetryEvent) { events = append(events, e) }}))
		calls := 0
		start := time.Now()
		v, err := Do(t.Context(), script(&calls, RetryAfter(errFlaky, 3*time.Second), RetryAfter(errFlaky, time.Millisecond)), ex)
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		assert.Equal(t, 3100*time.Millisecond, time.Since(start))
		require.Len(t, events, 2)
		assert.Equal(t, 3*time.Second, events[0].Delay)
		assert.Equal(t, FromHint, events[0].Source)
		assert.Equal(t, 100*time.Millisecond, events[1].Delay, "a short hint never shortens the backoff")
		assert.Equal(t, FromBackoff, events[1].Source)
		assert.Equal(t, errFlaky, events[0].Err, "markers are removed in events")
	})
}

func TestDoHintIsAFloorUnderJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ex := MustNew(WithBackoff(Constant(time.Second)), WithRandom(func() float64 { return 0 }))
		calls := 0
		start := time.Now()
		_, err := Do(t.Context(), script(&calls, RetryAfter(errFlaky, 700*time.Millisecond)), ex)
		require.NoError(t, err)
		assert.Equal(t, 700*time.Millisecond, time.Since(start), "jitter drew 0, the hint holds")
	})
}

func TestDoHintTooLongEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		start := time.Now()
		v, err := Do(t.Context(), script(&calls, RetryAfter(errFlaky, 2*time.Hour)), WithMaxDelay(time.Minute))
		assert.Zero(t, time.Since(start))
		assert.Equal(t, 1, calls)
		assert.Equal(t, 1, v)
		assert.ErrorIs(t, err, ErrHintTooLong)
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestDoHintPastDeadlineEndsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		calls := 0
		start := time.Now()
		_, err := Do(ctx, script(&calls, RetryAfter(errFlaky, 10*time.Second)), noWait())
		assert.Zero(t, time.Since(start))
		assert.ErrorIs(t, err, ErrDeadline)
		assert.Equal(t, 1, calls)
	})
}

type response struct {
	status int
	closed bool
}

func TestCheckValueRetriesValuesWithoutLosingThem(t *testing.T) {
	var made []*response
	var discarded []*response
	ex := MustNew(noWait(),
		CheckValue(func(r *response) error {
			if r.status == 503 {
				return fmt.Errorf("status %d", r.status)
			}
			return nil
		}),
		OnDiscard(func(r *response) { r.closed = true; discarded = append(discarded, r) }),
	)
	fn := func(context.Context) (*response, error) {
		r := &response{status: 503}
		made = append(made, r)
		return r, nil
	}
	v, err := Do(context.Background(), fn, ex)
	require.Len(t, made, 3)
	assert.Same(t, made[2], v, "the last value is returned")
	assert.False(t, v.closed, "and not released")
	assert.Equal(t, made[:2], discarded, "earlier values are released")
	assert.ErrorIs(t, err, ErrExhausted)
	assert.EqualError(t, err, "resilient: gave up after 3 attempts (exhausted): status 503")
}

func TestCheckValueWrongTypeIsPermanent(t *testing.T) {
	ex := MustNew(CheckValue(func(r *response) error { return nil }))
	calls := 0
	_, err := Do(context.Background(), script(&calls), ex)
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, ErrPermanent)
	assert.ErrorContains(t, err, "CheckValue")
}

func TestDoNilArguments(t *testing.T) {
	calls := 0
	var nilCtx context.Context
	_, err := Do(nilCtx, script(&calls))
	assert.ErrorIs(t, err, ErrNilContext)
	_, err = Do[int](context.Background(), nil)
	assert.ErrorIs(t, err, ErrNilFunc)
	assert.ErrorIs(t, MustNew().Run(context.Background(), nil), ErrNilFunc)
	_, err = Do(context.Background(), script(&calls), nil)
	assert.ErrorContains(t, err, "nil option")
	assert.Zero(t, calls)
}

func TestInvalidOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  Option
		msg  string
	}{
		{"attempts zero", WithAttempts(0), "resilient: WithAttempts: n must be >= 1 or Unlimited, got 0"},
		{"attempts negative", WithAttempts(-2), "resilient: WithAttempts: n must be >= 1 or Unlimited, got -2"},
		{"constant negative", WithBackoff(Constant(-time.Second)), "resilient: WithBackoff: Constant: d must be >= 0, got -1s"},
		{"exponential zero base", WithBackoff(Exponential(0, time.Second)), "resilient: WithBackoff: Exponential: base must be > 0, got 0s"},
		{"exponential max below base", WithBackoff(Exponential(time.Second, time.Millisecond)), "resilient: WithBackoff: Exponential: max must be >= base (1s), got 1ms"},
		{"jitter above one", WithJitter(ProportionalJitter(1.5)), "resilient: WithJitter: ProportionalJitter: frac must be in [0, 1], got 1.5"},
		{"jitter negative", WithJitter(ProportionalJitter(-0.1)), "resilient: WithJitter: ProportionalJitter: frac must be in [0, 1], got -0.1"},
		{"jitter NaN", WithJitter(ProportionalJitter(nan())), "resilient: WithJitter: ProportionalJitter: frac must be in [0, 1], got NaN"},
		{"max delay zero", WithMaxDelay(0), "resilient: WithMaxDelay: d must be > 0, got 0s"},
		{"max elapsed negative", WithMaxElapsed(-1), "resilient: WithMaxElapsed: d must be > 0, got -1ns"},
		{"attempt timeout zero", WithAttemptTimeout(0), "resilient: WithAttemptTimeout: d must be > 0, got 0s"},
		{"nil policy", WithPolicy(nil), "resilient: WithPolicy: nil policy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := New(tc.opt)
			assert.Nil(t, ex)
			assert.EqualError(t, err, tc.msg)
			assert.PanicsWithError(t, tc.msg, func() { MustNew(tc.opt) })
			calls := 0
			_, err = Do(context.Background(), script(&calls), tc.opt)
			assert.EqualError(t, err, tc.msg)
			assert.Zero(t, calls, "fn is not called with invalid options")
		})
	}
}

func nan() float64 { z := 0.0; return z / z }

// recorder is a Policy that records what it is told.
type recorder struct {
	mu      sync.Mutex
	admits  int
	reports []Report
	refuse  func(attempt int) error
	name    string
	log     *[]string
}

func (r *recorder) Admit(_ context.Context, attempt int) (Permit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log != nil {
		*r.log = append(*r.log, "admit "+r.name)
	}
	if r.refuse != nil {
		if err := r.refuse(attempt); err != nil {
			return Permit{}, err
		}
	}
	r.admits++
	return Permit{Token: uint64(attempt)}, nil
}

func (r *recorder) Done(p Permit, rep Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log != nil {
		*r.log = append(*r.log, "done "+r.name)
	}
	if p.Token != uint64(rep.Attempt) {
		panic("permit not handed back unchanged")
	}
	r.reports = append(r.reports, rep)
}

func (r *recorder) outcomes() []Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var os []Outcome
	for _, rep := range r.reports {
		os = append(os, rep.Outcome)
	}
	return os
}

func TestPolicyOrderAndReports(t *testing.T) {
	var log []string
	a := &recorder{name: "a", log: &log}
	b := &recorder{name: "b", log: &log}
	calls := 0
	_, err := Do(context.Background(), script(&calls, errFlaky), WithPolicy(a, b), noWait())
	require.NoError(t, err)
	assert.Equal(t, []string{"admit a", "admit b", "done b", "done a", "admit a", "admit b", "done b", "done a"}, log)
	assert.Equal(t, []Outcome{Retry, Success}, a.outcomes())
	assert.Equal(t, errFlaky, a.reports[0].Err)
}

var errNo = errors.New("no")

func TestPolicyRefusalIsNotRetried(t *testing.T) {
	first := &recorder{}
	refuser := &recorder{refuse: func(int) error { return errNo }}
	calls := 0
	_, err := Do(context.Background(), script(&calls), WithPolicy(first, refuser), noWait())
	assert.Zero(t, calls)
	assert.ErrorIs(t, err, errNo)
	assert.ErrorIs(t, err, ErrRejected)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 0, rerr.Attempts)
	assert.Equal(t, ReasonRejected, rerr.Reason)
	assert.Equal(t, []Outcome{Ignore}, first.outcomes(), "an earlier policy's permit is released, uncounted")
}

func TestPolicyRefusalOfRetryKeepsLastError(t *testing.T) {
	p := &recorder{refuse: func(n int) error {
		if n > 1 {
			return errNo
		}
		return nil
	}}
	calls := 0
	_, err := Do(context.Background(), script(&calls, errFlaky), WithPolicy(p), noWait())
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, errNo)
	assert.ErrorIs(t, err, errFlaky)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts)
}

type gate struct {
	recorder
	allow func(attempt int) error
}

func (g *gate) AllowRetry(attempt int) error { return g.allow(attempt) }

func TestRetryGateRefusesBeforeWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var asked []int
		g := &gate{allow: func(n int) error {
			asked = append(asked, n)
			if n > 2 {
				return errNo
			}
			return nil
		}}
		calls := 0
		start := time.Now()
		_, err := Do(t.Context(), script(&calls, errFlaky, errFlaky, errFlaky), WithPolicy(g), WithBackoff(Constant(time.Second)), WithJitter(NoJitter))
		assert.Equal(t, time.Second, time.Since(start), "one wait; the refused retry is not waited for")
		assert.Equal(t, 2, calls)
		assert.Equal(t, []int{2, 3}, asked)
		assert.ErrorIs(t, err, errNo)
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestPanicReleasesPoliciesAndPropagates(t *testing.T) {
	rec := &recorder{}
	ex := MustNew(WithPolicy(rec))
	assert.PanicsWithValue(t, "boom", func() {
		_, _ = Do(context.Background(), func(context.Context) (int, error) { panic("boom") }, ex)
	})
	require.Len(t, rec.reports, 1)
	assert.Equal(t, Fail, rec.reports[0].Outcome)
	assert.ErrorIs(t, rec.reports[0].Err, ErrPanicked)
	calls := 0
	_, err := Do(context.Background(), script(&calls), ex)
	assert.NoError(t, err, "the executor still works")
}

func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		ex := MustNew(WithName("users"), WithBackoff(Constant(time.Second)), WithJitter(NoJitter),
			WithHooks(Hooks{
				OnAttempt: func(e AttemptEvent) {
					got = append(got, fmt.Sprintf("%s attempt %d %s %v %v", e.Name, e.Number, e.Outcome, e.Err, e.Duration))
				},
				OnRetry: func(e RetryEvent) {
					got = append(got, fmt.Sprintf("%s retry after %d in %v", e.Name, e.Attempt, e.Delay))
				},
			}),
			WithHooks(Hooks{OnDone: func(e DoneEvent) {
				got = append(got, fmt.Sprintf("%s done %d %s %v", e.Name, e.Attempts, e.Reason, e.Elapsed))
			}}),
		)
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			time.Sleep(10 * time.Millisecond) // fake time: the attempt's duration
			return 0, errFlaky
		}, ex, WithAttempts(2))
		require.Error(t, err)
		assert.Equal(t, []string{
			"users attempt 1 retry flaky 10ms",
			"users retry after 1 in 1s",
			"users attempt 2 retry flaky 10ms",
			"users done 2 exhausted 1.02s",
		}, got)
	})
}

func TestDoResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		r := DoResult(t.Context(), script(&calls, errFlaky, RetryAfter(errFlaky, 5*time.Second)),
			WithBackoff(Constant(time.Second)), WithJitter(NoJitter))
		require.NoError(t, r.Err)
		assert.Equal(t, 3, r.Value)
		assert.Equal(t, 3, r.Attempts)
		assert.Equal(t, ReasonSuccess, r.Reason)
		assert.Equal(t, 6*time.Second, r.Elapsed)
		require.Len(t, r.History, 3)
		assert.Equal(t, Attempt{Number: 1, Err: errFlaky, Outcome: Retry, Delay: time.Second, Source: FromBackoff}, r.History[0])
		assert.Equal(t, Attempt{Number: 2, Err: errFlaky, Outcome: Retry, Delay: 5 * time.Second, Source: FromHint, Hint: 5 * time.Second}, r.History[1])
		assert.Equal(t, Attempt{Number: 3, Outcome: Success}, r.History[2])
	})
}

func TestDerivedExecutorSharesPoliciesAndLeavesBaseAlone(t *testing.T) {
	rec := &recorder{}
	base := MustNew(WithPolicy(rec), WithAttempts(3), noWait())
	extra := &recorder{}
	calls := 0
	_, err := Do(context.Background(), func(context.Context) (int, error) { calls++; return 0, errFlaky },
		base, WithAttempts(1), WithPolicy(extra))
	require.Error(t, err)
	assert.Equal(t, 1, calls)
	assert.Len(t, rec.reports, 1, "the base's policy is shared")
	assert.Len(t, extra.reports, 1)
	require.Len(t, base.Policies(), 1, "the base executor is unchanged")

	calls = 0
	_, err = Do(context.Background(), func(context.Context) (int, error) { calls++; return 0, errFlaky }, base)
	require.Error(t, err)
	assert.Equal(t, 3, calls)
	assert.Len(t, extra.reports, 1, "the derived policy is not added to the base")
}

func TestClassifierDecides(t *testing.T) {
	errStop := errors.New("stop")
	errFine := errors.New("not found, fine")
	ex := MustNew(noWait(), WithClassifier(Classifiers(FailOn(errStop), func(err error) Outcome {
		if errors.Is(err, errFine) {
			return Success
		}
		return Unclassified
	})))
	calls := 0
	_, err := Do(context.Background(), script(&calls, errStop), ex)
	assert.ErrorIs(t, err, ErrPermanent)
	assert.Equal(t, 1, calls)

	calls = 0
	_, err = Do(context.Background(), script(&calls, errFine), ex)
	assert.Same(t, errFine, err, "an error classified Success is returned as is")
	assert.Equal(t, 1, calls)

	calls = 0
	_, err = Do(context.Background(), script(&calls, errFlaky), ex)
	assert.NoError(t, err, "unclassified errors are retried")
	assert.Equal(t, 2, calls)
}

func TestRun(t *testing.T) {
	ex := MustNew(noWait())
	calls := 0
	err := ex.Run(context.Background(), func(context.Context) error {
		calls++
		if calls < 2 {
			return errFlaky
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
}

func TestConcurrentCallsShareOneExecutor(t *testing.T) {
	var admitted, done atomic.Int64
	p := policyFuncs{
		admit: func(int) error { admitted.Add(1); return nil },
		done:  func(Report) { done.Add(1) },
	}
	ex := MustNew(WithPolicy(p), WithAttempts(4), noWait())
	const goroutines, callsEach = 64, 200
	var total atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range callsEach {
				n := 0
				v, err := Do(context.Background(), func(context.Context) (int, error) {
					n++
					total.Add(1)
					if (g+i+n)%3 == 0 {
						return n, nil
					}
					return n, errFlaky
				}, ex)
				if err == nil && v != n {
					t.Errorf("value %d, want %d", v, n)
				}
				if n > 4 {
					t.Errorf("%d attempts, limit 4", n)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, total.Load(), admitted.Load())
	assert.Equal(t, total.Load(), done.Load())
}

type policyFuncs struct {
	admit func(int) error
	done  func(Report)
}

func (p policyFuncs) Admit(_ context.Context, n int) (Permit, error) { return Permit{}, p.admit(n) }
func (p policyFuncs) Done(_ Permit, r Report)                        { p.done(r) }

func TestSuccessPathAllocatesNothing(t *testing.T) {
	ex := MustNew(WithAttempts(3), WithPolicy(policyFuncs{admit: func(int) error { return nil }, done: func(Report) {}}))
	plain := MustNew()
	ctx := context.Background()
	x := 41
	cases := map[string]func(){
		"Do with executor": func() {
			_, _ = Do(ctx, func(context.Context) (int, error) { return x + 1, nil }, plain)
		},
		"Do with policy": func() {
			_, _ = Do(ctx, func(context.Context) (int, error) { return x + 1, nil }, ex)
		},
		"Do with defaults": func() {
			_, _ = Do(ctx, func(context.Context) (string, error) { return "ok", nil })
		},
		"Run": func() {
			_ = plain.Run(ctx, func(context.Context) error { x++; return nil })
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Zero(t, testing.AllocsPerRun(1000, f))
		})
	}
}

func TestRetryGateNotAskedWhenTheCallStopsAnyway(t *testing.T) {
	asked := 0
	g := &gate{allow: func(int) error { asked++; return nil }}
	calls := 0
	_, err := Do(context.Background(), script(&calls, RetryAfter(errFlaky, time.Hour)), WithPolicy(g), WithMaxDelay(time.Minute))
	assert.ErrorIs(t, err, ErrHintTooLong)
	assert.Zero(t, asked, "no retry token is taken for a retry that never happens")
}

// waiter is a policy whose Admit waits for a slot until the context ends,
// as a bulkhead or a rate limiter does.
type waiter struct{ slots chan struct{} }

func (w waiter) Admit(ctx context.Context, _ int) (Permit, error) {
	select {
	case <-w.slots:
		return Permit{}, nil
	case <-ctx.Done():
		return Permit{}, fmt.Errorf("no slot: %w", ctx.Err())
	}
}
func (w waiter) Done(Permit, Report) { w.slots <- struct{}{} }

func TestPolicyWaitEndedByContextIsReportedAsSuch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, fastPath := range []bool{true, false} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			opts := []Option{WithPolicy(waiter{slots: make(chan struct{}, 1)})}
			if !fastPath {
				opts = append(opts, WithAttemptTimeout(time.Hour))
			}
			calls := 0
			_, err := Do(ctx, script(&calls), opts...)
			cancel()
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, ReasonDeadline, rerr.Reason)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Zero(t, calls)
		}
	})
}

func TestRefusalBeforeFirstAttemptAllocatesNothing(t *testing.T) {
	refusal := errors.New("closed for maintenance")
	ex := MustNew(WithPolicy(policyFuncs{admit: func(int) error { return refusal }, done: func(Report) {}}), WithName("api"))
	ctx := context.Background()
	calls := 0
	_, first := Do(ctx, script(&calls), ex)
	fn := script(&calls)
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		_, err = Do(ctx, fn, ex)
	})
	assert.Zero(t, allocs)
	assert.ErrorIs(t, err, refusal)
	assert.ErrorIs(t, err, ErrRejected)
	assert.Zero(t, calls)
	_, err = Do(ctx, script(&calls), ex, WithName("derived"))
	assert.EqualError(t, err, "resilient: derived: no attempt made (rejected): closed for maintenance", "a derived executor does not share the base's cached error")
	assert.EqualError(t, first, "resilient: api: no attempt made (rejected): closed for maintenance")
}

func TestDoHintSpreadAboveNeverBelow(t *testing.T) {
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{0, time.Second}, {0.5, 1100 * time.Millisecond}, {0.999, 1199800 * time.Microsecond}} {
		synctest.Test(t, func(t *testing.T) {
			ex := MustNew(WithBackoff(Constant(10*time.Millisecond)), WithRandom(func() float64 { return tc.u }))
			calls := 0
			start := time.Now()
			_, err := Do(t.Context(), script(&calls, RetryAfter(errFlaky, time.Second)), ex)
			require.NoError(t, err)
			assert.Equal(t, tc.want, time.Since(start))
		})
	}
}

// TestHintThatEndsTheCallIsKept: a hint beyond the cap,
// or past the deadline, ends the call at once, and the error and the
// attempt's record keep it, so that the caller can pass it on.
func TestHintThatEndsTheCallIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := DoResult(t.Context(), func(context.Context) (int, error) {
			return 1, RetryAfter(errFlaky, 30*time.Minute)
		}, WithMaxDelay(time.Minute))
		var rerr *Error
		require.ErrorAs(t, r.Err, &rerr)
		assert.Equal(t, ReasonHintTooLong, rerr.Reason)
		assert.Equal(t, 30*time.Minute, rerr.Hint)
		require.Len(t, r.History, 1)
		assert.Equal(t, Attempt{Number: 1, Err: errFlaky, Outcome: Retry, Hint: 30 * time.Minute}, r.History[0])

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := Do(ctx, func(context.Context) (int, error) { return 1, RetryAfter(errFlaky, 5*time.Second) })
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonDeadline, rerr.Reason)
		assert.Equal(t, 5*time.Second, rerr.Hint)

		_, err = Do(t.Context(), func(context.Context) (int, error) { return 1, errFlaky }, WithAttempts(1))
		require.ErrorAs(t, err, &rerr)
		assert.Zero(t, rerr.Hint, "no hint, none kept")
	})
}

// TestHooksSeeTheWait: OnAttempt tells of the wait that
// follows the attempt and where it came from, a server's hint included,
// with or without hedging.
func TestHooksSeeTheWait(t *testing.T) {
	for name, opts := range map[string][]Option{
		"plain":  nil,
		"hedged": {WithHedge(time.Hour, 2)},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got []Attempt
				ex := MustNew(append(opts, WithBackoff(Constant(100*time.Millisecond)), WithRandom(func() float64 { return 0.5 }),
					WithHooks(Hooks{OnAttempt: func(e AttemptEvent) { got = append(got, e.Attempt) }}))...)
				calls := 0
				_, err := DoHedged(t.Context(), script(&calls, RetryAfter(errFlaky, time.Second), errFlaky), ex)
				require.NoError(t, err)
				require.Len(t, got, 3)
				assert.Equal(t, 1100*time.Millisecond, got[0].Delay, "the hint, spread by jitter above it")
				assert.Equal(t, FromHint, got[0].Source)
				assert.Equal(t, time.Second, got[0].Hint)
				assert.Equal(t, 50*time.Millisecond, got[1].Delay, "full jitter: half of 100ms")
				assert.Equal(t, FromBackoff, got[1].Source)
				assert.Zero(t, got[2].Delay, "none after the last")
			})
		})
	}
}

// TestBadRandom: a jitter source out of [0, 1) ends the
// call with ErrBadRandom instead of silently waiting nothing.
func TestBadRandom(t *testing.T) {
	for _, u := range []float64{1, 1.5, -0.1, nan()} {
		t.Run(fmt.Sprint(u), func(t *testing.T) {
			calls := 0
			v, err := Do(context.Background(), script(&calls, errFlaky, errFlaky), WithRandom(func() float64 { return u }))
			assert.Equal(t, 1, calls, "no retry on a broken source")
			assert.Equal(t, 1, v, "the last value")
			assert.ErrorIs(t, err, ErrBadRandom)
			assert.ErrorIs(t, err, errFlaky)
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, ReasonPermanent, rerr.Reason)
		})
	}
	for _, u := range []float64{0, 0.999999} {
		calls := 0
		_, err := Do(context.Background(), script(&calls, errFlaky), WithRandom(func() float64 { return u }), WithBackoff(Constant(time.Millisecond)))
		assert.NoError(t, err, "%v is in range", u)
	}
	calls := 0
	_, err := Do(context.Background(), script(&calls, errFlaky), WithRandom(func() float64 { return 2 }), WithJitter(NoJitter), noWait())
	assert.NoError(t, err, "without jitter the source is never asked")
}

// TestErrorText: the text of a call's error says each
// thing once.
func TestErrorText(t *testing.T) {
	errBoom := errors.New("boom")
	stop := errors.New("shutting down")
	cases := []struct {
		name string
		call func(ctx context.Context) error
		want string
	}{
		{"exhausted", func(ctx context.Context) error {
			_, err := Do(ctx, func(context.Context) (int, error) { return 0, errBoom }, WithName("users"), noWait())
			return err
		}, "resilient: users: gave up after 3 attempts (exhausted): boom"},
		{"permanent", func(ctx context.Context) error {
			_, err := Do(ctx, func(context.Context) (int, error) { return 0, Permanent(errBoom) })
			return err
		}, "resilient: stopped after 1 attempt (permanent): boom"},
		{"deadline in the attempt", func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := Do(ctx, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
			return err
		}, "resilient: stopped after 1 attempt (deadline): context deadline exceeded"},
		{"deadline, wrapped by fn", func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := Do(ctx, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, fmt.Errorf("get users: %w", ctx.Err())
			})
			return err
		}, "resilient: stopped after 1 attempt (deadline): get users: context deadline exceeded"},
		{"next attempt past the deadline", func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, errBoom }, WithBackoff(Constant(time.Hour)))
			return err
		}, "resilient: stopped after 1 attempt (deadline): boom"},
		{"cancelled with a cause in the attempt", func(ctx context.Context) error {
			ctx, cancel := context.WithCancelCause(ctx)
			_, err := Do(ctx, func(ctx context.Context) (int, error) { cancel(stop); return 0, ctx.Err() })
			return err
		}, "resilient: stopped after 1 attempt (canceled): context canceled: shutting down"},
		{"cancelled with a cause in the wait", func(ctx context.Context) error {
			ctx, cancel := context.WithCancelCause(ctx)
			time.AfterFunc(time.Second, func() { cancel(stop) })
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, errBoom }, WithBackoff(Constant(time.Hour)))
			return err
		}, "resilient: stopped after 1 attempt (canceled): context canceled: shutting down: boom"},
		{"retry refused by the breaker the attempt opened", func(ctx context.Context) error {
			br := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(30*time.Second))
			defer br.Reset()
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, errBoom }, WithBreaker(br))
			return err
		}, `resilient: stopped after 1 attempt (rejected): resilient: breaker: open, retry in 30s: boom`},
		{"refused before the first attempt", func(ctx context.Context) error {
			br := MustNewBreaker(WithBreakerName("users"))
			br.ForceOpen()
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, nil }, WithBreaker(br))
			return err
		}, `resilient: no attempt made (rejected): resilient: breaker "users": forced-open`},
		{"retry refused by a gate", func(ctx context.Context) error {
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, errBoom },
				WithPolicy(&gate{allow: func(int) error { return errNo }}))
			return err
		}, "resilient: stopped after 1 attempt (rejected): no: boom"},
		{"hint too long", func(ctx context.Context) error {
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, RetryAfter(errBoom, 30*time.Minute) })
			return err
		}, "resilient: stopped after 1 attempt (retry-after too long: 30m0s): boom"},
		{"max elapsed in the attempt", func(ctx context.Context) error {
			_, err := Do(ctx, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() }, WithMaxElapsed(time.Second))
			return err
		}, "resilient: stopped after 1 attempt (max elapsed): context deadline exceeded"},
		{"bad random", func(ctx context.Context) error {
			_, err := Do(ctx, func(ctx context.Context) (int, error) { return 0, errBoom }, WithRandom(func() float64 { return 1 }))
			return err
		}, "resilient: stopped after 1 attempt (permanent): resilient: WithRandom: the source returned a value outside [0, 1): got 1: boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				assert.EqualError(t, tc.call(t.Context()), tc.want)
			})
		})
	}
}

// TestOptionErrors: invalid options can be told apart by
// code: an *OptionError names the option and matches ErrInvalidOption, and
// a constructor given several reports every one.
func TestOptionErrors(t *testing.T) {
	named := func(t *testing.T, err error, options ...string) {
		t.Helper()
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrInvalidOption)
		var oe *OptionError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, options[0], oe.Option, "errors.As finds the first")
		var all []string
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				require.ErrorAs(t, e, &oe)
				all = append(all, oe.Option)
			}
		} else {
			all = append(all, oe.Option)
		}
		assert.Equal(t, options, all)
	}
	calls := 0
	fn := script(&calls)

	_, err := New(WithAttempts(0), WithMaxDelay(time.Second), nil, WithJitter(ProportionalJitter(2)), WithBackoff(Constant(-1)))
	named(t, err, "WithAttempts", "New", "WithJitter", "WithBackoff")
	assert.ErrorContains(t, err, "resilient: WithAttempts: n must be >= 1 or Unlimited, got 0\nresilient: New: nil option\n")
	_, err = Do(context.Background(), fn, WithMaxElapsed(0), WithHedge(0, 1))
	named(t, err, "WithMaxElapsed", "WithHedge")
	assert.Zero(t, calls)
	_, err = New(WithAttempts(-3))
	named(t, err, "WithAttempts")
	assert.EqualError(t, err, "resilient: WithAttempts: n must be >= 1 or Unlimited, got -3", "one error alone is not joined")

	_, err = NewBreaker(WithFailureRate(2), WithCountWindow(0), nil)
	named(t, err, "WithFailureRate", "WithCountWindow", "NewBreaker")
	_, err = NewBreaker(WithCountWindow(5), WithMinCalls(6))
	named(t, err, "WithMinCalls")
	_, err = NewThrottle(WithAcceptMultiplier(0), WithThrottleWindow(0))
	named(t, err, "WithAcceptMultiplier", "WithThrottleWindow")
	_, err = NewGroup[string, int](WithSharedTimeout(0), nil)
	named(t, err, "WithSharedTimeout", "NewGroup")
	_, err = NewGroup[string, int](WithCopy(func(s string) string { return s }))
	named(t, err, "WithCopy")
	_, err = NewBulkhead(1, WithSlotWait(-1), nil)
	named(t, err, "WithSlotWait", "NewBulkhead")
	_, err = NewBreakers(0, time.Second)
	named(t, err, "NewBreakers")
}

// TestNilExecutorOption: a nil
// *Executor given as an option is an error, never a panic, and nothing is
// called.
func TestNilExecutorOption(t *testing.T) {
	var nilEx *Executor
	calls := 0
	fn := script(&calls)
	ctx := context.Background()
	_, err := New(nilEx)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = Do(ctx, fn, nilEx)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = Do(ctx, fn, MustNew(), WithAttempts(2), nilEx)
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = DoHedged(ctx, fn, nilEx)
	assert.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorIs(t, DoResult(ctx, fn, nilEx).Err, ErrInvalidOption)
	assert.Error(t, nilEx.Run(ctx, func(context.Context) error { calls++; return nil }))
	assert.Zero(t, calls)
}
