package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTransportRetriesRetryableStatusesThenReturnsSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: statuses(503, 502, 200)}
		tr := newTransport(t, f)
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "xxx", readAll(t, resp.Body))
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 3, f.calls())
		for i, b := range f.bodies {
			assert.EqualValues(t, 1, b.closes.Load(), "body of attempt %d closed exactly once", i+1)
		}
	})
}

func TestTransportReturnsLastResponseWhenAttemptsRunOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: statuses(503)}
		tr := newTransport(t, f)
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err, "plain http.Client semantics: a response is not an error")
		require.NotNil(t, resp)
		assert.Equal(t, 503, resp.StatusCode)
		require.Equal(t, DefaultAttempts, f.calls())
		assert.Equal(t, strings.Repeat("x", DefaultAttempts), readAll(t, resp.Body), "body intact")
		require.NoError(t, resp.Body.Close())
		for i, b := range f.bodies {
			// The last one too: a retryable response is kept in memory,
			// and its connection released, before the executor decides.
			assert.EqualValues(t, 1, b.closes.Load(), "body %d closed exactly once", i+1)
		}
	})
}

func TestTransportStatusClassification(t *testing.T) {
	cases := []struct {
		name  string
		code  int
		calls int
	}{
		{"400 is final", 400, 1},
		{"401 is final", 401, 1},
		{"403 is final", 403, 1},
		{"404 is final", 404, 1},
		{"409 is final", 409, 1},
		{"501 is permanent", 501, 1},
		{"505 is permanent", 505, 1},
		{"302 is returned", 302, 1},
		{"408 is retried", 408, 4},
		{"429 is retried", 429, 4},
		{"500 is retried", 500, 4},
		{"502 is retried", 502, 4},
		{"503 is retried", 503, 4},
		{"504 is retried", 504, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(tc.code)}
			tr := newTransport(t, f, WithExecutor(noWait()))
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/x"))
			require.NoError(t, err)
			assert.Equal(t, tc.code, resp.StatusCode)
			assert.Equal(t, tc.calls, f.calls())
			require.NoError(t, resp.Body.Close())
		})
	}
}

func TestTransportStatusClassifier(t *testing.T) {
	f := &fakeRT{fn: statuses(409, 409, 200)}
	tr := newTransport(t, f, WithExecutor(noWait()), WithStatusClassifier(func(r *http.Response) resilient.Outcome {
		if r.StatusCode == http.StatusConflict {
			return resilient.Retry
		}
		return resilient.Unclassified
	}))
	resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/x"))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 3, f.calls())
}

func TestTransportRetryAfter(t *testing.T) {
	// synctest's clock starts at 2000-01-01 00:00:00 UTC.
	cases := []struct {
		name  string
		value func(now time.Time) string
		want  time.Duration // wait before the second attempt
	}{
		{"seconds", func(time.Time) string { return "7" }, 7 * time.Second},
		{"http-date", func(now time.Time) string { return now.Add(9 * time.Second).UTC().Format(http.TimeFormat) }, 9 * time.Second},
		{"rfc850 date", func(now time.Time) string { return now.Add(5 * time.Second).UTC().Format(time.RFC850) }, 5 * time.Second},
		{"ansi c date", func(now time.Time) string { return now.Add(4 * time.Second).UTC().Format(time.ANSIC) }, 4 * time.Second},
		{"garbage falls back to backoff", func(time.Time) string { return "soon" }, time.Second},
		{"negative falls back to backoff", func(time.Time) string { return "-5" }, time.Second},
		{"past date falls back to backoff", func(now time.Time) string { return now.Add(-time.Hour).UTC().Format(http.TimeFormat) }, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var at []time.Time
				f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
					mu.Lock()
					at = append(at, time.Now())
					mu.Unlock()
					if n == 1 {
						return respond(429, "slow down", "Retry-After", tc.value(time.Now())), nil
					}
					return respond(200, "ok"), nil
				}}
				ex := resilient.MustNew(resilient.WithBackoff(resilient.Constant(time.Second)), resilient.WithJitter(resilient.NoJitter))
				tr := newTransport(t, f, WithExecutor(ex))
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				require.NoError(t, err)
				assert.Equal(t, 200, resp.StatusCode)
				require.Len(t, at, 2)
				assert.Equal(t, tc.want, at[1].Sub(at[0]))
			})
		})
	}
}

