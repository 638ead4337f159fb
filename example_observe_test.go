package resilient_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/resilient-go/resilient"
)

func ExampleObserve() {
	calls := 0
	flaky := func(context.Context) (string, error) {
		if calls++; calls == 1 {
			return "", errors.New("connection reset")
		}
		return "ok", nil
	}
	ex := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithHooks(resilient.Observe(func(ev resilient.Event) {
			switch ev := ev.(type) {
			case resilient.AttemptEvent:
				fmt.Printf("attempt %d: %s\n", ev.Number, ev.Outcome)
			case resilient.RetryEvent:
				fmt.Printf("retry after attempt %d, wait %v (%s)\n", ev.Attempt, ev.Delay, ev.Source)
			case resilient.DoneEvent:
				fmt.Printf("done after %d attempts: %s\n", ev.Attempts, ev.Reason)
			}
		})),
	)
	_, _ = resilient.Do(context.Background(), flaky, ex)
	// Output:
	// attempt 1: retry
	// retry after attempt 1, wait 0s (backoff)
	// attempt 2: success
	// done after 2 attempts: success
}

func ExampleSlogHooks() {
	// A handler without times, so that the output is stable.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey, resilient.LogKeyElapsed, resilient.LogKeyDuration:
				return slog.Attr{}
			}
			return a
		},
	}))
	ex := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithAttempts(2),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithHooks(resilient.SlogHooks(logger)),
	)
	_, _ = resilient.Do(context.Background(), func(context.Context) (int, error) {
		return 0, errors.New("connection reset")
	}, ex)
	// Output:
	// level=INFO msg="resilient: retry" executor=users-api attempt=1 delay=0s delay_source=backoff error="connection reset"
	// level=WARN msg="resilient: gave up" executor=users-api attempts=2 reason=exhausted error="resilient: users-api: gave up after 2 attempts (exhausted): connection reset"
}

func ExampleSlogStateListener() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	br := resilient.MustNewBreaker(
		resilient.WithBreakerName("users-api"),
		resilient.WithConsecutiveFailures(2),
		resilient.WithStateListener(resilient.SlogStateListener(logger)),
	)
	ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithBreaker(br))
	for range 2 {
		_, _ = resilient.Do(context.Background(), func(context.Context) (int, error) {
			return 0, errors.New("connection reset")
		}, ex)
	}
	// Output:
	// level=WARN msg="resilient: breaker state" breaker=users-api from=closed to=open calls=2 failures=2 slow_calls=0 failure_rate=1 slow_call_rate=0 consecutive_failures=2 error="connection reset"
}

func ExampleTextMetrics() {
	// Once, at start-up: the metrics, fed by every executor and breaker,
	// served on /metrics with the standard library alone.
	metrics := resilient.NewTextMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", resilient.TextMetricsContentType)
		_, _ = metrics.WriteTo(w)
	})
	br := resilient.MustNewBreaker(
		resilient.WithBreakerName("users-api"),
		resilient.WithStateListener(metrics.OnTransition),
	)
	usersAPI := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithBreaker(br),
		resilient.WithHooks(metrics.Hooks()),
	)

	calls := 0
	_, _ = resilient.Do(context.Background(), func(context.Context) (string, error) {
		if calls++; calls == 1 {
			return "", errors.New("connection reset")
		}
		return "ada", nil
	}, usersAPI)

	// A scrape, here without a network.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") && !strings.Contains(line, "_seconds") {
			fmt.Println(line)
		}
	}
	// Output:
	// resilient_calls_total{executor="users-api",reason="success"} 1
	// resilient_attempts_total{executor="users-api",outcome="success"} 1
	// resilient_attempts_total{executor="users-api",outcome="retry"} 1
	// resilient_retries_total{executor="users-api",source="backoff"} 1
	// resilient_breaker_state{breaker="users-api",state="closed"} 1
	// resilient_breaker_state{breaker="users-api",state="open"} 0
	// resilient_breaker_state{breaker="users-api",state="half_open"} 0
	// resilient_breaker_state{breaker="users-api",state="forced_open"} 0
	// resilient_breaker_state{breaker="users-api",state="disabled"} 0
}
