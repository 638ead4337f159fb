package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilient-go/resilient"
)

// A budget shared by the executors of one upstream lets retries add at most
// a share of the requests: in an outage, calls stop retrying once it is
// spent, and end at once with the budget's error and the last failure.
func ExampleBudget() {
	budget := resilient.MustNewBudget(
		resilient.WithRetryRatio(0.1), // retries: at most 10% of requests
		resilient.WithRetryBurst(2),   // after a quiet spell, 2 retries at once
		resilient.WithMinRetryRate(0), // no floor, for a deterministic example
	)
	api := resilient.MustNew(
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithBudget(budget),
	)
	down := func(context.Context) (string, error) { return "", errors.New("503 service unavailable") }

	for i := 1; i <= 3; i++ {
		r := resilient.DoResult(context.Background(), down, api)
		fmt.Printf("call %d: %d attempts, budget refused: %t\n", i, r.Attempts, errors.Is(r.Err, resilient.ErrBudgetExhausted))
	}
	fmt.Printf("retries left: %.1f\n", budget.Available())
	// Output:
	// call 1: 3 attempts, budget refused: true
	// call 2: 1 attempts, budget refused: true
	// call 3: 1 attempts, budget refused: true
	// retries left: 0.2
}

// A throttle refuses part of the attempts locally while the upstream
// rejects most of what it is sent, so that the upstream is not buried.
func ExampleThrottle() {
	throttle := resilient.MustNewThrottle(
		resilient.WithAcceptMultiplier(2),
		// Deterministic draws for the example: refuse whenever p > 0.
		resilient.WithThrottleRandom(func() float64 { return 0 }),
	)
	api := resilient.MustNew(resilient.WithAttempts(1), resilient.WithThrottle(throttle))
	overloaded := func(context.Context) (string, error) { return "", errors.New("429 too many requests") }

	_, err := resilient.Do(context.Background(), overloaded, api)
	fmt.Println("first call reached the upstream:", !errors.Is(err, resilient.ErrThrottled))
	fmt.Printf("refusal probability: %.2f\n", throttle.Probability())
	_, err = resilient.Do(context.Background(), overloaded, api)
	fmt.Println("second call throttled:", errors.Is(err, resilient.ErrThrottled))
	// Output:
	// first call reached the upstream: true
	// refusal probability: 0.50
	// second call throttled: true
}

// A bulkhead bounds the attempts in flight against an upstream; when it is
// full, a call is refused at once (or after its wait for a slot).
func ExampleBulkhead() {
	bulkhead := resilient.MustNewBulkhead(1, resilient.WithSlotWait(10*time.Millisecond))
	api := resilient.MustNew(resilient.WithBulkhead(bulkhead))
	ctx := context.Background()
	get := func(context.Context) (string, error) { return "ok", nil }

	_ = bulkhead.Acquire(ctx) // someone else holds the only slot
	_, err := resilient.Do(ctx, get, api)
	fmt.Println("while full:", errors.Is(err, resilient.ErrBulkheadFull))
	bulkhead.Release()

	v, err := resilient.Do(ctx, get, api)
	fmt.Println("once free:", v, err)
	fmt.Println("in flight after the call:", bulkhead.InFlight())
	// Output:
	// while full: true
	// once free: ok <nil>
	// in flight after the call: 0
}

// A group runs one execution for all the concurrent callers of a key. The
// shared function is typically a whole resilient call, which then counts
// once against the upstream's breaker and budget.
func ExampleGroup() {
	api := resilient.MustNew(resilient.WithAttempts(3))
	var users resilient.Group[string, string]

	getUser := func(ctx context.Context, id string) (string, error) {
		return users.Do(ctx, id, func(ctx context.Context) (string, error) {
			// ctx carries the first caller's values, but no caller's
			// cancellation: it ends when every caller has left.
			return resilient.Do(ctx, func(ctx context.Context) (string, error) {
				return "user " + id, nil
			}, api)
		})
	}
	v, err := getUser(context.Background(), "42")
	fmt.Println(v, err)
	// Output:
	// user 42 <nil>
}

// WithCopy gives each caller its own copy of a shared value that callers
// may change, such as a byte slice.
func ExampleWithCopy() {
	bodies := resilient.MustNewGroup[string, []byte](resilient.WithCopy(func(b []byte) []byte {
		return append([]byte(nil), b...)
	}))
	shared := []byte("hello")
	v, shared2, err := bodies.DoShared(context.Background(), "GET /greeting", func(context.Context) ([]byte, error) {
		return shared, nil
	})
	v[0] = 'J' // the caller's own copy
	fmt.Println(string(v), string(shared), shared2, err)
	// Output:
	// Jello hello false <nil>
}