func TestTransportRetryAfterBeyondCapReturnsResponseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			return respond(503, "down for maintenance", "Retry-After", "3600"), nil
		}}
		tr := newTransport(t, f) // default cap: DefaultMaxRetryAfter
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "down for maintenance", readAll(t, resp.Body))
		assert.Equal(t, 1, f.calls(), "no clamped early retry")
		assert.Zero(t, time.Since(start), "no sleep")
	})
}

// Regression: an overflowing Retry-After was ignored, so the request was
// retried after the backoff; it saturates, and ends the call at once.
func TestTransportOverflowingRetryAfterEndsTheCallAtOnce(t *testing.T) {
	for _, v := range []string{"9223372037", "9999999999999", "99999999999999999999999"} {
		t.Run(v, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
					return respond(429, "go away", "Retry-After", v), nil
				}}
				var reasons []resilient.Reason
				ex := resilient.MustNew(resilient.WithMaxDelay(time.Hour),
					resilient.WithHooks(resilient.Hooks{OnDone: func(e resilient.DoneEvent) { reasons = append(reasons, e.Reason) }}))
				tr := newTransport(t, f, WithExecutor(ex))
				start := time.Now()
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				require.NoError(t, err)
				assert.Equal(t, 429, resp.StatusCode)
				assert.Equal(t, "go away", readAll(t, resp.Body))
				assert.Equal(t, 1, f.calls(), "no retry after the backoff")
				assert.Zero(t, time.Since(start), "no wait")
				assert.Equal(t, []resilient.Reason{resilient.ReasonHintTooLong}, reasons)
			})
		})
	}
}

func TestTransportRetryAfterBeyondUserCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			return respond(429, "", "Retry-After", "3"), nil
		}}
		tr := newTransport(t, f, WithExecutor(resilient.MustNew(resilient.WithMaxDelay(2*time.Second))))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, 1, f.calls())
	})
}

func TestTransportRetryAfterPastDeadlineReturnsResponseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			return respond(429, "later", "Retry-After", "10"), nil
		}}
		tr := newTransport(t, f)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, "later", readAll(t, resp.Body))
		assert.Equal(t, 1, f.calls())
		assert.Zero(t, time.Since(start))
	})
}

func TestTransportContextCancelledMidBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: statuses(503)}
		ex := resilient.MustNew(resilient.WithBackoff(resilient.Constant(time.Minute)), resilient.WithJitter(resilient.NoJitter))
		tr := newTransport(t, f, WithExecutor(ex))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(3*time.Second, cancel)
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
		assert.Nil(t, resp)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 3*time.Second, time.Since(start), "the wait ends the instant the context is cancelled")
		assert.Equal(t, 1, f.calls())
		require.Len(t, f.bodies, 1)
		assert.EqualValues(t, 1, f.bodies[0].closes.Load(), "the discarded response is closed")
	})
}

func TestTransportTransportErrors(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	dns := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "api.test", IsNotFound: true}}
	cert := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	cases := []struct {
		name   string
		method string
		key    bool
		opts   []Option
		err    error
		calls  int
	}{
		{"GET reset retried", http.MethodGet, false, nil, reset, 4},
		{"GET refused retried", http.MethodGet, false, nil, dial, 4},
		{"GET unexpected EOF retried", http.MethodGet, false, nil, io.ErrUnexpectedEOF, 4},
		{"GET certificate error permanent", http.MethodGet, false, nil, cert, 1},
		{"POST refused retried: never sent", http.MethodPost, false, nil, dial, 4},
		{"POST DNS failure retried: never sent", http.MethodPost, false, nil, dns, 4},
		{"POST reset not retried", http.MethodPost, false, nil, reset, 1},
		{"POST EOF not retried", http.MethodPost, false, nil, io.EOF, 1},
		{"POST reset retried with key", http.MethodPost, true, nil, reset, 4},
		{"PATCH reset retried with opt-in", http.MethodPatch, false, []Option{WithNonIdempotentRetries()}, reset, 4},
		{"PATCH reset retried with generated key", http.MethodPatch, false, []Option{WithIdempotencyKeys()}, reset, 4},
		{"PUT reset retried", http.MethodPut, false, nil, reset, 4},
		{"DELETE reset retried", http.MethodDelete, false, nil, reset, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) { return nil, tc.err }}
			tr := newTransport(t, f, append([]Option{WithExecutor(noWait())}, tc.opts...)...)
			req, err := http.NewRequest(tc.method, "http://api.test/x", strings.NewReader("payload"))
			require.NoError(t, err)
			if tc.key {
				req.Header.Set("Idempotency-Key", "k-1")
			}
			resp, err := tr.RoundTrip(req)
			assert.Nil(t, resp)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.err, "the last attempt's error is wrapped")
			var rerr *resilient.Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, tc.calls, rerr.Attempts)
			assert.Equal(t, tc.calls, f.calls())
			for i, s := range f.sent {
				assert.Equal(t, "payload", s, "attempt %d sent the whole body", i+1)
			}
		})
	}
}

