package httpx

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gate is a base that blocks every request until released, and then
// answers with body.
func gate(release <-chan struct{}, body string) *fakeRT {
	return &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
		select {
		case <-release:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		r := respond(200, body, "X-Shared", "v")
		return r, nil
	}}
}

func TestDedupSharesOneExecution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := gate(release, "payload")
		tr := newTransport(t, f, WithDedup(nil))
		const n = 10
		resps := make([]*http.Response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x?a=1"))
				if assert.NoError(t, err) {
					resps[i] = resp
				}
			})
		}
		synctest.Wait() // every caller is waiting: one in the base, the rest on it
		close(release)
		wg.Wait()
		assert.Equal(t, 1, f.calls(), "one request for ten callers")
		resps[0].Header.Set("X-Shared", "changed by caller 0")
		for i, r := range resps {
			require.NotNil(t, r, "caller %d", i)
			assert.Equal(t, "payload", readAll(t, r.Body), "caller %d reads the whole body", i)
			require.NoError(t, r.Body.Close())
			assert.EqualValues(t, len("payload"), r.ContentLength)
			if i > 0 {
				assert.Equal(t, "v", r.Header.Get("X-Shared"), "headers are each caller's own")
			}
		}
		assert.EqualValues(t, 1, f.bodies[0].closes.Load(), "the shared body is closed once")
	})
}

func TestDedupKeys(t *testing.T) {
	cases := []struct {
		name   string
		a, b   func(*http.Request)
		key    func(*http.Request) string
		method string
		calls  int
	}{
		{"identical requests merge", func(*http.Request) {}, func(*http.Request) {}, nil, http.MethodGet, 1},
		{"different Authorization never merge",
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer alice") },
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer bob") }, nil, http.MethodGet, 2},
		{"different Cookie never merge",
			func(r *http.Request) { r.Header.Set("Cookie", "s=1") },
			func(r *http.Request) { r.Header.Set("Cookie", "s=2") }, nil, http.MethodGet, 2},
		{"different Range never merge",
			func(r *http.Request) { r.Header.Set("Range", "bytes=0-9") },
			func(*http.Request) {}, nil, http.MethodGet, 2},
		{"different URL never merge",
			func(*http.Request) {}, func(r *http.Request) { r.URL.RawQuery = "page=2" }, nil, http.MethodGet, 2},
		{"tracing headers merge by default",
			func(r *http.Request) {
				r.Header.Set("X-Request-Id", "1")
				r.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
				r.Header["b3"] = []string{"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}
				r.Header.Set("X-B3-TraceId", "1")
				r.Header.Set("Baggage", "a=1")
			},
			func(r *http.Request) {
				r.Header.Set("X-Request-Id", "2")
				r.Header["traceparent"] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
				r.Header.Set("X-B3-TraceId", "2")
				r.Header.Set("Tracestate", "k=v")
			}, nil, http.MethodGet, 1},
		{"any other header never merges",
			func(r *http.Request) { r.Header.Set("User-Agent", "a") },
			func(r *http.Request) { r.Header.Set("User-Agent", "b") }, nil, http.MethodGet, 2},
		{"a header only one request has never merges",
			func(r *http.Request) { r.Header.Set("X-Debug", "1") },
			func(*http.Request) {}, nil, http.MethodGet, 2},
		{"the spelling of a name does not matter",
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer alice") },
			func(r *http.Request) { r.Header["authorization"] = []string{"Bearer alice"} }, nil, http.MethodGet, 1},
		{"narrowed key merges what it leaves out",
			func(r *http.Request) { r.Header.Set("X-Client-Time", "1") },
			func(r *http.Request) { r.Header["x-client-time"] = []string{"2"} }, DedupKeyIgnoring("X-CLIENT-TIME"), http.MethodGet, 1},
		{"narrowed key keeps the rest",
			func(r *http.Request) { r.Header.Set("X-Client-Time", "1"); r.Header.Set("Cookie", "s=1") },
			func(r *http.Request) { r.Header.Set("X-Client-Time", "2"); r.Header.Set("Cookie", "s=2") }, DedupKeyIgnoring("X-Client-Time"), http.MethodGet, 2},
		{"different user information never merge",
			func(r *http.Request) { r.URL.User = url.UserPassword("alice", "a") },
			func(r *http.Request) { r.URL.User = url.UserPassword("bob", "b") }, nil, http.MethodGet, 2},
		{"custom key",
			func(r *http.Request) { r.Header.Set("X-Tenant", "a") },
			func(r *http.Request) { r.Header.Set("X-Tenant", "b") },
			func(r *http.Request) string { return r.Header.Get("X-Tenant") }, http.MethodGet, 2},
		{"HEAD merges", func(*http.Request) {}, func(*http.Request) {}, nil, http.MethodHead, 1},
		{"POST never merges", func(*http.Request) {}, func(*http.Request) {}, nil, http.MethodPost, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				f := gate(release, "x")
				tr := newTransport(t, f, WithDedup(tc.key), WithNonIdempotentRetries())
				var wg sync.WaitGroup
				for _, edit := range []func(*http.Request){tc.a, tc.b} {
					req, err := http.NewRequestWithContext(t.Context(), tc.method, "http://api.test/items", nil)
					require.NoError(t, err)
					edit(req)
					wg.Go(func() {
						resp, err := tr.RoundTrip(req)
						if assert.NoError(t, err) {
							assert.NoError(t, resp.Body.Close())
						}
					})
				}
				synctest.Wait()
				close(release)
				wg.Wait()
				assert.Equal(t, tc.calls, f.calls())
			})
		})
	}
}

