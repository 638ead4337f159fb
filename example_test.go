package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/resilient-go/resilient"
)

var errUnavailable = errors.New("unavailable")

// A one-line call with the defaults: up to 3 attempts, exponential backoff
// with full jitter.
func ExampleDo() {
	calls := 0
	greeting, err := resilient.Do(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		if calls < 2 {
			return "", errUnavailable // transient: retried
		}
		return "hello", nil
	}, resilient.WithBackoff(resilient.Constant(0)))
	fmt.Println(greeting, err, calls)
	// Output: hello <nil> 2
}

// An executor is built once per upstream and shared by every call to it.
func ExampleNew() {
	usersAPI, err := resilient.New(
		resilient.WithName("users-api"),
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Exponential(time.Millisecond, 10*time.Millisecond)),
	)
	if err != nil {
		panic(err)
	}
	_, err = resilient.Do(context.Background(), func(ctx context.Context) (int, error) {
		return 0, errUnavailable
	}, usersAPI)

	var rerr *resilient.Error
	if errors.As(err, &rerr) {
		fmt.Println(rerr.Attempts, rerr.Reason)
	}
	fmt.Println(errors.Is(err, errUnavailable), errors.Is(err, resilient.ErrExhausted))
	fmt.Println(err)
	// Output:
	// 4 exhausted
	// true true
	// resilient: users-api: gave up after 4 attempts (exhausted): unavailable
}

// Invalid options are refused with an error that names the option.
func ExampleNew_invalid() {
	_, err := resilient.New(resilient.WithAttempts(-2))
	fmt.Println(err)
	// Output: resilient: WithAttempts: n must be >= 1 or Unlimited, got -2
}

type notFoundError struct{ id string }

func (e *notFoundError) Error() string { return "user " + e.id + " not found" }

// Permanent stops retrying and hands the original error back.
func ExamplePermanent() {
	calls := 0
	_, err := resilient.Do(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		return "", resilient.Permanent(&notFoundError{id: "42"})
	})
	var nf *notFoundError
	fmt.Println(calls, errors.As(err, &nf), nf.id)
	// Output: 1 true 42
}

type reply struct {
	status int
	body   string
}

// CheckValue retries on a value (a 503 reply) without losing it: when the
// attempts run out, the caller gets the last reply and an error saying why;
// earlier replies go to the OnDiscard hook.
func ExampleCheckValue() {
	released := 0
	ex := resilient.MustNew(
		resilient.WithAttempts(2),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.CheckValue(func(r *reply) error {
			if r.status >= 500 {
				return fmt.Errorf("status %d", r.status)
			}
			return nil
		}),
		resilient.OnDiscard(func(r *reply) { released++ }),
	)
	r, err := resilient.Do(context.Background(), func(ctx context.Context) (*reply, error) {
		return &reply{status: 503, body: "try later"}, nil
	}, ex)
	fmt.Println(r.status, r.body)
	fmt.Println(err)
	fmt.Println("released:", released)
	// Output:
	// 503 try later
	// resilient: gave up after 2 attempts (exhausted): status 503
	// released: 1
}

// A server's hint is honoured: the next attempt waits at least that long
// (with jitter on, up to a fifth longer, to spread callers apart).
func ExampleRetryAfter() {
	r := resilient.DoResult(context.Background(), func(ctx context.Context) (int, error) {
		return 0, resilient.RetryAfter(errUnavailable, time.Millisecond)
	}, resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0)), resilient.WithJitter(resilient.NoJitter))
	fmt.Println(r.History[0].Delay, r.History[0].Source, r.Reason)
	// Output: 1ms hint exhausted
}

// limiter is a custom policy: it admits at most n attempts in all, a stand-in
// for a rate limiter or quota, and counts the outcomes it is told about.
type limiter struct {
	left      atomic.Int64
	successes atomic.Int64
}

var errQuota = errors.New("quota used up")

func (l *limiter) Admit(ctx context.Context, attempt int) (resilient.Permit, error) {
	if l.left.Add(-1) < 0 {
		return resilient.Permit{}, errQuota
	}
	return resilient.Permit{}, nil
}

func (l *limiter) Done(_ resilient.Permit, r resilient.Report) {
	if r.Outcome == resilient.Success {
		l.successes.Add(1)
	}
}

// A custom policy plugs into every attempt through WithPolicy.
func ExampleWithPolicy() {
	quota := &limiter{}
	quota.left.Store(2)
	ex := resilient.MustNew(resilient.WithPolicy(quota), resilient.WithBackoff(resilient.Constant(0)))
	for i := range 3 {
		_, err := resilient.Do(context.Background(), func(ctx context.Context) (int, error) { return i, nil }, ex)
		fmt.Println(i, err)
	}
	fmt.Println("successes:", quota.successes.Load())
	// Output:
	// 0 <nil>
	// 1 <nil>
	// 2 resilient: no attempt made (rejected): quota used up
	// successes: 2
}