func TestTransportNonIdempotentStatusNotRetried(t *testing.T) {
	cases := []struct {
		name  string
		key   string
		hdr   string
		opts  []Option
		calls int
	}{
		{"no key", "", "", nil, 1},
		{"Idempotency-Key", "abc", "Idempotency-Key", nil, 3},
		{"X-Idempotency-Key", "abc", "X-Idempotency-Key", nil, 3},
		{"empty key", "", "Idempotency-Key", nil, 1},
		{"opt-in", "", "", []Option{WithNonIdempotentRetries()}, 3},
		{"generated key", "", "", []Option{WithIdempotencyKeys()}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(503, 503, 201)}
			tr := newTransport(t, f, append([]Option{WithExecutor(noWait())}, tc.opts...)...)
			req, err := http.NewRequest(http.MethodPost, "http://api.test/orders", strings.NewReader(`{"n":1}`))
			require.NoError(t, err)
			if tc.hdr != "" {
				req.Header.Set(tc.hdr, tc.key)
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, tc.calls, f.calls())
			if tc.calls == 1 {
				assert.Equal(t, 503, resp.StatusCode, "the first answer is the final one")
			} else {
				assert.Equal(t, 201, resp.StatusCode)
			}
		})
	}
}

// Regression: an idempotency key set under a non-canonical name (sent on
// the wire as written) was missed by Header.Get, so the POST was not
// retried.
func TestTransportIdempotencyKeyWhateverTheCase(t *testing.T) {
	for _, name := range []string{"idempotency-key", "IDEMPOTENCY-KEY", "x-idempotency-key", "X-IDEMPOTENCY-KEY"} {
		t.Run(name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(503, 503, 201)}
			tr := newTransport(t, f, WithExecutor(noWait()), WithIdempotencyKeys())
			req, err := http.NewRequest(http.MethodPost, "http://api.test/orders", strings.NewReader(`{"n":1}`))
			require.NoError(t, err)
			req.Header[name] = []string{"order-7"}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, 201, resp.StatusCode)
			require.Equal(t, 3, f.calls(), "the key is on the wire: the POST is retried")
			for i, r := range f.reqs {
				assert.Equal(t, http.Header{name: {"order-7"}}, r.Header, "attempt %d carries the caller's key alone", i+1)
			}
		})
	}
	t.Run("an empty key under another spelling is replaced", func(t *testing.T) {
		f := &fakeRT{fn: statuses(503, 201)}
		tr := newTransport(t, f, WithExecutor(noWait()), WithIdempotencyKeys())
		req, err := http.NewRequest(http.MethodPost, "http://api.test/orders", strings.NewReader("x"))
		require.NoError(t, err)
		req.Header["idempotency-key"] = []string{""}
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 201, resp.StatusCode)
		require.Equal(t, 2, f.calls())
		key := f.reqs[0].Header[IdempotencyKeyHeader]
		require.Len(t, key, 1)
		for _, r := range f.reqs {
			assert.Equal(t, http.Header{IdempotencyKeyHeader: key}, r.Header, "one key, one spelling")
		}
		assert.Equal(t, http.Header{"idempotency-key": {""}}, req.Header, "the caller's request is untouched")
	})
}

func TestTransportGeneratedIdempotencyKeyIsStableAcrossAttempts(t *testing.T) {
	f := &fakeRT{fn: statuses(503, 503, 200)}
	tr := newTransport(t, f, WithExecutor(noWait()), WithIdempotencyKeys())
	keys := map[string]bool{}
	for range 3 {
		req, err := http.NewRequest(http.MethodPost, "http://api.test/orders", strings.NewReader("x"))
		require.NoError(t, err)
		f.mu.Lock()
		f.reqs, f.bodies, f.sent = nil, nil, nil
		f.mu.Unlock()
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Empty(t, req.Header.Get(IdempotencyKeyHeader), "the caller's request is not modified")
		require.Len(t, f.reqs, 3)
		key := f.reqs[0].Header.Get(IdempotencyKeyHeader)
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, key)
		for _, r := range f.reqs {
			assert.Equal(t, key, r.Header.Get(IdempotencyKeyHeader), "one key per logical request")
		}
		assert.False(t, keys[key], "a new key for each request")
		keys[key] = true
	}
	// A key set by the caller is kept.
	req, err := http.NewRequest(http.MethodPost, "http://api.test/orders", nil)
	require.NoError(t, err)
	req.Header.Set(IdempotencyKeyHeader, "mine")
	f.mu.Lock()
	f.reqs = nil
	f.mu.Unlock()
	_, err = tr.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, "mine", f.reqs[0].Header.Get(IdempotencyKeyHeader))
}