// Regression (security): the default key read a fixed list of header names
// through Header.Values, which sees canonical keys only, so bob's request
// shared alice's flight, and bob got alice's response, whenever the
// credential was under a non-canonical key or in a header not on the list.
func TestDedupNeverSharesAcrossCredentials(t *testing.T) {
	cases := []struct {
		name string
		set  func(h http.Header, who string)
	}{
		{"lower-case authorization map key", func(h http.Header, who string) { h["authorization"] = []string{"Bearer " + who} }},
		{"upper-case AUTHORIZATION map key", func(h http.Header, who string) { h["AUTHORIZATION"] = []string{"Bearer " + who} }},
		{"X-Api-Key", func(h http.Header, who string) { h.Set("X-Api-Key", who) }},
		{"x-api-key map key", func(h http.Header, who string) { h["x-api-key"] = []string{who} }},
		{"X-Auth-Token", func(h http.Header, who string) { h.Set("X-Auth-Token", who) }},
		{"tenant header", func(h http.Header, who string) { h.Set("X-Tenant-Id", who) }},
		{"cookie map key", func(h http.Header, who string) { h["cookie"] = []string{"session=" + who} }},
		{"second value of a header", func(h http.Header, who string) { h["Authorization"] = []string{"Bearer shared", who} }},
		{"one spelling each", func(h http.Header, who string) {
			if who == "alice" {
				h["Authorization"] = []string{"Bearer alice"}
			} else {
				h["authorization"] = []string{"Bearer bob"}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				// The server answers each request with the credential it
				// was sent, whatever the header's spelling.
				f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
					select {
					case <-release:
					case <-req.Context().Done():
						return nil, req.Context().Err()
					}
					var b strings.Builder
					for k, vv := range req.Header {
						b.WriteString(k + "=" + strings.Join(vv, ",") + ";")
					}
					return respond(200, b.String()), nil
				}}
				tr := newTransport(t, f, WithDedup(nil))
				got := map[string]string{}
				var mu sync.Mutex
				var wg sync.WaitGroup
				for _, who := range []string{"alice", "bob"} {
					req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://api.test/me", nil)
					require.NoError(t, err)
					tc.set(req.Header, who)
					wg.Go(func() {
						resp, err := tr.RoundTrip(req)
						if assert.NoError(t, err) {
							body := readAll(t, resp.Body)
							mu.Lock()
							got[who] = body
							mu.Unlock()
						}
					})
				}
				synctest.Wait()
				close(release)
				wg.Wait()
				assert.Equal(t, 2, f.calls(), "one request each")
				assert.Contains(t, got["alice"], "alice")
				assert.NotContains(t, got["alice"], "bob")
				assert.Contains(t, got["bob"], "bob")
				assert.NotContains(t, got["bob"], "alice", "bob never gets alice's response")
			})
		})
	}
}

