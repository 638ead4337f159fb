package httpx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// down is an in-memory pair of upstreams: users.example answers 503 to
// everything (an outage), other.example 200. It counts what is sent.
type down struct{ sent map[string]int }

func (d *down) RoundTrip(req *http.Request) (*http.Response, error) {
	d.sent[req.URL.Host]++
	code := http.StatusOK
	if req.URL.Host == "users.example" {
		code = http.StatusServiceUnavailable
	}
	return &http.Response{
		StatusCode: code,
		Status:     fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(http.StatusText(code))),
		Request:    req,
	}, nil
}

// The recommended client for a service's upstreams: the defaults (4
// attempts, exponential backoff with full jitter, Retry-After honoured up
// to 30s, an adaptive retry budget per host) and a breaker per host that
// opens when 75% of the last 50 attempts failed and probes every second.
// Hooks and a name are added without losing any of it. Every request
// carries a deadline: it bounds all of its attempts.
//
// Here one host is down. Its budget lets 10 retries through, and its
// floor 1 more, then each call makes one attempt; after 20 attempts (the
// fewest it judges), all failed, its breaker opens, and calls are refused
// without being sent, while the other host is served.
func ExampleRecommended() {
	var attempts int
	up := &down{sent: map[string]int{}}
	client := httpx.NewClient(
		httpx.Recommended(resilient.WithBreakerName("upstreams")),
		httpx.WithExecutorOptions(
			resilient.WithName("users-api"),
			resilient.WithHooks(resilient.Hooks{OnAttempt: func(resilient.AttemptEvent) { attempts++ }}),
		),
		httpx.WithBase(up), // nil: http.DefaultTransport
		// Only so that this example runs at once: no wait between attempts.
		httpx.WithExecutorOptions(resilient.WithBackoff(resilient.Constant(0))),
	)

	get := func(url string) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	statuses, refused := map[int]int{}, 0
	for range 60 {
		resp, err := get("http://users.example/users/42")
		var open *resilient.OpenError
		switch {
		case errors.As(err, &open):
			refused++
			if refused == 1 {
				fmt.Printf("refused by %s, next probe within 1s: %v\n", resilient.RejectedBy(err), open.RetryAfter() <= time.Second)
			}
		case err != nil:
			fmt.Println("error:", err)
		default:
			statuses[resp.StatusCode]++
		}
	}
	fmt.Printf("users.example: %d calls answered 503, %d refused; %d requests sent\n", statuses[503], refused, up.sent["users.example"])

	resp, err := get("http://other.example/health")
	fmt.Println("other.example:", resp.Status, err)
	fmt.Println("attempts seen by the hooks:", attempts)
	// Output:
	// refused by breaker, next probe within 1s: true
	// users.example: 9 calls answered 503, 51 refused; 20 requests sent
	// other.example: 200 OK <nil>
	// attempts seen by the hooks: 21
}