func TestTransportClosesRequestBodyOnEarlyRefusal(t *testing.T) {
	cases := []struct {
		name string
		tr   func(http.RoundTripper) *Transport
		ctx  func() context.Context
	}{
		{"cancelled context", func(b http.RoundTripper) *Transport { return &Transport{Base: b} }, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
		{"invalid option", func(b http.RoundTripper) *Transport {
			return NewClient(WithBase(b), WithAttemptTimeout(-1)).Transport.(*Transport)
		}, context.Background},
		{"rejecting policy", func(b http.RoundTripper) *Transport {
			return &Transport{Base: b, cfg: mustCfg(WithExecutor(resilient.MustNew(resilient.WithPolicy(refuseAll{}))))}
		}, context.Background},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(200)}
			body := &trackedReqBody{Reader: strings.NewReader("x")}
			req, err := http.NewRequestWithContext(tc.ctx(), http.MethodPost, "http://api.test/x", body)
			require.NoError(t, err)
			resp, err := tc.tr(f).RoundTrip(req)
			assert.Nil(t, resp)
			assert.Error(t, err)
			assert.Zero(t, f.calls())
			assert.EqualValues(t, 1, body.closed.Load(), "closed although never sent")
		})
	}
}

var errRefused = errors.New("refused")

type refuseAll struct{}

func (refuseAll) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, errRefused
}
func (refuseAll) Done(resilient.Permit, resilient.Report) {}

func mustCfg(opts ...Option) *config {
	c, err := newConfig(opts)
	if err != nil {
		panic(err)
	}
	return c
}

func TestTransportInvalidOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  Option
		msg  string
	}{
		{"zero attempt timeout", WithAttemptTimeout(0), "resilient: httpx.WithAttemptTimeout: d must be > 0, got 0s"},
		{"negative attempt timeout", WithAttemptTimeout(-time.Second), "resilient: httpx.WithAttemptTimeout: d must be > 0, got -1s"},
		{"nil executor", WithExecutor(nil), "resilient: httpx.WithExecutor: nil executor"},
		{"nil option", nil, "resilient: httpx.NewTransport: nil option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := NewTransport(tc.opt)
			assert.Nil(t, tr)
			require.EqualError(t, err, tc.msg)
			// NewClient reports the same error on every request.
			_, err = NewClient(tc.opt).Get("http://api.test/x")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestTransportNilResponseFromBaseIsAnError(t *testing.T) {
	f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) { return nil, nil }}
	tr := newTransport(t, f)
	var resp *http.Response
	var err error
	require.NotPanics(t, func() { resp, err = tr.RoundTrip(get(t, context.Background(), "http://api.test/x")) })
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrNilResponse)
	assert.Equal(t, 1, f.calls(), "a broken transport is not retried")
}

func TestTransportResponseAndErrorFromBase(t *testing.T) {
	var leaked *countingBody
	f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
		if n == 1 {
			r := respond(200, "ignored")
			leaked = r.Body.(*countingBody)
			return r, io.ErrUnexpectedEOF
		}
		return respond(200, "ok"), nil
	}}
	tr := newTransport(t, f, WithExecutor(noWait()))
	resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/x"))
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp.Body))
	assert.EqualValues(t, 1, leaked.closes.Load(), "the stray body is closed")
}

func TestTransportUnsupportedSchemeSentOnce(t *testing.T) {
	f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) { return nil, io.ErrUnexpectedEOF }}
	tr := newTransport(t, f, WithExecutor(noWait()))
	_, err := tr.RoundTrip(get(t, context.Background(), "ftp://api.test/x"))
	require.Error(t, err)
	assert.Equal(t, 1, f.calls())
}

