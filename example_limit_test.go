package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilient-go/resilient"
)

// An adaptive budget stops retries in an outage, and lets them go on in a
// brownout, where they succeed: successes earn retries back, and a retry
// that succeeds costs nothing.
func ExampleNewAdaptiveBudget() {
	budget := resilient.MustNewAdaptiveBudget(
		resilient.WithRetryBurst(2),   // a fresh budget holds 2 retries
		resilient.WithMinRetryRate(0), // no floor, for a deterministic example
	)
	api := resilient.MustNew(
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithBudget(budget),
	)
	ctx := context.Background()
	down := func(context.Context) (string, error) { return "", errors.New("503 service unavailable") }
	for i := 1; i <= 2; i++ {
		r := resilient.DoResult(ctx, down, api)
		fmt.Printf("outage, call %d: %d attempts, budget refused: %t\n", i, r.Attempts, errors.Is(r.Err, resilient.ErrBudgetExhausted))
	}

	up := func(context.Context) (string, error) { return "ok", nil }
	resilient.Do(ctx, up, api)
	resilient.Do(ctx, up, api)
	fmt.Printf("after two successes: %.1f retries\n", budget.Available())

	for i := 1; i <= 3; i++ { // every first attempt fails, every retry succeeds
		n := 0
		flaky := func(context.Context) (string, error) {
			if n++; n == 1 {
				return "", errors.New("503 service unavailable")
			}
			return "ok", nil
		}
		r := resilient.DoResult(ctx, flaky, api)
		fmt.Printf("brownout, call %d: %d attempts, err: %v\n", i, r.Attempts, r.Err)
	}
	fmt.Printf("retries left: %.1f\n", budget.Available())
	// Output:
	// outage, call 1: 3 attempts, budget refused: true
	// outage, call 2: 1 attempts, budget refused: true
	// after two successes: 1.0 retries
	// brownout, call 1: 2 attempts, err: <nil>
	// brownout, call 2: 2 attempts, err: <nil>
	// brownout, call 3: 2 attempts, err: <nil>
	// retries left: 1.0
}

// A smooth limiter lets one event through per interval; a bursty one lets
// a burst through at once after a quiet spell, then keeps to the rate.
func ExampleRateLimiter() {
	smooth := resilient.MustNewRateLimiter(1) // one a second, evenly spaced
	bursty := resilient.MustNewRateLimiter(1, resilient.WithBurst(3))
	for i := 1; i <= 4; i++ {
		fmt.Printf("event %d: smooth %t, bursty %t\n", i, smooth.Allow(), bursty.Allow())
	}
	// Output:
	// event 1: smooth true, bursty true
	// event 2: smooth false, bursty true
	// event 3: smooth false, bursty true
	// event 4: smooth false, bursty false
}

// Every attempt of an executor with a rate limit waits for a token; one
// whose wait would pass the deadline is refused at once, as a rejection.
func ExampleWithRateLimit() {
	api := resilient.MustNew(
		resilient.WithName("quota-api"),
		resilient.WithRateLimit(resilient.MustNewRateLimiter(1)), // the upstream's quota: 1/s
	)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	call := func(context.Context) (string, error) { return "ok", nil }

	v, err := resilient.Do(ctx, call, api)
	fmt.Println(v, err)
	// The next token is 1s away, after the deadline: refused now, not in 100ms.
	_, err = resilient.Do(ctx, call, api)
	fmt.Println(err)
	fmt.Println("refused by:", resilient.RejectedBy(err))
	// Output:
	// ok <nil>
	// resilient: quota-api: no attempt made (rejected): resilient: rate limited
	// refused by: ratelimit
}

// A concurrency limiter refuses attempts beyond its limit at once, and
// moves the limit with what it sees: here AIMD halves it after a window of
// failures.
func ExampleConcurrencyLimiter() {
	limiter := resilient.MustNewConcurrencyLimiter(
		resilient.WithAIMD(resilient.AIMD{Backoff: 0.5}),
		resilient.WithInitialLimit(8),
		resilient.WithMinSamples(1),
	)
	api := resilient.MustNew(resilient.WithAttempts(1), resilient.WithConcurrencyLimit(limiter))
	fmt.Println("limit:", limiter.Limit())

	ctx := context.Background()
	for range 8 { // a window of 8 attempts, failing
		resilient.Do(ctx, func(context.Context) (string, error) { return "", errors.New("503 service unavailable") }, api)
	}
	fmt.Println("limit after a window of failures:", limiter.Limit())

	// Hold every slot: the next call is refused at once.
	held := make([]resilient.Permit, 0, limiter.Limit())
	for range limiter.Limit() {
		p, _ := limiter.Admit(ctx, 1)
		held = append(held, p)
	}
	_, err := resilient.Do(ctx, func(context.Context) (string, error) { return "ok", nil }, api)
	fmt.Println(resilient.RejectedBy(err), errors.Is(err, resilient.ErrConcurrencyLimit))
	for _, p := range held {
		limiter.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Ignore})
	}
	// Output:
	// limit: 8
	// limit after a window of failures: 4
	// concurrency true
}

// Keyed keeps one budget (or limiter) per host, so that one host's outage
// spends only its own retries.
func ExampleKeyed() {
	opts := []resilient.BudgetOption{resilient.WithRetryBurst(5)}
	if _, err := resilient.NewAdaptiveBudget(opts...); err != nil { // check the options once
		panic(err)
	}
	hosts := resilient.MustNewKeyed(1000, func(string) *resilient.Budget {
		return resilient.MustNewAdaptiveBudget(opts...)
	})
	a := hosts.Get("a.example.com")
	fmt.Println(a == hosts.Get("a.example.com"), a == hosts.Get("b.example.com"), hosts.Len())
	// Output:
	// true false 2
}
