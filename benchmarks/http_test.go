package benchmarks

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// Scenario 6: HTTP GET over loopback.
//
// Every client gets the same job: GET a small resource from an httptest
// server, read the body to the end and close it, and check the status. The
// clients share no state: each gets a fresh server and a fresh
// http.Transport (a clone of http.DefaultTransport), so that the
// connections each one opens are counted apart. Serially, one keep-alive
// connection serves every request; a benchmark that opens more than
// maxConns fails, and each reports the connections it opened (conns).
//
// The retrying clients are configured as in scenario 1 (3 attempts,
// exponential backoff from 100ms, capped at 5s, with jitter) for the
// success path, and with zero delay for the 503-503-200 path:
//
//   - httpx: NewClient(WithBase(tr), WithExecutor(ex)).
//   - go-retryablehttp: NewClient with its HTTPClient on tr, RetryMax 2,
//     and Logger nil: by default it logs every request, which no other
//     client does.
//   - failsafehttp: an http.Client whose Transport is
//     failsafehttp.NewRoundTripper(tr, policy), with the policy from
//     failsafehttp.NewRetryPolicyBuilder. It does not close the responses
//     it retries, so each would hold its connection until collected and
//     every retry would open a new one; the policy's OnRetryScheduled
//     listener drains and closes them, as the other clients do themselves.
//   - plain: an http.Client on tr; on the 503 path, a hand-written loop of
//     three attempts that drains and closes each discarded response.

// httpOp is one GET through a client: it returns the final status after
// the body has been read and closed.
type httpOp func(ctx context.Context) (int, error)

// httpLib is one side of the HTTP benchmark. build gets the server's URL
// and the RoundTripper to send attempts with; zero asks for zero delay
// between attempts.
type httpLib struct {
	name  string
	build func(url string, rt http.RoundTripper, zero bool) httpOp
}

const responseBody = "the quick brown fox jumps over the lazy dog, again and again, until the body is a few hundred bytes long. " +
	"the quick brown fox jumps over the lazy dog, again and again, until the body is a few hundred bytes long. "

// readAndClose reads resp's body to the end, closes it, and returns the
// status.
func readAndClose(resp *http.Response) (int, error) {
	_, err := io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, err
}

// discardResponse drains and closes a response that will not be returned.
func discardResponse(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

func get(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

var httpLibs = []httpLib{
	{"plain", func(url string, rt http.RoundTripper, zero bool) httpOp {
		c := &http.Client{Transport: rt}
		if !zero {
			return func(ctx context.Context) (int, error) {
				resp, err := get(ctx, c, url)
				if err != nil {
					return 0, err
				}
				return readAndClose(resp)
			}
		}
		return func(ctx context.Context) (int, error) {
			for i := range attempts {
				resp, err := get(ctx, c, url)
				if err != nil {
					return 0, err
				}
				if resp.StatusCode != http.StatusServiceUnavailable || i == attempts-1 {
					return readAndClose(resp)
				}
				discardResponse(resp)
			}
			panic("unreachable")
		}
	}},
	{"httpx", func(url string, rt http.RoundTripper, zero bool) httpOp {
		b := resilient.Exponential(base, capDelay)
		if zero {
			b = resilient.Constant(0)
		}
		c := httpx.NewClient(httpx.WithBase(rt), httpx.WithExecutor(resilient.MustNew(
			resilient.WithAttempts(attempts),
			resilient.WithBackoff(b),
		)))
		return func(ctx context.Context) (int, error) {
			resp, err := get(ctx, c, url)
			if err != nil {
				return 0, err
			}
			return readAndClose(resp)
		}
	}},
	{"retryablehttp", func(url string, rt http.RoundTripper, zero bool) httpOp {
		c := retryablehttp.NewClient()
		c.HTTPClient = &http.Client{Transport: rt}
		c.Logger = nil
		c.RetryMax = attempts - 1
		c.RetryWaitMin, c.RetryWaitMax = base, capDelay
		if zero {
			c.RetryWaitMin, c.RetryWaitMax = 0, 0
		}
		return func(ctx context.Context) (int, error) {
			req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return 0, err
			}
			resp, err := c.Do(req)
			if err != nil {
				return 0, err
			}
			return readAndClose(resp)
		}
	}},
	{"failsafehttp", func(url string, rt http.RoundTripper, zero bool) httpOp {
		return failsafeHTTPOp(url, rt, zero, true)
	}},
}

// failsafeHTTPOp builds the failsafehttp client; closeRetried adds the
// listener that drains and closes the responses it retries.
func failsafeHTTPOp(url string, rt http.RoundTripper, zero, closeRetried bool) httpOp {
	pb := failsafehttp.NewRetryPolicyBuilder().WithMaxAttempts(attempts)
	if zero {
		pb = pb.WithDelay(0)
	} else {
		pb = pb.WithBackoff(base, capDelay).WithJitterFactor(0.5)
	}
	if closeRetried {
		pb = pb.OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*http.Response]) {
			discardResponse(e.LastResult())
		})
	}
	c := &http.Client{Transport: failsafehttp.NewRoundTripper(rt, pb.Build())}
	return func(ctx context.Context) (int, error) {
		resp, err := get(ctx, c, url)
		if err != nil {
			return 0, err
		}
		return readAndClose(resp)
	}
}

