package httpx_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// flaky is an in-memory upstream: it answers with the given statuses in
// turn (the last one repeats) and prints each request it gets.
type flaky struct {
	codes []int
	n     int
}

func (f *flaky) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	code := f.codes[min(f.n, len(f.codes)-1)]
	f.n++
	fmt.Printf("attempt %d: %s %s -> %d\n", f.n, req.Method, req.URL.Path, code)
	return &http.Response{
		StatusCode: code,
		Status:     fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(http.StatusText(code))),
		Request:    req,
	}, nil
}

// noWait retries at once, so that the examples run instantly.
var noWait = resilient.MustNew(resilient.WithBackoff(resilient.Constant(0)))

func ExampleNewClient() {
	client := httpx.NewClient(
		httpx.WithBase(&flaky{codes: []int{503, 502, 200}}), // nil: http.DefaultTransport
		httpx.WithExecutor(noWait),
	)
	resp, err := client.Get("http://api.example/users/42")
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// attempt 1: GET /users/42 -> 503
	// attempt 2: GET /users/42 -> 502
	// attempt 3: GET /users/42 -> 200
	// 200 OK
}

// When the retries run out, the caller gets the last response, as a plain
// http.Client would return it: no error, body intact.
func ExampleTransport_lastResponse() {
	tr, err := httpx.NewTransport(
		httpx.WithBase(&flaky{codes: []int{503}}),
		httpx.WithExecutor(resilient.MustNew(resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0)))),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	client := &http.Client{Transport: tr}
	resp, err := client.Get("http://api.example/health")
	fmt.Println(resp.StatusCode, err)
	resp.Body.Close()
	// Output:
	// attempt 1: GET /health -> 503
	// attempt 2: GET /health -> 503
	// 503 <nil>
}

// A POST is not retried after it may have reached the server, unless it
// carries an idempotency key.
func ExampleWithIdempotencyKeys() {
	plain := httpx.NewClient(httpx.WithBase(&flaky{codes: []int{503, 201}}), httpx.WithExecutor(noWait))
	resp, _ := plain.Post("http://api.example/orders", "application/json", strings.NewReader(`{}`))
	fmt.Println("without a key:", resp.StatusCode)
	resp.Body.Close()

	keyed := httpx.NewClient(httpx.WithBase(&flaky{codes: []int{503, 201}}), httpx.WithExecutor(noWait),
		httpx.WithIdempotencyKeys())
	resp, _ = keyed.Post("http://api.example/orders", "application/json", strings.NewReader(`{}`))
	fmt.Println("with a generated key:", resp.StatusCode, resp.Request.Header.Get("Idempotency-Key") != "")
	resp.Body.Close()
	// Output:
	// attempt 1: POST /orders -> 503
	// without a key: 503
	// attempt 1: POST /orders -> 503
	// attempt 2: POST /orders -> 201
	// with a generated key: 201 true
}

func ExampleWithHostBreakers() {
	hosts := resilient.MustNewBreakers(1000, 10*time.Minute, resilient.WithConsecutiveFailures(2))
	client := httpx.NewClient(
		httpx.WithBase(&flaky{codes: []int{503}}),
		httpx.WithExecutor(noWait),
		httpx.WithHostBreakers(hosts),
	)
	resp, _ := client.Get("http://api.example/x")
	resp.Body.Close()
	_, err := client.Get("http://api.example/x")
	fmt.Println(errors.Is(err, resilient.ErrOpen), hosts.Get("api.example").State())
	// Output:
	// attempt 1: GET /x -> 503
	// attempt 2: GET /x -> 503
	// true open
}

func ExampleParseRetryAfter() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, v := range []string{"120", "Sun, 01 Mar 2026 12:00:30 GMT", "9999999999999", "-1", "soon"} {
		d, ok := httpx.ParseRetryAfter(v, now)
		fmt.Printf("%q: %v %v\n", v, d, ok)
	}
	// Output:
	// "120": 2m0s true
	// "Sun, 01 Mar 2026 12:00:30 GMT": 30s true
	// "9999999999999": 2562047h47m16.854775807s true
	// "-1": 0s false
	// "soon": 0s false
}

func ExampleStatusOutcome() {
	for _, code := range []int{200, 404, 429, 501, 503} {
		fmt.Println(code, httpx.StatusOutcome(code))
	}
	// Output:
	// 200 success
	// 404 success
	// 429 retry
	// 501 fail
	// 503 retry
}

// reading is flaky, but it reads each request's body and prints it.
type reading struct{ flaky }

func (r *reading) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	fmt.Printf("sent %q\n", body)
	return r.flaky.RoundTrip(req)
}

// A body without GetBody, such as a pipe, is kept as it is sent, up to the
// replay limit, so that a retry sends it again, byte for byte.
func ExampleWithReplayLimit() {
	client := httpx.NewClient(
		httpx.WithBase(&reading{flaky{codes: []int{503, 200}}}),
		httpx.WithExecutor(noWait),
		httpx.WithReplayLimit(64<<10), // default: 1 MiB
	)
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, `{"name":"gopher"}`)
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, "http://api.example/users/42", pr)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output:
	// sent "{\"name\":\"gopher\"}"
	// attempt 1: PUT /users/42 -> 503
	// sent "{\"name\":\"gopher\"}"
	// attempt 2: PUT /users/42 -> 200
	// 200
}

// gated holds every request to slow.example until release is closed,
// telling arrived when one is in; other hosts answer at once.
type gated struct{ arrived, release chan struct{} }

func (g *gated) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == "slow.example" {
		g.arrived <- struct{}{}
		<-g.release
	}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// Each host gets its own concurrency limiter (here a fixed limit of one
// attempt in flight), on top of the default policy: a host at its limit
// refuses more at once, as a rejection, while the other hosts are served.
func ExampleWithHostPolicies() {
	g := &gated{arrived: make(chan struct{}), release: make(chan struct{})}
	client := httpx.NewClient(
		httpx.WithBase(g),
		httpx.WithHostPolicies(func(host string) []resilient.Option {
			limiter := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(1, 1))
			return []resilient.Option{resilient.WithConcurrencyLimit(limiter)}
		}),
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := client.Get("http://slow.example/a")
		if err == nil {
			resp.Body.Close()
			fmt.Println("first to slow.example:", resp.Status)
		}
	}()
	<-g.arrived // the first request holds slow.example's only slot

	_, err := client.Get("http://slow.example/b")
	fmt.Println("second to slow.example:", resilient.RejectedBy(err), errors.Is(err, resilient.ErrConcurrencyLimit))
	resp, err := client.Get("http://fast.example/c")
	if err == nil {
		resp.Body.Close()
		fmt.Println("fast.example:", resp.Status)
	}
	close(g.release)
	<-done
	// Output:
	// second to slow.example: concurrency true
	// fast.example: 200 OK
	// first to slow.example: 200 OK
}

// Every invalid option is reported, each a *resilient.OptionError named
// with the package; an option of the core passed on is reported within the
// option that took it, the core's own error inside.
func ExampleNewTransport_invalidOptions() {
	_, err := httpx.NewTransport(
		httpx.WithMaxHosts(0),
		httpx.WithExecutorOptions(resilient.WithAttempts(0)),
	)
	fmt.Println(errors.Is(err, resilient.ErrInvalidOption))
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var oe *resilient.OptionError
		errors.As(e, &oe)
		fmt.Printf("%s: %v\n", oe.Option, oe.Err)
	}
	// Output:
	// true
	// httpx.WithMaxHosts: n must be >= 1, got 0
	// httpx.WithExecutorOptions: resilient: WithAttempts: n must be >= 1 or Unlimited, got 0
}