func TestTransportInvalidRequest(t *testing.T) {
	tr := &Transport{Base: &fakeRT{fn: statuses(200)}}
	_, err := tr.RoundTrip(nil)
	assert.ErrorIs(t, err, ErrInvalidRequest)
	body := &trackedReqBody{Reader: strings.NewReader("x")}
	_, err = tr.RoundTrip(&http.Request{Method: http.MethodPost, Body: body})
	assert.ErrorIs(t, err, ErrInvalidRequest)
	assert.EqualValues(t, 1, body.closed.Load())
}

func TestTransportDoesNotModifyRequest(t *testing.T) {
	f := &fakeRT{fn: statuses(503, 503, 200)}
	tr := newTransport(t, f, WithExecutor(noWait()), WithIdempotencyKeys(), WithAttemptTimeout(time.Minute))
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://user:pw@api.test/x?q=1#f", strings.NewReader("body"))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.Trailer = http.Header{"X-T": nil}
	want := snapshot(req)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, want, snapshot(req))
	assert.Equal(t, ctx, req.Context())
	assert.Equal(t, 3, f.calls())
	for _, r := range f.reqs {
		assert.NotSame(t, req, r, "every attempt is a copy")
		assert.Equal(t, "v", r.Context().Value(ctxKey{}), "attempts keep the request's context values")
		assert.Equal(t, "Bearer t", r.Header.Get("Authorization"))
	}
}

type ctxKey struct{}

// requestSnapshot is everything of a request a RoundTripper must leave as
// it was (the body's content is consumed by design).
type requestSnapshot struct {
	Method, URL, Host, Proto string
	Header, Trailer          http.Header
	ContentLength            int64
	Body                     io.ReadCloser
	HasGetBody, Close        bool
	TransferEncoding         []string
}

func snapshot(r *http.Request) requestSnapshot {
	return requestSnapshot{
		Method: r.Method, URL: r.URL.String(), Host: r.Host, Proto: r.Proto,
		Header: r.Header.Clone(), Trailer: r.Trailer.Clone(),
		ContentLength: r.ContentLength, Body: r.Body, HasGetBody: r.GetBody != nil,
		Close: r.Close, TransferEncoding: append([]string(nil), r.TransferEncoding...),
	}
}

// ctxBody is a response body that serves data only while its request's
// context is alive, as net/http's bodies do, and blocks (until that
// context ends) once stall is set.
type ctxBody struct {
	ctx   context.Context
	data  io.Reader
	stall bool
}

func (b *ctxBody) Read(p []byte) (int, error) {
	if b.stall {
		<-b.ctx.Done()
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.data.Read(p)
}
func (b *ctxBody) Close() error { return nil }

func TestTransportAttemptTimeoutSlowHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				<-req.Context().Done() // headers never come
				return nil, req.Context().Err()
			}
			return respond(200, "ok"), nil
		}}
		tr := newTransport(t, f, WithExecutor(noWait()), WithAttemptTimeout(2*time.Second))
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp.Body))
		assert.Equal(t, 2, f.calls())
		assert.Equal(t, 2*time.Second, time.Since(start))
	})
}

func TestTransportAttemptTimeoutSlowBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var actx context.Context
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			actx = req.Context()
			r := respond(200, "")
			r.Body = &ctxBody{ctx: req.Context(), data: strings.NewReader("partial"), stall: true}
			return r, nil
		}}
		tr := newTransport(t, f, WithAttemptTimeout(2*time.Second))
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "the stalled read is cut")
		assert.Equal(t, 2*time.Second, time.Since(start), "by the attempt's timeout")
		assert.Error(t, actx.Err())
		require.NoError(t, resp.Body.Close())
	})
}

func TestTransportReturnedBodyOutlivesRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		opts []Option
	}{
		{"httpx attempt timeout", []Option{WithAttemptTimeout(time.Minute)}},
		{"executor attempt timeout", []Option{WithExecutor(resilient.MustNew(resilient.WithAttemptTimeout(time.Minute)))}},
		{"executor max elapsed", []Option{WithExecutor(resilient.MustNew(resilient.WithMaxElapsed(time.Minute)))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var actx context.Context
				f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
					actx = req.Context()
					r := respond(200, "")
					r.Body = &ctxBody{ctx: req.Context(), data: strings.NewReader("all of it")}
					return r, nil
				}}
				tr := newTransport(t, f, tc.opts...)
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				require.NoError(t, err)
				require.NoError(t, actx.Err(), "returning from RoundTrip does not cancel the attempt")
				time.Sleep(30 * time.Second) // fake time: the caller takes a while
				assert.Equal(t, "all of it", readAll(t, resp.Body))
				require.NoError(t, resp.Body.Close())
				synctest.Wait()
				if tc.name == "httpx attempt timeout" {
					assert.Error(t, actx.Err(), "released at EOF and close")
				}
			})
		})
	}
}

func TestTransportAttemptContextReleasedOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var actx context.Context
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			actx = req.Context()
			r := respond(200, "")
			r.Body = &ctxBody{ctx: req.Context(), data: strings.NewReader("unread")}
			return r, nil
		}}
		tr := newTransport(t, f, WithAttemptTimeout(time.Hour))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		require.NoError(t, actx.Err())
		require.NoError(t, resp.Body.Close())
		assert.ErrorIs(t, actx.Err(), context.Canceled)
	})
}

func TestTransportDiscardDrainsBounded(t *testing.T) {
	big := &countingBody{r: strings.NewReader(strings.Repeat("x", 2*DrainLimit))}
	small := &countingBody{r: strings.NewReader(strings.Repeat("y", 100))}
	unknown := &countingBody{r: strings.NewReader(strings.Repeat("z", 2*DrainLimit))}
	discard(&http.Response{Body: big, ContentLength: 2 * DrainLimit})
	discard(&http.Response{Body: small, ContentLength: 100})
	discard(&http.Response{Body: unknown, ContentLength: -1})
	discard(nil)
	discard(&http.Response{})
	for name, b := range map[string]*countingBody{"big": big, "small": small, "unknown": unknown} {
		assert.EqualValues(t, 1, b.closes.Load(), name)
	}
	assert.Equal(t, 2*DrainLimit, big.r.(*strings.Reader).Len(), "a body announced too long is not read")
	assert.Zero(t, small.r.(*strings.Reader).Len(), "a short body is drained")
	assert.Equal(t, 2*DrainLimit-(DrainLimit+1), unknown.r.(*strings.Reader).Len(), "an unknown length is read up to the limit")
}

func TestTransportConcurrentUse(t *testing.T) {
	f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
		if n%3 == 0 {
			return respond(200, "ok"), nil
		}
		return respond(503, "again"), nil
	}}
	tr := newTransport(t, f, WithExecutor(noWait(resilient.WithAttempts(resilient.Unlimited))), WithAttemptTimeout(time.Minute))
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 20 {
				resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/x"))
				if assert.NoError(t, err) {
					assert.Equal(t, 200, resp.StatusCode)
					assert.Equal(t, "ok", readAll(t, resp.Body))
					assert.NoError(t, resp.Body.Close())
				}
			}
		})
	}
	wg.Wait()
	for _, b := range f.bodies {
		assert.EqualValues(t, 1, b.closes.Load())
	}
}

// Regression: httpx.Do(nil) panicked in net/http. Nil inputs are errors.
func TestNilInputsAreErrors(t *testing.T) {
	var resp *http.Response
	var err error
	require.NotPanics(t, func() { resp, err = Do(nil) })
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrInvalidRequest)

	var nilTr *Transport
	body := &trackedReqBody{Reader: strings.NewReader("x")}
	req, err := http.NewRequest(http.MethodPost, "http://api.test/x", body)
	require.NoError(t, err)
	require.NotPanics(t, func() { resp, err = nilTr.RoundTrip(req) })
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, ErrNilTransport)
	assert.EqualValues(t, 1, body.closed.Load())
	require.NotPanics(t, func() { _, err = (&http.Client{Transport: nilTr}).Get("http://api.test/x") })
	assert.ErrorIs(t, err, ErrNilTransport)
	assert.NotPanics(t, nilTr.CloseIdleConnections)

	var ex *resilient.Executor
	for name, opts := range map[string][]Option{
		"WithExecutor(nil)":       {WithExecutor(nil)},
		"WithExecutor(typed nil)": {WithExecutor(ex)},
		"after a valid one":       {WithExecutor(noWait()), WithExecutor(ex)},
	} {
		t.Run(name, func(t *testing.T) {
			var tr *Transport
			require.NotPanics(t, func() { tr, err = NewTransport(opts...) })
			assert.Nil(t, tr)
			require.EqualError(t, err, "resilient: httpx.WithExecutor: nil executor")
			f := &fakeRT{fn: statuses(200)}
			require.NotPanics(t, func() {
				_, err = NewClient(append([]Option{WithBase(f)}, opts...)...).Get("http://api.test/x")
			})
			assert.ErrorContains(t, err, "WithExecutor: nil executor")
			assert.Zero(t, f.calls(), "nothing sent")
		})
	}
}
