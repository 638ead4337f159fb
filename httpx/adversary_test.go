package httpx

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Adversarial tests: features where they meet (per-host executors, host
// breakers, hedging, dedup, budgets, hooks) and hostile servers.

// TestAdversaryHostPoliciesOneHostAtATime: WithHostPolicies promises that
// "f is called under a lock of the Transport's, one host at a time". It is
// not: a new host's policies are built under the lock of the hosts' set
// (resilient.Keyed, in buildHost), while a host whose breaker the
// WithHostBreakers set replaced is rebuilt under config.mu (replaceBreaker).
// The two locks do not exclude each other, so f runs for two hosts at once.
// What should happen: f is never called concurrently (replaceBreaker and
// buildHost should build under one lock), or the doc should say otherwise.
func TestAdversaryHostPoliciesOneHostAtATime(t *testing.T) {
	set := resilient.MustNewBreakers(1, time.Hour, resilient.WithConsecutiveFailures(100))
	var inFlight, most atomic.Int32
	yEntered := make(chan struct{})
	xEntered := make(chan struct{})
	var xOnce, yOnce sync.Once
	f := func(host string) []resilient.Option {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		switch host {
		case "y.test":
			first := false
			yOnce.Do(func() { first = true; close(yEntered) })
			if !first {
				return nil // rebuilt: its breaker was replaced meanwhile
			}
			// Hold y's build until x's starts, or a bound: with one lock, x's
			// build waits for this one, and the bound ends the wait.
			select {
			case <-xEntered:
			case <-time.After(time.Second):
			}
		case "x.test":
			select {
			case <-yEntered:
				xOnce.Do(func() { close(xEntered) })
			default:
			}
		}
		return nil
	}
	base := rtFunc(func(req *http.Request) (*http.Response, error) {
		r := respond(200, "ok")
		r.Request = req
		return r, nil
	})
	tr := newTransport(t, base, WithExecutor(resilient.MustNew(resilient.WithAttempts(1))),
		WithHostBreakers(set), WithHostPolicies(f))
	send := func(host string) error {
		resp, err := tr.RoundTrip(get(t, context.Background(), "http://"+host+"/"))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	require.NoError(t, send("x.test"))
	require.NoError(t, send("z.test")) // the set, of one, forgets x's breaker
	done := make(chan error, 2)
	go func() { done <- send("y.test") }() // a new host: built under the hosts' lock
	select {
	case <-yEntered:
	case <-time.After(10 * time.Second):
		t.Fatal("y.test's policies were never built")
	}
	go func() { done <- send("x.test") }() // x's breaker replaced: rebuilt under config.mu
	for range 2 {
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a request did not end")
		}
	}
	assert.EqualValues(t, 1, most.Load(), "WithHostPolicies' function ran for two hosts at once")
}

// TestAdversaryRetryAfterAnyCase: a Retry-After header is read with
// Header.Get, which sees only the canonical key, while the package reads an
// idempotency key in any case (hasValue) and the dedup key folds case too.
// A RoundTripper that is not net/http's (an in-memory one, a proxy's, an
// HTTP/3 one) may hand back "retry-after" or "RETRY-AFTER": the hint is then
// ignored, and the Transport retries after its backoff (at most 100ms) a
// server that asked for 5s, or retries at all a server that asked for an
// hour (beyond the 30s cap, which should end the call at once).
// What should happen: retryAfter finds the header whatever its case, like
// hasValue does (retryafter.go, retryAfter).
func TestAdversaryRetryAfterAnyCase(t *testing.T) {
	// "Retry-After" is the control: it passes today.
	for _, name := range []string{"Retry-After", "retry-after", "RETRY-AFTER", "Retry-after"} {
		t.Run(name+"/fits", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var at []time.Time
				f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
					at = append(at, time.Now())
					if n == 1 {
						r := respond(503, "busy")
						r.Header = http.Header{name: {"5"}}
						return r, nil
					}
					return respond(200, "ok"), nil
				}}
				tr := newTransport(t, f) // the default policy
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://a.test/"))
				require.NoError(t, err)
				readAll(t, resp.Body)
				require.NoError(t, resp.Body.Close())
				require.Len(t, at, 2)
				assert.GreaterOrEqual(t, at[1].Sub(at[0]), 5*time.Second, "the server's 5s hint was honoured")
			})
		})
		t.Run(name+"/beyond the cap", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
					r := respond(503, "down for maintenance")
					r.Header = http.Header{name: {"3600"}}
					return r, nil
				}}
				tr := newTransport(t, f)
				start := time.Now()
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://a.test/"))
				require.NoError(t, err)
				readAll(t, resp.Body)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, 1, f.calls(), "an hour's hint is beyond the 30s cap: the call ends at once")
				assert.Zero(t, time.Since(start))
			})
		})
	}
}

// advServer is a loopback server that counts its requests and tracks the
// state of each of its connections.
type advServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]http.ConnState
	posts    map[string]int // executions per X-Op-Id
}

func newAdvServer(t *testing.T, h func(s *advServer, n int64, w http.ResponseWriter, r *http.Request)) *advServer {
	s := &advServer{conns: map[net.Conn]http.ConnState{}, posts: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if r.Method == http.MethodPost {
			s.mu.Lock()
			s.posts[r.Header.Get("X-Op-Id")]++
			s.mu.Unlock()
		}
		h(s, n, w, r)
	}))
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		s.mu.Lock()
		s.conns[c] = st
		s.mu.Unlock()
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// busy returns how many of the server's connections are neither idle nor
// closed: each is a response not yet released by the client.
func (s *advServer) busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.conns {
		if st != http.StateIdle && st != http.StateClosed && st != http.StateHijacked {
			n++
		}
	}
	return n
}

