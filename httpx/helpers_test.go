package httpx

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/require"
)

// countingBody is a response body that counts how often it is closed.
type countingBody struct {
	r      io.Reader
	closes atomic.Int32
}

func (b *countingBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *countingBody) Close() error {
	b.closes.Add(1)
	return nil
}

// fakeRT is an in-memory RoundTripper for synctest bubbles: attempt n
// (from 1) is answered by fn. It records every request it is given and
// every body it returns.
type fakeRT struct {
	fn func(n int, req *http.Request) (*http.Response, error)

	mu     sync.Mutex
	reqs   []*http.Request
	bodies []*countingBody
	sent   []string // request bodies, as read
}

func (f *fakeRT) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	f.mu.Unlock()
	body := ""
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		_ = req.Body.Close()
		body = string(b)
	}
	f.mu.Lock()
	f.sent = append(f.sent, body)
	f.mu.Unlock()
	resp, err := f.fn(n, req)
	if resp != nil {
		if cb, ok := resp.Body.(*countingBody); ok {
			f.mu.Lock()
			f.bodies = append(f.bodies, cb)
			f.mu.Unlock()
		}
		resp.Request = req
	}
	return resp, err
}

func (f *fakeRT) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// respond makes a response with a counting body; hdr is key, value, ….
func respond(code int, body string, hdr ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{
		StatusCode:    code,
		Status:        http.StatusText(code),
		Header:        h,
		Body:          &countingBody{r: strings.NewReader(body)},
		ContentLength: int64(len(body)),
		ProtoMajor:    1, ProtoMinor: 1,
	}
}

// statuses answers attempt n with codes[n-1] (the last code repeats), the
// body being the attempt number.
func statuses(codes ...int) func(int, *http.Request) (*http.Response, error) {
	return func(n int, _ *http.Request) (*http.Response, error) {
		c := codes[min(n, len(codes))-1]
		return respond(c, strings.Repeat("x", n)), nil
	}
}

// noWait is a policy without waits, for tests that count attempts.
func noWait(opts ...resilient.Option) *resilient.Executor {
	return resilient.MustNew(append([]resilient.Option{
		resilient.WithAttempts(4), resilient.WithBackoff(resilient.Constant(0)),
	}, opts...)...)
}

func newTransport(t *testing.T, base http.RoundTripper, opts ...Option) *Transport {
	t.Helper()
	tr, err := NewTransport(append([]Option{WithBase(base)}, opts...)...)
	require.NoError(t, err)
	return tr
}

func get(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

// trackedReqBody is a request body that records whether it was closed.
type trackedReqBody struct {
	io.Reader
	closed atomic.Int32
}

func (b *trackedReqBody) Close() error {
	b.closed.Add(1)
	return nil
}

// errReset is a connection reset, as net returns it.
var errReset error = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
