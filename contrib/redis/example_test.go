package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	resilientredis "github.com/resilient-go/resilient/contrib/redis"
)

// A breaker and a retry budget shared by every replica of a service that
// calls the users API. It needs a running Redis, so it is compiled but not
// run.
func Example() {
	rdb := goredis.NewClient(&goredis.Options{
		Addr:                  "localhost:6379",
		ContextTimeoutEnabled: true, // so that every call is bounded by WithTimeout
	})
	defer rdb.Close()

	onRedis := resilientredis.WithEventHook(func(ev resilientredis.Event) {
		log.Printf("%s %q: redis %s: %v", ev.Component, ev.Name, ev.Kind, ev.Err)
	})
	br, err := resilientredis.NewBreaker(rdb, "users-api",
		resilientredis.WithFailureRate(0.5),
		resilientredis.WithMinCalls(50), // fleet-wide, over the last minute
		resilientredis.WithOpenDuration(30*time.Second),
		resilientredis.WithHalfOpenProbes(2), // two probes for the whole fleet
		onRedis,
	)
	if err != nil {
		log.Fatal(err)
	}
	defer br.Close()
	budget, err := resilientredis.NewBudget(rdb, "users-api", resilientredis.WithRetryRatio(0.1), onRedis)
	if err != nil {
		log.Fatal(err)
	}
	defer budget.Close()

	usersAPI := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithAttempts(3),
		resilient.WithPolicy(budget, br), // the budget gates retries, the breaker guards each attempt
	)
	err = usersAPI.Run(context.Background(), func(ctx context.Context) error {
		return nil // call the users API here
	})
	if errors.Is(err, resilient.ErrOpen) {
		log.Print("the users API is down for the whole fleet")
	}
}

// A breaker whose state survives a restart, in Redis, without sharing its
// window with other replicas. It needs a running Redis.
func ExampleNewStore() {
	rdb := goredis.NewClient(&goredis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := resilientredis.NewStore(rdb)
	if err != nil {
		log.Fatal(err)
	}
	br, err := resilient.NewBreaker(resilient.WithBreakerName("users-api"), resilient.WithStore(store))
	if err != nil {
		log.Fatal(err) // Redis could not be read
	}
	fmt.Println(br.State())
}

// Invalid configuration is an error that names the option; nothing is
// built and no connection is made.
func ExampleNewBreaker_invalid() {
	rdb := goredis.NewClient(&goredis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	_, err := resilientredis.NewBreaker(rdb, "users-api", resilientredis.WithFailureRate(1.5))
	fmt.Println(err)
	_, err = resilientredis.NewBreaker(rdb, "users-api", resilientredis.WithKeyTTL(time.Second))
	fmt.Println(err)
	// Output:
	// resilient: WithFailureRate: rate must be in (0, 1], got 1.5
	// resilient: WithKeyTTL: d must be at least the window, open duration, probe TTL and sync interval (1m0s), got 1s
}

// go-redis's log lines through log/slog, one line of each kind per 10s. An
// application sets it once, in main, with goredis.SetLogger(l); here it is
// called as go-redis calls it when Redis is down.
func ExampleNewLogger() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // for a stable output
			}
			return a
		},
	}))
	l := resilientredis.NewLogger(logger)
	for range 100 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 1, "connection refused")
	}
	// Output:
	// level=WARN msg="redis: connection pool: failed to dial after 1 attempts: connection refused"
}