// bodyTracker is a base RoundTripper that counts the response bodies it
// hands out and those closed.
type bodyTracker struct {
	base           http.RoundTripper
	opened, closed atomic.Int64
}

type trackedBody struct {
	io.ReadCloser
	t    *bodyTracker
	once sync.Once
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { b.t.closed.Add(1) })
	return b.ReadCloser.Close()
}

func (bt *bodyTracker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := bt.base.RoundTrip(req)
	if resp != nil && resp.Body != nil {
		bt.opened.Add(1)
		resp.Body = &trackedBody{ReadCloser: resp.Body, t: bt}
	}
	return resp, err
}

func (bt *bodyTracker) CloseIdleConnections() {
	bt.base.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

// TestAdversaryManyHostsRecommendedHedgedDeduped: Recommended() with
// hedging, dedup of GETs and the default per-host budgets, 64 goroutines
// over 11 loopback hosts while the Transport keeps the policies of 3 (hosts
// are forgotten and come back all the time). One host always answers 503:
// its breaker opens and stays open (open duration of an hour), and once it
// is open no request to it reaches its server, though its executors are
// rebuilt each time it comes back. No POST (without a key) runs twice, every
// body the base handed out is closed, every connection is released, and
// nothing leaks (goleak in TestMain).
//
// Mutations that fail it: the host's executors built without the set's
// breaker (host.go, executors: no WithBreaker) never opens it; the shared
// execution's body not closed (dedup.go: `defer resp.Body.Close()` removed)
// leaves bodies open. (POSTs put on the hedging executor, transport.go
// `ex = once` removed, are still sent once: attempt's guard refuses the
// hedge.)
func TestAdversaryManyHostsRecommendedHedgedDeduped(t *testing.T) {
	const goroutines, perG, good = 64, 12, 10
	handler := func(s *advServer, n int64, w http.ResponseWriter, r *http.Request) {
		if n%7 == 0 {
			time.Sleep(30 * time.Millisecond) // slow: a hedge starts
		}
		if n%5 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "busy")
			return
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}
	var servers []*advServer
	for range good {
		servers = append(servers, newAdvServer(t, handler))
	}
	bad := newAdvServer(t, func(_ *advServer, _ int64, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, strings.Repeat("down ", 100))
	})
	all := append(servers[:good:good], bad)

	bt := &bodyTracker{base: &http.Transport{MaxIdleConnsPerHost: 8}}
	tr := newTransport(t, bt,
		Recommended(resilient.WithOpenDuration(time.Hour), resilient.WithMinCalls(4)),
		WithMaxHosts(3),
		WithDedup(nil),
		WithExecutorOptions(resilient.WithHedge(10*time.Millisecond, 2), resilient.WithBackoff(resilient.Constant(time.Millisecond))),
	)
	badHost := strings.TrimPrefix(bad.URL, "http://")

	var ops atomic.Int64
	call := func(s *advServer, post bool) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var req *http.Request
		if post {
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/order", strings.NewReader("item"))
			req.Header.Set("X-Op-Id", strconv.FormatInt(ops.Add(1), 10))
		} else {
			req = get(t, ctx, s.URL+"/item")
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	storm := func(pick func(g, i int) (*advServer, bool), check func(s *advServer, code int, err error)) {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range perG {
					s, post := pick(g, i)
					code, err := call(s, post)
					check(s, code, err)
				}
			})
		}
		waitGroup(t, &wg, 60*time.Second)
	}

	// Phase 1: every host, the failing one among them, GETs and POSTs.
	storm(func(g, i int) (*advServer, bool) { return all[(g+i)%len(all)], (g+i)%4 == 0 },
		func(s *advServer, code int, err error) {
			if s != bad {
				assert.NoError(t, err)
				assert.Contains(t, []int{200, 503}, code)
			}
		})
	require.Equal(t, resilient.StateOpen, tr.cfg.breakers.Get(badHost).State(), "the failing host's breaker opened")
	for _, s := range servers {
		assert.NotEqual(t, resilient.StateOpen, tr.cfg.breakers.Get(strings.TrimPrefix(s.URL, "http://")).State())
	}

	// Phase 2: the open host among the others; it is forgotten by the
	// Transport and comes back again and again.
	before := bad.requests.Load()
	var refused atomic.Int64
	storm(func(g, i int) (*advServer, bool) { return all[(g*3+i)%len(all)], i%3 == 0 },
		func(s *advServer, code int, err error) {
			if s == bad {
				if assert.ErrorIs(t, err, resilient.ErrOpen) {
					refused.Add(1)
				}
				return
			}
			assert.NoError(t, err)
		})
	assert.Equal(t, before, bad.requests.Load(), "no request to the open host reached it")
	assert.Positive(t, refused.Load())

	for _, s := range all {
		s.mu.Lock()
		for id, n := range s.posts {
			assert.Equal(t, 1, n, "POST %s ran %d times", id, n)
		}
		s.mu.Unlock()
	}
	assert.Equal(t, bt.opened.Load(), bt.closed.Load(), "every response body the base handed out was closed")
	tr.CloseIdleConnections()
	for _, s := range all {
		assert.Eventually(t, func() bool { return s.busy() == 0 }, 5*time.Second, 5*time.Millisecond, "a connection is still busy")
	}
}

// waitGroup waits for wg, failing the test after d.
func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("goroutines did not end within %v", d)
	}
}