// Run serves calls that return no value.
func ExampleExecutor_Run() {
	ex := resilient.MustNew(resilient.WithBackoff(resilient.Constant(0)))
	flushed := 0
	err := ex.Run(context.Background(), func(ctx context.Context) error {
		flushed++
		return nil
	})
	fmt.Println(flushed, err)
	// Output: 1 <nil>
}

// Hooks observe each attempt, retry and end; the library itself never logs.
func ExampleWithHooks() {
	ex := resilient.MustNew(
		resilient.WithName("cache"),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithHooks(resilient.Hooks{
			OnRetry: func(e resilient.RetryEvent) {
				fmt.Printf("%s: attempt %d failed (%v), retrying\n", e.Name, e.Attempt, e.Err)
			},
			OnDone: func(e resilient.DoneEvent) {
				fmt.Printf("%s: done after %d attempts: %s\n", e.Name, e.Attempts, e.Reason)
			},
		}),
	)
	calls := 0
	_ = ex.Run(context.Background(), func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return errUnavailable
		}
		return nil
	})
	// Output:
	// cache: attempt 1 failed (unavailable), retrying
	// cache: done after 2 attempts: success
}

// WithFallback turns a final error into a value: here a stale cached price.
func ExampleWithFallback() {
	cached := 41.5
	price, err := resilient.Do(context.Background(), func(ctx context.Context) (float64, error) {
		return 0, errUnavailable
	},
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithFallback(func(ctx context.Context, err error) (float64, error) {
			if errors.Is(err, resilient.ErrExhausted) {
				return cached, nil
			}
			return 0, err
		}),
	)
	fmt.Println(price, err)
	// Output: 41.5 <nil>
}

// DoHedged races a slow attempt with another one; the first good result
// wins and the loser is cancelled.
func ExampleDoHedged() {
	ex := resilient.MustNew(resilient.WithHedge(10*time.Millisecond, 2))
	var calls atomic.Int32
	replica, err := resilient.DoHedged(context.Background(), func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // the first replica stalls until it loses
			return "", ctx.Err()
		}
		return "second replica", nil
	}, ex)
	fmt.Println(replica, err, calls.Load())
	// Output: second replica <nil> 2
}

// A guard inside the function, which the executor cannot see (here a
// breaker per host), refuses an attempt with Reject: the call is a
// rejection, as a policy's refusal is, and no attempt is counted.
func ExampleReject() {
	hosts := resilient.MustNewBreakers(100, time.Minute)
	hosts.Get("api.example.com").ForceOpen()
	_, err := resilient.Do(context.Background(), func(ctx context.Context) (string, error) {
		p, err := hosts.Get("api.example.com").Allow()
		if err != nil {
			return "", resilient.Reject(err) // nothing was sent
		}
		defer hosts.Get("api.example.com").Record(p, nil)
		return "sent", nil
	})
	var rerr *resilient.Error
	errors.As(err, &rerr)
	fmt.Println(rerr.Attempts, rerr.Reason, resilient.RejectedBy(err), errors.Is(err, resilient.ErrOpen))
	fmt.Println(err)
	// Output:
	// 0 rejected breaker true
	// resilient: no attempt made (rejected): resilient: breaker "api.example.com": forced-open
}

// A 429 is the upstream asking for less traffic, not failing: marked
// Throttled it is retried as usual, and a breaker does not count it.
func ExampleThrottled() {
	br := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(1))
	calls := 0
	v, err := resilient.Do(context.Background(), func(ctx context.Context) (string, error) {
		calls++
		if calls == 1 {
			return "", resilient.Throttled(errors.New("status 429"))
		}
		return "ok", nil
	}, resilient.WithBreaker(br), resilient.WithBackoff(resilient.Constant(0)))
	fmt.Println(v, err, calls, br.State(), br.Metrics().Failures)
	// Output: ok <nil> 2 closed 0
}

// Every invalid option is reported, each an *OptionError that names it.
func ExampleOptionError() {
	_, err := resilient.New(resilient.WithAttempts(0), resilient.WithMaxDelay(-time.Second))
	fmt.Println(errors.Is(err, resilient.ErrInvalidOption))
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var oe *resilient.OptionError
		errors.As(e, &oe)
		fmt.Printf("%s: %v\n", oe.Option, oe.Err)
	}
	// Output:
	// true
	// WithAttempts: n must be >= 1 or Unlimited, got 0
	// WithMaxDelay: d must be > 0, got -1s
}

// A hint beyond the cap ends the call at once; the error keeps it, so that
// the caller can pass it on.
func ExampleError_hint() {
	_, err := resilient.Do(context.Background(), func(ctx context.Context) (string, error) {
		return "", resilient.RetryAfter(errUnavailable, 30*time.Minute)
	}, resilient.WithMaxDelay(time.Minute))
	var rerr *resilient.Error
	errors.As(err, &rerr)
	fmt.Println(rerr.Reason, rerr.Hint)
	fmt.Println(err)
	// Output:
	// retry-after too long 30m0s
	// resilient: stopped after 1 attempt (retry-after too long: 30m0s): unavailable
}