func TestDedupWaiterCancellationDoesNotAffectOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := gate(release, "ok")
		tr := newTransport(t, f, WithDedup(nil))
		first, cancelFirst := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		var firstErr error
		wg.Go(func() {
			_, firstErr = tr.RoundTrip(get(t, first, "http://api.test/x")) // starts the execution
		})
		synctest.Wait()
		var others [3]string
		for i := range others {
			wg.Go(func() {
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				if assert.NoError(t, err) {
					others[i] = readAll(t, resp.Body)
				}
			})
		}
		synctest.Wait()
		cancelFirst() // the caller that started it leaves
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.ErrorIs(t, firstErr, context.Canceled)
		assert.Equal(t, [3]string{"ok", "ok", "ok"}, others)
		assert.Equal(t, 1, f.calls())
	})
}

func TestDedupAbandonedExecutionIsCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := gate(make(chan struct{}), "never")
		tr := newTransport(t, f, WithDedup(nil))
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				_, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
				assert.ErrorIs(t, err, context.Canceled)
			})
		}
		synctest.Wait()
		cancel()
		wg.Wait()
		synctest.Wait() // the shared execution ends too: no goroutine is left in the bubble
		assert.Equal(t, 1, f.calls())
	})
}

func TestDedupLongBodyIsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		long := strings.Repeat("z", DedupMaxBody+1)
		f := gate(release, long)
		tr := newTransport(t, f, WithDedup(nil))
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/big"))
				if assert.NoError(t, err) {
					b, _ := io.ReadAll(resp.Body)
					assert.Len(t, b, len(long))
					assert.NoError(t, resp.Body.Close())
				}
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.Equal(t, 3, f.calls(), "one shared attempt, then one request per caller")
		for _, b := range f.bodies {
			assert.EqualValues(t, 1, b.closes.Load())
		}
	})
}

func TestDedupHeadKeepsContentLength(t *testing.T) {
	f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
		r := respond(200, "")
		r.ContentLength = 1234
		return r, nil
	}}
	tr := newTransport(t, f, WithDedup(nil))
	req, err := http.NewRequest(http.MethodHead, "http://api.test/x", nil)
	require.NoError(t, err)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	assert.EqualValues(t, 1234, resp.ContentLength)
	assert.Same(t, req, resp.Request)
}

func TestDefaultDedupKey(t *testing.T) {
	a, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	b, _ := http.NewRequest(http.MethodGet, "http://api.test/", nil)
	assert.Equal(t, DefaultDedupKey(a), DefaultDedupKey(b))
	a.Header.Add("Cookie", "a=1")
	a.Header.Add("Cookie", "b=2")
	b.Header.Add("Cookie", "a=1b=2")
	assert.NotEqual(t, DefaultDedupKey(a), DefaultDedupKey(b), "values are delimited")
	b.Header.Del("Cookie")
	b.Header.Set("Authorization", "a=1")
	a.Header.Del("Cookie")
	a.Header.Set("Cookie", "a=1")
	assert.NotEqual(t, DefaultDedupKey(a), DefaultDedupKey(b), "headers are delimited")
	b.Host = "other.test"
	assert.NotEqual(t, DefaultDedupKey(a), DefaultDedupKey(b))
}

