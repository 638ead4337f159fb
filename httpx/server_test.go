package httpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Tests in this file use real loopback servers, with real time, outside
// synctest bubbles. Each one checks that no goroutine outlives it: the
// client's connections are closed when idle, so a connection still in use
// (a body never closed) would leave its goroutines behind.

// server is an httptest server that counts the connections it accepts.
type server struct {
	*httptest.Server
	conns atomic.Int32
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// countingTransport wraps a base and counts the response bodies it hands
// out and the closes of each.
type countingTransport struct {
	base   http.RoundTripper
	mu     sync.Mutex
	bodies []*closeCounter
}

type closeCounter struct {
	io.ReadCloser
	closes atomic.Int32
}

func (c *closeCounter) Close() error {
	c.closes.Add(1)
	return c.ReadCloser.Close()
}

func (ct *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := ct.base.RoundTrip(req)
	if resp != nil {
		cc := &closeCounter{ReadCloser: resp.Body}
		resp.Body = cc
		ct.mu.Lock()
		ct.bodies = append(ct.bodies, cc)
		ct.mu.Unlock()
	}
	return resp, err
}

// newHTTPTransport is a private http.Transport, closed when the test ends.
func newHTTPTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func leakCheck(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func TestServer503BurstReusesOneConnection(t *testing.T) {
	leakCheck(t)
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if hits.Add(1)%4 != 0 { // 503, 503, 503, 200, …
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	ct := &countingTransport{base: newHTTPTransport(t)}
	client := NewClient(WithBase(ct), WithExecutor(noWait()))
	for range 5 {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", readAll(t, resp.Body))
		require.NoError(t, resp.Body.Close())
	}
	assert.EqualValues(t, 20, hits.Load())
	assert.EqualValues(t, 1, srv.conns.Load(), "every discarded response was drained, so one connection served all 20 attempts")
	require.Len(t, ct.bodies, 20)
	for i, b := range ct.bodies {
		assert.EqualValues(t, 1, b.closes.Load(), "body %d closed exactly once", i)
	}
	client.CloseIdleConnections()
}

func TestServerLastResponseReturnedIntact(t *testing.T) {
	leakCheck(t)
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, strings.Repeat("e", int(n)*1000))
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, strings.Repeat("e", 4000), readAll(t, resp.Body))
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 1, srv.conns.Load())
	client.CloseIdleConnections()
}

func TestServerRequestBodiesReplayedByteForByte(t *testing.T) {
	payload := make([]byte, 300<<10)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)
	cases := []struct {
		name string
		body func() io.Reader
	}{
		{"bytes.Buffer", func() io.Reader { return bytes.NewBuffer(payload) }},
		{"bytes.Reader", func() io.Reader { return bytes.NewReader(payload) }},
		{"strings.Reader", func() io.Reader { return strings.NewReader(string(payload)) }},
	}
	for _, tc := range cases {
		for _, method := range []string{http.MethodPut, http.MethodPost} {
			t.Run(tc.name+" "+method, func(t *testing.T) {
				leakCheck(t)
				var mu sync.Mutex
				var got [][32]byte
				srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
					b, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					mu.Lock()
					got = append(got, sha256.Sum256(b))
					n := len(got)
					mu.Unlock()
					if n < 3 {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					w.WriteHeader(http.StatusCreated)
				})
				client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
				req, err := http.NewRequest(method, srv.URL, tc.body())
				require.NoError(t, err)
				req.Header.Set(IdempotencyKeyHeader, "order-1") // makes the POST retryable
				resp, err := client.Do(req)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, http.StatusCreated, resp.StatusCode)
				require.Len(t, got, 3)
				for i, h := range got {
					assert.Equal(t, want, h, "attempt %d sent the original bytes", i+1)
				}
				client.CloseIdleConnections()
			})
		}
	}
}

