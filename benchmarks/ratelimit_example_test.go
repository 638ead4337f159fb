package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/resilient-go/resilient"
)

// golang.org/x/time/rate's *Limiter is a resilient.Limiter: it plugs into
// WithRateLimit as it is. A wait that would pass the deadline is refused at
// once, by x/time/rate itself; the executor reports it as a rejection by
// the rate limit, wrapping x/time/rate's error.
func Example_xTimeRate() {
	quota := rate.NewLimiter(rate.Every(time.Second), 1) // one request a second
	api := resilient.MustNew(resilient.WithRateLimit(quota), resilient.WithAttempts(1))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	call := func(context.Context) (string, error) { return "ok", nil }

	v, err := resilient.Do(ctx, call, api)
	fmt.Println(v, err)
	_, err = resilient.Do(ctx, call, api) // the next token is 1s away, after the deadline
	fmt.Println(errors.Is(err, resilient.ErrRateLimited), resilient.RejectedBy(err))
	fmt.Println(err)
	// Output:
	// ok <nil>
	// true ratelimit
	// resilient: no attempt made (rejected): resilient: rate limited: rate: Wait(n=1) would exceed context deadline
}
