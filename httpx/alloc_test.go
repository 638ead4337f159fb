package httpx

import (
	"context"
	"net/http"
	"testing"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// staticRT answers every request with the same response, allocating
// nothing, so that only the Transport's own allocations are counted.
type staticRT struct{ resp http.Response }

func (s *staticRT) RoundTrip(*http.Request) (*http.Response, error) { return &s.resp, nil }

func TestTransportSuccessPathAllocations(t *testing.T) {
	cases := []struct {
		name string
		opts []Option
		max  float64
	}{
		{"default policy", nil, 2},
		{"prebuilt executor", []Option{WithExecutor(resilient.MustNew(resilient.WithAttempts(3)))}, 2},
		{"host breakers", []Option{WithHostBreakers(resilient.MustNewBreakers(8, 1<<40))}, 2},
		// The default policy finds its host's budget (resilient.Keyed):
		// no allocation more than without it.
		{"no host budget", []Option{WithoutHostBudget()}, 2},
		{"recommended", []Option{Recommended()}, 2},
		{"host concurrency limiter", []Option{WithHostPolicies(func(string) []resilient.Option {
			return []resilient.Option{resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter())}
		})}, 2},
		{"executor options", []Option{WithExecutorOptions(resilient.WithName("api"),
			resilient.WithHooks(resilient.Hooks{OnDone: func(resilient.DoneEvent) {}}))}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := &staticRT{resp: http.Response{StatusCode: 200, Body: http.NoBody}}
			tr := newTransport(t, base, tc.opts...)
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://api.test/x", nil)
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(1000, func() {
				resp, err := tr.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					t.Fatal(resp, err)
				}
			})
			assert.LessOrEqual(t, allocs, tc.max)
			t.Logf("%s: %v allocs per request", tc.name, allocs)
		})
	}
}
