package resilient_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/resilient-go/resilient"
)

// A breaker shared by every call to one upstream. It counts each attempt;
// once it opens, calls are refused at once, without calling the function
// and without retrying.
func ExampleWithBreaker() {
	breaker := resilient.MustNewBreaker(
		resilient.WithBreakerName("users"),
		resilient.WithConsecutiveFailures(3),
		resilient.WithOpenDuration(30*time.Second),
	)
	usersAPI := resilient.MustNew(
		resilient.WithAttempts(5),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithBreaker(breaker),
	)
	ctx := context.Background()
	calls := 0
	getUser := func(context.Context) (string, error) {
		calls++
		return "", errors.New("connection refused")
	}

	_, err := resilient.Do(ctx, getUser, usersAPI)
	fmt.Println("calls:", calls, "breaker:", breaker.State())
	fmt.Println("rejected:", errors.Is(err, resilient.ErrOpen))

	_, err = resilient.Do(ctx, getUser, usersAPI)
	var open *resilient.OpenError
	if errors.As(err, &open) {
		fmt.Println("calls:", calls, "refused by", open.Name, "because of:", open.Cause)
	}
	// Output:
	// calls: 3 breaker: open
	// rejected: true
	// calls: 3 refused by users because of: connection refused
}

// The two-step API serves code that cannot hand the breaker a function:
// ask for a permit, make the call, report how it went.
func ExampleBreaker_Allow() {
	breaker := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(2))

	send := func(fail bool) error {
		p, err := breaker.Allow()
		if err != nil {
			return err // open: do not even try
		}
		var callErr error
		if fail {
			callErr = errors.New("503 service unavailable")
		}
		breaker.Record(p, callErr) // nil: success; context.Canceled: neither
		return callErr
	}

	fmt.Println(send(false))
	fmt.Println(send(true))
	fmt.Println(send(true))
	fmt.Println(errors.Is(send(false), resilient.ErrOpen))
	// Output:
	// <nil>
	// 503 service unavailable
	// 503 service unavailable
	// true
}

// A listener hears of every change of state, with the counts that caused
// it, and once of the initial state, so that a gauge starts truthful.
func ExampleWithStateListener() {
	breaker := resilient.MustNewBreaker(
		resilient.WithBreakerName("payments"),
		resilient.WithCountWindow(10),
		resilient.WithMinCalls(4),
		resilient.WithStateListener(func(t resilient.Transition) {
			m := t.Metrics
			fmt.Printf("%s: %s -> %s (%d of %d calls failed)\n", t.Name, t.From, t.To, m.Failures, m.Calls)
		}),
	)
	for _, fail := range []bool{false, true, false, true} {
		p, _ := breaker.Allow()
		var err error
		if fail {
			err = errors.New("timeout")
		}
		breaker.Record(p, err)
	}
	breaker.Reset()
	// Output:
	// payments: closed -> closed (0 of 0 calls failed)
	// payments: closed -> open (2 of 4 calls failed)
	// payments: open -> closed (2 of 4 calls failed)
}

// A set of breakers, one per host, built on first use and forgotten when
// idle.
func ExampleBreakers() {
	hosts := resilient.MustNewBreakers(1000, 10*time.Minute, resilient.WithConsecutiveFailures(5))
	a := hosts.Get("api.example.com")
	fmt.Println(a.Name(), a.State(), a == hosts.Get("api.example.com"))
	// Output:
	// api.example.com closed true
}