// TestDefaultDedupKeyIsInjective feeds the key hostile names and values:
// separators, lengths and empty strings in every place. Requests a server
// sees differently never share a key.
func TestDefaultDedupKeyIsInjective(t *testing.T) {
	headers := []http.Header{
		{},
		{"A": {""}},
		{"A": {"", ""}},
		{"A": {"1:x"}},
		{"A": {"1", "x"}},
		{"A": {"1:x", ""}},
		{"A": {"\n1:b"}},
		{"A": {""}, "B": {""}},
		{"A\n1:b": {""}},
		{"A": {"x"}, "a": {"y"}},
		{"A": {"y"}, "a": {"x"}},
		{"A": {"x", "y"}, "B": {""}},
		{"B": {"x"}},
		{"Traceparent": {"x"}, "X-Traceparent": {"x"}},
	}
	seen := map[string]int{}
	for i, h := range headers {
		req := &http.Request{Header: h}
		k := DefaultDedupKey(req)
		if j, dup := seen[k]; dup {
			t.Errorf("headers %d and %d share the key %q", j, i, k)
		}
		seen[k] = i
	}
	// One name under two spellings, values in the same order on the wire,
	// is the same request.
	a := &http.Request{Header: http.Header{"A": {"x", "y"}}}
	b := &http.Request{Header: http.Header{"A": {"x"}, "a": {"y"}}}
	assert.Equal(t, DefaultDedupKey(a), DefaultDedupKey(b))
	// A name without values is not sent.
	assert.Equal(t, DefaultDedupKey(&http.Request{Header: http.Header{}}), DefaultDedupKey(&http.Request{Header: http.Header{"B": {}}}))
	// Host overrides are delimited from the headers.
	c := &http.Request{Host: "h\n1:a", Header: http.Header{}}
	d := &http.Request{Host: "h", Header: http.Header{"A": {""}}}
	assert.NotEqual(t, DefaultDedupKey(c), DefaultDedupKey(d))
}

// A shared execution that ends with a retryable response whose body was
// cut when it was set aside hands every waiter that response, its body cut
// and saying so, rather than an error.
func TestDedupSharesACutBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
			<-release
			r := respond(503, "")
			r.Body, r.ContentLength = newStallBody("busy"), 100
			return r, nil
		}}
		tr := newTransport(t, f, WithDedup(nil), WithExecutor(noWait(resilient.WithAttempts(2))))
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, 503, resp.StatusCode)
				assert.EqualValues(t, 100, resp.ContentLength, "the length announced, not the part kept")
				b, err := io.ReadAll(resp.Body)
				assert.Equal(t, "busy", string(b))
				assert.ErrorIs(t, err, ErrBodyTruncated)
				assert.NoError(t, resp.Body.Close())
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.Equal(t, 2, f.calls(), "one shared execution")
	})
}

// FuzzDefaultDedupKey checks that two requests share a default key exactly
// when a server would see the same headers in both (names compared
// case-insensitively, values in the order sent, tracing headers left out),
// and the same Host override.
func FuzzDefaultDedupKey(f *testing.F) {
	f.Add("Authorization:a", "authorization:a", "", "")
	f.Add("Authorization:a\nauthorization:b", "Authorization:a\nAuthorization:b", "", "")
	f.Add("X-Api-Key:alice", "X-Api-Key:bob", "", "")
	f.Add("Traceparent:1", "traceparent:2", "h", "h")
	f.Add("A:1:x", "A:1\nx:", "", "")
	f.Add("A:", "", "", "")
	f.Add("", "", "h\n1:a", "h")
	f.Fuzz(func(t *testing.T, a, b, hostA, hostB string) {
		ra := &http.Request{Host: hostA, Header: fuzzHeader(a)}
		rb := &http.Request{Host: hostB, Header: fuzzHeader(b)}
		same := hostA == hostB && reflect.DeepEqual(serverView(ra.Header), serverView(rb.Header))
		if got := DefaultDedupKey(ra) == DefaultDedupKey(rb); got != same {
			t.Fatalf("headers %q and %q (hosts %q, %q): keys equal %v, server sees the same %v", a, b, hostA, hostB, got, same)
		}
	})
}

// fuzzHeader reads "name:value" lines into a header, names as written.
func fuzzHeader(s string) http.Header {
	h := http.Header{}
	if s == "" {
		return h
	}
	for _, line := range strings.Split(s, "\n") {
		name, value, _ := strings.Cut(line, ":")
		h[name] = append(h[name], value)
	}
	return h
}

// serverView is what a server reads of h: per lower-case name, the values
// in the order net/http writes them (keys sorted as set), tracing headers
// left out.
func serverView(h http.Header) map[string][]string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	v := map[string][]string{}
	for _, k := range names {
		l := strings.ToLower(k)
		if slices.Contains(dedupIgnored, l) || len(h[k]) == 0 {
			continue
		}
		v[l] = append(v[l], h[k]...)
	}
	return v
}