// upstream is an httptest server that counts the connections and requests
// it gets. With flaky set, it answers 503, 503, 200 in turn.
type upstream struct {
	*httptest.Server
	conns, requests atomic.Int64
}

func newUpstream(flaky bool) *upstream {
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := u.requests.Add(1)
		if flaky && n%3 != 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "unavailable\n")
			return
		}
		_, _ = io.WriteString(w, responseBody)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	return u
}

func newTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}

// maxConns is how many connections a client may open for any number of
// requests made one after another. One keep-alive connection serves them
// all; on this loaded machine, net/http was seen (once in ten runs of ten
// thousand requests, for the plain client) to dial a second one. A response
// body left open pins its connection, so a client that leaks one per
// request opens thousands: the limit tells the two apart.
const maxConns = 2

// checkConns fails if the upstream saw more connections than maxConns.
func checkConns(tb testing.TB, u *upstream) {
	tb.Helper()
	if got := u.conns.Load(); got > maxConns {
		tb.Fatalf("%d connections opened for %d requests, want at most %d: a body was not read and closed",
			got, u.requests.Load(), maxConns)
	}
}

func benchmarkHTTP(b *testing.B, flaky bool) {
	for _, l := range httpLibs {
		b.Run("lib="+l.name, func(b *testing.B) {
			u := newUpstream(flaky)
			defer u.Close()
			tr := newTransport()
			defer tr.CloseIdleConnections()
			call := l.build(u.URL, tr, flaky)
			ctx := context.Background()
			// The same start for every client: its connection dialled and
			// the server's goroutines running, and no garbage left by the
			// benchmark that ran before.
			for range 100 {
				if code, err := call(ctx); err != nil || code != http.StatusOK {
					b.Fatal(code, err)
				}
			}
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				if code, err := call(ctx); err != nil || code != http.StatusOK {
					b.Fatal(code, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(u.conns.Load()), "conns")
			checkConns(b, u)
		})
	}
}

// BenchmarkHTTPGet is scenario 6, success path: one request per call.
func BenchmarkHTTPGet(b *testing.B) { benchmarkHTTP(b, false) }

// BenchmarkHTTPGetFlaky is scenario 6, 503-503-200 path with zero delay:
// three requests per call.
func BenchmarkHTTPGetFlaky(b *testing.B) { benchmarkHTTP(b, true) }

// trackingTransport wraps a RoundTripper to count the response bodies it
// hands out and those closed.
type trackingTransport struct {
	base           http.RoundTripper
	opened, closed atomic.Int64
}

func (t *trackingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if resp != nil {
		t.opened.Add(1)
		resp.Body = &trackedBody{ReadCloser: resp.Body, t: t}
	}
	return resp, err
}

type trackedBody struct {
	io.ReadCloser
	t      *trackingTransport
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.t.closed.Add(1)
	}
	return b.ReadCloser.Close()
}

// httpTimeout bounds every HTTP call of the correctness tests.
const httpTimeout = 10 * time.Second

func httpCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	t.Cleanup(cancel)
	return ctx
}
