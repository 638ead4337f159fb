package prometheus_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/resilient-go/resilient"
	resilientprom "github.com/resilient-go/resilient/contrib/prometheus"
)

func Example() {
	// Once, at start-up: the metrics, registered, and served on /metrics.
	metrics := resilientprom.MustNew()
	registry := prometheus.NewRegistry()
	registry.MustRegister(metrics)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))

	// Every executor to be measured gets the hooks.
	usersAPI := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithHooks(metrics.Hooks()),
	)

	calls := 0
	name, err := resilient.Do(context.Background(), func(context.Context) (string, error) {
		if calls++; calls == 1 {
			return "", errors.New("connection reset")
		}
		return "ada", nil
	}, usersAPI)
	fmt.Println(name, err)

	// A scrape, here without a network.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, "_total{") && !strings.HasPrefix(line, "#") {
			fmt.Println(line)
		}
	}
	// Output:
	// ada <nil>
	// resilient_attempts_total{executor="users-api",outcome="retry"} 1
	// resilient_attempts_total{executor="users-api",outcome="success"} 1
	// resilient_calls_total{executor="users-api",reason="success"} 1
	// resilient_retries_total{executor="users-api",source="backoff"} 1
}
