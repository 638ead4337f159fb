package otel_test

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/resilient-go/resilient"
	resilientotel "github.com/resilient-go/resilient/contrib/otel"
)

func Example() {
	// The program's meter provider; here with a reader the example can
	// collect by hand (an exporter's periodic reader in a real program).
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	metrics := resilientotel.MustNew(resilientotel.WithMeterProvider(provider))
	breaker := resilient.MustNewBreaker(
		resilient.WithBreakerName("users-api"),
		resilient.WithStateListener(metrics.OnTransition),
	)
	usersAPI := resilient.MustNew(
		resilient.WithName("users-api"),
		resilient.WithBackoff(resilient.Constant(0)),
		resilient.WithBreaker(breaker),
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

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
			for _, p := range sum.DataPoints {
				fmt.Println(m.Name, p.Value, p.Attributes.Encoded(attribute.DefaultEncoder()))
			}
		}
	}
	// Unordered output:
	// ada <nil>
	// resilient.attempts 1 executor=users-api,outcome=retry
	// resilient.attempts 1 executor=users-api,outcome=success
	// resilient.retries 1 executor=users-api,source=backoff
	// resilient.calls 1 executor=users-api,reason=success
}