func TestServerPostExecutions(t *testing.T) {
	cases := []struct {
		name       string
		key        string
		opts       []Option
		executions int32
		status     int
	}{
		{"without key: executed once, 503 returned", "", nil, 1, 503},
		{"with key: retried", "pay-42", nil, 2, 200},
		{"generated key: retried", "", []Option{WithIdempotencyKeys()}, 2, 200},
		{"opt-in: retried", "", []Option{WithNonIdempotentRetries()}, 2, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			var executions atomic.Int32
			var mu sync.Mutex
			keys := map[string]int{}
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				mu.Lock()
				keys[r.Header.Get(IdempotencyKeyHeader)]++
				mu.Unlock()
				if executions.Add(1) == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			opts := append([]Option{WithBase(newHTTPTransport(t)), WithExecutor(noWait())}, tc.opts...)
			client := NewClient(opts...)
			req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"amount":1}`))
			require.NoError(t, err)
			if tc.key != "" {
				req.Header.Set(IdempotencyKeyHeader, tc.key)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.executions, executions.Load())
			assert.Len(t, keys, 1, "every attempt carried the same key")
			client.CloseIdleConnections()
		})
	}
}

// refusedURL returns the URL of a port on which nothing listens.
func refusedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/"
}

func TestServerPostRetriedWhenConnectionRefused(t *testing.T) {
	leakCheck(t)
	var attempts atomic.Int32
	ex := noWait(resilient.WithHooks(resilient.Hooks{OnAttempt: func(resilient.AttemptEvent) { attempts.Add(1) }}))
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(ex))
	req, err := http.NewRequest(http.MethodPost, refusedURL(t), strings.NewReader("x"))
	require.NoError(t, err)
	_, err = client.Do(req)
	require.Error(t, err)
	assert.True(t, NeverSent(err), "a dial error: %v", err)
	assert.ErrorIs(t, err, resilient.ErrExhausted)
	assert.EqualValues(t, 4, attempts.Load(), "a refused POST never left, so it is retried")
}

// resetAfter hijacks the connection, writes raw, and resets it.
func resetAfter(w http.ResponseWriter, raw string) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	_, _ = buf.WriteString(raw)
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN
	}
	_ = conn.Close()
}

func TestServerResetMidResponse(t *testing.T) {
	cases := []struct {
		name       string
		method     string
		executions int32
		wantErr    bool
	}{
		{"GET retried", http.MethodGet, 2, false},
		{"POST not retried: it reached the server", http.MethodPost, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			var executions atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if executions.Add(1) == 1 {
					resetAfter(w, "HTTP/1.1 200 OK\r\nContent-Le")
					return
				}
				_, _ = io.WriteString(w, "ok")
			})
			client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
			req, err := http.NewRequest(tc.method, srv.URL, strings.NewReader("x"))
			require.NoError(t, err)
			resp, err := client.Do(req)
			if tc.wantErr {
				require.Error(t, err)
				var rerr *resilient.Error
				require.ErrorAs(t, err, &rerr)
				assert.Equal(t, resilient.ReasonPermanent, rerr.Reason)
			} else {
				require.NoError(t, err)
				assert.Equal(t, "ok", readAll(t, resp.Body))
				require.NoError(t, resp.Body.Close())
			}
			assert.Equal(t, tc.executions, executions.Load())
			client.CloseIdleConnections()
		})
	}
}

func TestServerResetMidBodyReachesTheCaller(t *testing.T) {
	leakCheck(t)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		resetAfter(w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
	resp, err := client.Get(srv.URL)
	require.NoError(t, err, "the headers came: that response is the answer")
	_, err = io.ReadAll(resp.Body)
	assert.Error(t, err, "the cut body is reported, never passed off as complete")
	require.NoError(t, resp.Body.Close())
	client.CloseIdleConnections()
}

func TestServerAttemptTimeoutSlowHeaders(t *testing.T) {
	leakCheck(t)
	var executions atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if executions.Add(1) == 1 {
			<-r.Context().Done() // no headers until the client gives up
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()), WithAttemptTimeout(200*time.Millisecond))
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp.Body))
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 2, executions.Load())
	client.CloseIdleConnections()
}

func TestServerAttemptTimeoutSlowBody(t *testing.T) {
	leakCheck(t)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "first part")
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done() // the rest never comes
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()), WithAttemptTimeout(300*time.Millisecond))
	start := time.Now()
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the stalled body is cut by the attempt's timeout")
	assert.Equal(t, "first part", string(b))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.NoError(t, resp.Body.Close())
	client.CloseIdleConnections()
}

func TestServerBodyReadableAfterRoundTripReturns(t *testing.T) {
	leakCheck(t)
	rest := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "head ")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-rest:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "tail")
	})
	ex := resilient.MustNew(resilient.WithAttemptTimeout(10*time.Second), resilient.WithMaxElapsed(10*time.Second))
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(ex), WithAttemptTimeout(10*time.Second))
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	close(rest) // only now does the server send the rest
	assert.Equal(t, "head tail", readAll(t, resp.Body))
	require.NoError(t, resp.Body.Close())
	client.CloseIdleConnections()
}

func TestServerCertificateErrorIsPermanent(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = discardLogger() // the handshake failure is expected
	srv.StartTLS()
	defer srv.Close()
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait())) // trusts no test CA
	_, err := client.Get(srv.URL)
	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, err, &verr)
	assert.ErrorIs(t, err, resilient.ErrPermanent)
	assert.EqualValues(t, 1, conns.Load(), "not retried")
	client.CloseIdleConnections()
}

func TestServerTooManyRedirects(t *testing.T) {
	leakCheck(t)
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/again", http.StatusFound)
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
	_, err := client.Get(srv.URL)
	require.ErrorIs(t, err, ErrTooManyRedirects)
	assert.Equal(t, resilient.Fail, ClassifyError(err))
	assert.EqualValues(t, MaxRedirects, hits.Load(), "the first request and 9 redirects, as net/http's default")
	client.CloseIdleConnections()
}

func TestGetAndDoUseTheDefaultPolicy(t *testing.T) {
	leakCheck(t)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		case 3:
			_, _ = io.WriteString(w, "ok")
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	resp, err := Get(context.Background(), srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp.Body))
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 3, hits.Load())

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	resp, err = Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "404 is final")
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 4, hits.Load())

	//lint:ignore SA1012 a nil context is the input under test: an error, not a panic
	_, err = Get(nil, srv.URL)
	assert.Error(t, err)
	_, err = Get(context.Background(), "://bad")
	assert.Error(t, err)
}

func TestCloseIdleConnectionsPassesThrough(t *testing.T) {
	base := &idleCounter{}
	NewClient(WithBase(base)).CloseIdleConnections()
	(&Transport{Base: base}).CloseIdleConnections()
	assert.EqualValues(t, 2, base.n.Load())
	assert.NotPanics(t, (&Transport{Base: &fakeRT{}}).CloseIdleConnections, "a base without the method")
}

type idleCounter struct {
	fakeRT
	n atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.n.Add(1) }

// sendCounter counts the requests handed to its base.
type sendCounter struct {
	base http.RoundTripper
	n    atomic.Int32
}

func (s *sendCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	s.n.Add(1)
	return s.base.RoundTrip(req)
}

// Regression: a request net/http refuses to send (an invalid header value,
// a URL without a host, …) was sent to the base on every attempt, 4 times.
// Each is refused once, before any attempt, with ErrInvalidRequest; an
// unsupported scheme is handed to the base once, never retried.
func TestServerInvalidRequestsAreNeverRetried(t *testing.T) {
	leakCheck(t)
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	cases := []struct {
		name  string
		edit  func(*http.Request)
		sends int32 // to the base, at most
		msg   string
	}{
		{"header value with CR LF", func(r *http.Request) { r.Header.Set("X-A", "a\r\nX-Injected: 1") }, 0, `header field value for "X-A"`},
		{"header value with NUL", func(r *http.Request) { r.Header["X-A"] = []string{"a\x00"} }, 0, `header field value for "X-A"`},
		{"header value with DEL", func(r *http.Request) { r.Header["X-A"] = []string{"\x7f"} }, 0, `header field value for "X-A"`},
		{"header name with a space", func(r *http.Request) { r.Header["X A"] = []string{"v"} }, 0, `header field name "X A"`},
		{"header name with a colon", func(r *http.Request) { r.Header["X:A"] = []string{"v"} }, 0, `header field name "X:A"`},
		{"empty header name", func(r *http.Request) { r.Header[""] = []string{"v"} }, 0, `header field name ""`},
		{"non-ASCII header name", func(r *http.Request) { r.Header["X-Ä"] = []string{"v"} }, 0, `header field name "X-Ä"`},
		{"trailer value with LF", func(r *http.Request) { r.Trailer = http.Header{"X-T": {"a\nb"}} }, 0, `trailer field value for "X-T"`},
		{"invalid method", func(r *http.Request) { r.Method = "GE T" }, 0, `method "GE T"`},
		{"method with a newline", func(r *http.Request) { r.Method = "GET\n" }, 0, `method "GET\n"`},
		{"nil header", func(r *http.Request) { r.Header = nil }, 0, "nil Header"},
		{"URL without a host", func(r *http.Request) { r.URL.Host = "" }, 0, "no host in URL"},
		{"URL without a scheme", func(r *http.Request) { r.URL.Scheme = "" }, 1, ""},
		{"unsupported scheme", func(r *http.Request) { r.URL.Scheme = "gopher" }, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			base := &sendCounter{base: newHTTPTransport(t)}
			tr, err := NewTransport(WithBase(base), WithExecutor(noWait()))
			require.NoError(t, err)
			body := &trackedReqBody{Reader: strings.NewReader("x")}
			req, err := http.NewRequest(http.MethodPut, srv.URL+"/x", body)
			require.NoError(t, err)
			tc.edit(req)
			resp, err := tr.RoundTrip(req)
			assert.Nil(t, resp)
			require.Error(t, err)
			if tc.msg != "" {
				require.ErrorIs(t, err, ErrInvalidRequest)
				assert.Equal(t, "resilient/httpx: invalid request: "+tc.msg, err.Error())
				assert.Equal(t, resilient.Fail, ClassifyError(err))
			}
			assert.NotContains(t, err.Error(), "X-Injected", "a value is never quoted: it may be a secret")
			assert.LessOrEqual(t, base.n.Load(), tc.sends, "sends to the base")
			assert.Zero(t, hits.Load(), "nothing reached the server")
			assert.EqualValues(t, 1, body.closed.Load(), "the body is closed")
		})
	}
	t.Run("through a client", func(t *testing.T) {
		base := &sendCounter{base: newHTTPTransport(t)}
		client := NewClient(WithBase(base), WithExecutor(noWait()))
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer secret\n")
		_, err = client.Do(req)
		require.ErrorIs(t, err, ErrInvalidRequest)
		assert.NotContains(t, err.Error(), "secret")
		assert.Zero(t, base.n.Load())
	})
	t.Run("valid oddities pass", func(t *testing.T) {
		base := &sendCounter{base: newHTTPTransport(t)}
		tr, err := NewTransport(WithBase(base), WithExecutor(noWait(resilient.WithAttempts(1))))
		require.NoError(t, err)
		req, err := http.NewRequest("M-SEARCH", srv.URL, nil)
		require.NoError(t, err)
		req.Header["x-lower"] = []string{"tab\tand obs-text \xff"}
		req.Header["X-Empty"] = []string{""}
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		require.NoError(t, resp.Body.Close())
		assert.EqualValues(t, 1, base.n.Load())
	})
}

// stalledServer answers with code, its headers and the start of a body,
// then nothing until the client gives up; ok, when set, answers the n-th
// request (from 1) with a 200 after delay instead.
func stalledServer(t *testing.T, code int, ok func(n int32) (bool, time.Duration)) (*server, *atomic.Int32) {
	var hits atomic.Int32
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if ok != nil {
			if yes, delay := ok(n); yes {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "ok")
				return
			}
		}
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "busy")
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done() // the rest never comes
	})
	return srv, &hits
}

// Regression (issue scenarios, over loopback): a retried 503 whose body
// stalls after its headers held the call: with the default policy and no
// deadline, still blocked after 5s (a plain http.Client returns it in under
// 1ms); with WithMaxElapsed(300ms), until the caller's 3s deadline, and the
// 503 was lost; a hedged GET whose winner answered at 150ms, until 3s.
func TestServerStalledBodies(t *testing.T) {
	t.Run("default policy, no deadline", func(t *testing.T) {
		leakCheck(t)
		srv, hits := stalledServer(t, http.StatusServiceUnavailable, nil)
		client := NewClient(WithBase(newHTTPTransport(t)))
		// Bounded, so that a hang fails the test rather than the run.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := client.Do(req)
		elapsed := time.Since(start)
		require.NoError(t, err)
		// The default backoff waits at most 100+200+400ms in all.
		assert.Less(t, elapsed, 2*time.Second)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		assert.Equal(t, "busy", string(b), "what came of the body")
		assert.ErrorIs(t, err, ErrBodyTruncated, "and that the rest did not")
		require.NoError(t, resp.Body.Close())
		assert.EqualValues(t, DefaultAttempts, hits.Load())
		client.CloseIdleConnections()
	})
	t.Run("max elapsed", func(t *testing.T) {
		leakCheck(t)
		srv, hits := stalledServer(t, http.StatusServiceUnavailable, nil)
		// The second 503 comes at about 600ms, and a wait of 600ms more
		// would end past the limit: the call ends with that 503. (Margins
		// are wide: had the limit passed while an attempt ran, or during a
		// wait, that attempt's error, or none, would be the result.)
		ex := resilient.MustNew(resilient.WithMaxElapsed(time.Second), resilient.WithAttempts(resilient.Unlimited),
			resilient.WithBackoff(resilient.Constant(600*time.Millisecond)), resilient.WithJitter(resilient.NoJitter))
		client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(ex))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := client.Do(req)
		elapsed := time.Since(start)
		require.NoError(t, err, "the 503 is kept, not lost")
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Less(t, elapsed, 2*time.Second, "ends within its time limit, not at the caller's deadline")
		assert.EqualValues(t, 2, hits.Load())
		require.NoError(t, resp.Body.Close())
		client.CloseIdleConnections()
	})
	t.Run("hedged", func(t *testing.T) {
		leakCheck(t)
		// The first request wins with a 200 at 150ms; the hedge, at 100ms,
		// gets a 503 whose body stalls.
		srv, _ := stalledServer(t, http.StatusServiceUnavailable, func(n int32) (bool, time.Duration) {
			return n == 1, 150 * time.Millisecond
		})
		ex := resilient.MustNew(resilient.WithHedge(100*time.Millisecond, 2))
		client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(ex))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		start := time.Now()
		resp, err := client.Do(req)
		elapsed := time.Since(start)
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp.Body))
		require.NoError(t, resp.Body.Close())
		assert.Less(t, elapsed, time.Second, "returned with the winner")
		client.CloseIdleConnections()
	})
}

// A short error page is read whole when it is set aside, so its connection
// serves the next attempt, and the caller gets it whole after the last.
func TestServerRetryableBodiesKeptWhole(t *testing.T) {
	leakCheck(t)
	// Short enough to go out with its headers, in one write: it is there
	// when they are, however loaded the machine.
	page := strings.Repeat("e", 1<<10)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, page)
	})
	client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, page, readAll(t, resp.Body))
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 1, srv.conns.Load(), "one connection for every attempt")
	client.CloseIdleConnections()
}
