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

// stalledBody is a response body that gives head, then blocks until it is
// closed.
type stalledBody struct {
	head   *strings.Reader
	closed chan struct{}
	once   sync.Once
	closes atomic.Int32
}

func newStalledBody(head string) *stalledBody {
	return &stalledBody{head: strings.NewReader(head), closed: make(chan struct{})}
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if b.head.Len() > 0 {
		return b.head.Read(p)
	}
	<-b.closed
	return 0, net.ErrClosed
}

func (b *stalledBody) Close() error {
	b.closes.Add(1)
	b.once.Do(func() { close(b.closed) })
	return nil
}

// TestAdversaryThrottledHintsHooksAndDeadline: the default policy with
// hooks only (NewClient(WithExecutorOptions(WithHooks))) against a server
// that throttles with a stalled body. A 429 whose Retry-After (2s) fits the
// caller's deadline (10s) is waited for, its stalled body cut within
// DrainTimeout and closed, and the hooks see attempt 1 as Retry with the
// hint as delay and source; a Retry-After (20s) beyond the deadline (10s)
// but within the 30s cap ends the call at once with the 429, one attempt,
// its kept body readable.
// Mutations that fail it: WithExecutorOptions replacing the default policy
// (a 1 minute cap and 3 attempts); drain without its timer (the bubble
// deadlocks on the stalled body); retryAfter returning 0 (Source backoff).
func TestAdversaryThrottledHintsHooksAndDeadline(t *testing.T) {
	type seen struct {
		attempts []resilient.AttemptEvent
		done     []resilient.DoneEvent
	}
	run := func(t *testing.T, hint string) (*http.Response, *fakeRT, *stalledBody, *seen, time.Duration) {
		var s seen
		var mu sync.Mutex
		hooks := resilient.WithHooks(resilient.Hooks{
			OnAttempt: func(e resilient.AttemptEvent) { mu.Lock(); s.attempts = append(s.attempts, e); mu.Unlock() },
			OnDone:    func(e resilient.DoneEvent) { mu.Lock(); s.done = append(s.done, e); mu.Unlock() },
		})
		stalled := newStalledBody("slow down")
		f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
			if n == 1 {
				return &http.Response{StatusCode: 429, Status: "429 Too Many Requests", ProtoMajor: 1, ProtoMinor: 1,
					Header: http.Header{"Retry-After": {hint}}, Body: stalled, ContentLength: -1}, nil
			}
			return respond(200, "ok"), nil
		}}
		client := NewClient(WithBase(f), WithExecutorOptions(hooks))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		start := time.Now()
		resp, err := client.Do(get(t, ctx, "http://api.test/x"))
		require.NoError(t, err)
		return resp, f, stalled, &s, time.Since(start)
	}
	t.Run("hint fits the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			resp, f, stalled, s, took := run(t, "2")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "ok", readAll(t, resp.Body))
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 2, f.calls())
			assert.EqualValues(t, 1, stalled.closes.Load(), "the stalled body was closed once")
			assert.GreaterOrEqual(t, took, 2*time.Second)
			assert.Less(t, took, 2*time.Second+2*time.Second/5+10*time.Millisecond, "the hint, jittered up by a fifth at most")
			require.Len(t, s.attempts, 2)
			a := s.attempts[0]
			assert.Equal(t, resilient.Retry, a.Outcome)
			assert.Equal(t, 2*time.Second, a.Hint)
			assert.Equal(t, resilient.FromHint, a.Source)
			assert.GreaterOrEqual(t, a.Delay, 2*time.Second)
			var se *StatusError
			assert.ErrorAs(t, a.Err, &se)
			assert.Equal(t, resilient.Success, s.attempts[1].Outcome)
			require.Len(t, s.done, 1)
			assert.Equal(t, resilient.ReasonSuccess, s.done[0].Reason)
			assert.Equal(t, 2, s.done[0].Attempts)
		})
	})
	t.Run("hint beyond the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			resp, f, stalled, s, took := run(t, "20")
			assert.Equal(t, 429, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			assert.Equal(t, "slow down", string(body), "the part that came is kept")
			assert.ErrorIs(t, err, ErrBodyTruncated, "and says it was cut")
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 1, f.calls())
			assert.EqualValues(t, 1, stalled.closes.Load())
			assert.LessOrEqual(t, took, DrainTimeout, "no wait: the hint does not fit the deadline")
			require.Len(t, s.done, 1)
			assert.Equal(t, 1, s.done[0].Attempts)
			assert.Contains(t, []resilient.Reason{resilient.ReasonDeadline, resilient.ReasonHintTooLong}, s.done[0].Reason)
			require.Len(t, s.attempts, 1)
			assert.Equal(t, 20*time.Second, s.attempts[0].Hint)
		})
	})
}

// TestAdversaryLateReplyAfterContextEnded: a hostile base that ignores the
// request's context and answers 2s after the caller's 1s deadline. The
// caller gets either that late response (which it then closes) or an error
// with the late body closed by the Transport: never a body left open, and
// no second attempt after the caller's end.
func TestAdversaryLateReplyAfterContextEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
			time.Sleep(2 * time.Second) // the reply comes late, whatever the context says
			return respond(200, "late"), nil
		}}
		tr := newTransport(t, f, WithExecutorOptions(resilient.WithHedge(100*time.Millisecond, 2)))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		resp, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
		if err == nil {
			_ = resp.Body.Close()
		} else {
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}
		synctest.Wait() // every attempt's goroutine is done
		f.mu.Lock()
		defer f.mu.Unlock()
		assert.Len(t, f.bodies, 2, "the first attempt and one hedge, nothing after the deadline")
		for i, b := range f.bodies {
			assert.EqualValues(t, 1, b.closes.Load(), "late body %d closed once", i)
		}
	})
}

// resetBody gives head, then a connection reset.
type resetBody struct {
	head   *strings.Reader
	closes atomic.Int32
}

func (b *resetBody) Read(p []byte) (int, error) {
	if b.head.Len() > 0 {
		return b.head.Read(p)
	}
	return 0, errReset
}

func (b *resetBody) Close() error { b.closes.Add(1); return nil }

// TestAdversaryDedupBodyErrorIsAResponse: a 200 whose body fails mid-read
// (a reset). Without dedup the caller gets the response, reads what came
// and then the error, as with a plain http.Client; RoundTrip's doc says it
// returns an error "only when no response came", and then a
// *resilient.Error. With WithDedup the same request gets no response at
// all: RoundTrip returns the bare read error (not a *resilient.Error),
// because the shared execution (dedup.go, roundTripShared: `case err !=
// nil: return nil, err`) turns a read error into the call's error. What
// should happen: the response is shared with the bytes that came and ends
// with the read error (shared.end already carries such an end for
// ErrBodyTruncated), so dedup changes nothing the caller sees.
func TestAdversaryDedupBodyErrorIsAResponse(t *testing.T) {
	for _, dedup := range []bool{false, true} {
		t.Run("dedup="+strconv.FormatBool(dedup), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				body := &resetBody{head: strings.NewReader("partial")}
				f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{},
						Body: body, ContentLength: 100, ProtoMajor: 1, ProtoMinor: 1}, nil
				}}
				opts := []Option{}
				if dedup {
					opts = append(opts, WithDedup(nil))
				}
				tr := newTransport(t, f, opts...)
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				require.NoError(t, err, "a response came")
				b, err := io.ReadAll(resp.Body)
				assert.Equal(t, "partial", string(b))
				assert.Error(t, err)
				require.NoError(t, resp.Body.Close())
				assert.EqualValues(t, 1, body.closes.Load())
				assert.Equal(t, 1, f.calls())
			})
		})
	}
}

// TestAdversaryDedupCredentialsUnderHedging: 64 goroutines, four users,
// one URL, over loopback with Recommended, hedging and dedup: the
// credential is spelt in each case a client might use (Authorization,
// authorization, AUTHORIZATION, Cookie, cookie), and the server answers
// slowly enough that requests pile up on shared executions and hedges.
// Each caller gets the answer to its own credential, every body is closed
// and every connection released.
// Mutation that fails it: the key ignoring the credential
// (WithDedup(DedupKeyIgnoring("authorization", "cookie"))).
func TestAdversaryDedupCredentialsUnderHedging(t *testing.T) {
	srv := newAdvServer(t, func(_ *advServer, n int64, w http.ResponseWriter, r *http.Request) {
		if n%3 == 0 {
			time.Sleep(20 * time.Millisecond) // slow: waiters pile up, hedges start
		}
		_, _ = io.WriteString(w, "auth="+r.Header.Get("Authorization")+" cookie="+r.Header.Get("Cookie"))
	})
	bt := &bodyTracker{base: &http.Transport{MaxIdleConnsPerHost: 16}}
	tr := newTransport(t, bt, Recommended(), WithDedup(nil),
		WithExecutorOptions(resilient.WithHedge(5*time.Millisecond, 2)))
	users := []string{"alice", "bob", "carol", "dave"}
	spell := []func(h http.Header, who string){
		func(h http.Header, who string) { h.Set("Authorization", "Bearer "+who) },
		func(h http.Header, who string) { h["authorization"] = []string{"Bearer " + who} },
		func(h http.Header, who string) { h["AUTHORIZATION"] = []string{"Bearer " + who} },
		func(h http.Header, who string) { h.Set("Cookie", "session="+who) },
		func(h http.Header, who string) { h["cookie"] = []string{"session=" + who} },
	}
	var calls atomic.Int64
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 10 {
				who := users[(g+i)%len(users)]
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				req := get(t, ctx, srv.URL+"/me")
				spell[(g*7+i)%len(spell)](req.Header, who)
				calls.Add(1)
				resp, err := tr.RoundTrip(req)
				if assert.NoError(t, err) {
					b, err := io.ReadAll(resp.Body)
					assert.NoError(t, err)
					_ = resp.Body.Close()
					body := string(b)
					assert.Contains(t, body, who)
					for _, other := range users {
						if other != who {
							assert.NotContains(t, body, other, "%s got %s's response", who, other)
						}
					}
				}
				cancel()
			}
		})
	}
	waitGroup(t, &wg, 60*time.Second)
	assert.Less(t, srv.requests.Load(), calls.Load()+calls.Load()/2, "hedges are bounded")
	assert.Equal(t, bt.opened.Load(), bt.closed.Load(), "every body closed")
	tr.CloseIdleConnections()
	assert.Eventually(t, func() bool { return srv.busy() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// TestAdversaryDedupKeepsTheDeadline: a 429 whose Retry-After (20s) is
// within the 30s cap but beyond the caller's deadline (10s). Without dedup
// the call ends at once with the 429 (the executor never sleeps into a
// wait the next attempt could not start after: DESIGN 8). With WithDedup
// the shared execution runs on a context without the caller's deadline
// (resilient.Group detaches it: dedup.go, roundTripShared, through
// d.group.Do), so it plans the 20s wait; the caller sits 10s until its
// deadline and gets context.DeadlineExceeded and no response. Turning
// dedup on changes what the caller gets. What should happen: the shared
// execution keeps the deadline of the caller that started it (or the
// latest deadline among its waiters), so the 429 comes back at once.
func TestAdversaryDedupKeepsTheDeadline(t *testing.T) {
	for _, dedup := range []bool{false, true} {
		t.Run("dedup="+strconv.FormatBool(dedup), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
					if n == 1 {
						return respond(429, "slow down", "Retry-After", "20"), nil
					}
					return respond(200, "ok"), nil
				}}
				var opts []Option
				if dedup {
					opts = append(opts, WithDedup(nil))
				}
				tr := newTransport(t, f, opts...)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				start := time.Now()
				resp, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
				require.NoError(t, err, "the 429 that came, at once")
				assert.Equal(t, 429, resp.StatusCode)
				assert.Equal(t, "slow down", readAll(t, resp.Body))
				require.NoError(t, resp.Body.Close())
				assert.Zero(t, time.Since(start))
				assert.Equal(t, 1, f.calls())
			})
		})
	}
}

// TestAdversaryHooksKeepTheHostBudget: NewClient with hooks only keeps
// the default per-host adaptive budget: against a host that always answers
// 503, 50 calls make far fewer than the 200 attempts four each would, the
// calls the budget stops end as rejected (hooks' OnDone), every attempt
// the hooks see is a Retry, every wait comes from the backoff (no hint),
// and another host's budget is untouched by the first one's outage.
// WithoutHostBudget, the control, makes all 200 attempts: the assertion
// fails when the budget is lost.
func TestAdversaryHooksKeepTheHostBudget(t *testing.T) {
	run := func(t *testing.T, extra ...Option) (attempts int, outcomes map[resilient.Outcome]int, reasons map[resilient.Reason]int, sources map[resilient.DelaySource]int, otherOK int) {
		outcomes, reasons, sources = map[resilient.Outcome]int{}, map[resilient.Reason]int{}, map[resilient.DelaySource]int{}
		var mu sync.Mutex
		hooks := resilient.WithHooks(resilient.Hooks{
			OnAttempt: func(e resilient.AttemptEvent) { mu.Lock(); outcomes[e.Outcome]++; mu.Unlock() },
			OnRetry:   func(e resilient.RetryEvent) { mu.Lock(); sources[e.Source]++; mu.Unlock() },
			OnDone:    func(e resilient.DoneEvent) { mu.Lock(); reasons[e.Reason]++; mu.Unlock() },
		})
		f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
			if req.URL.Host == "down.test" {
				return respond(503, "down"), nil
			}
			return respond(200, "ok"), nil
		}}
		client := NewClient(append([]Option{WithBase(f), WithExecutorOptions(hooks)}, extra...)...)
		for range 50 {
			resp, err := client.Do(get(t, t.Context(), "http://down.test/"))
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			readAll(t, resp.Body)
			require.NoError(t, resp.Body.Close())
		}
		attempts = f.calls()
		resp, err := client.Do(get(t, t.Context(), "http://up.test/"))
		require.NoError(t, err)
		readAll(t, resp.Body)
		require.NoError(t, resp.Body.Close())
		if resp.StatusCode == 200 {
			otherOK = 1
		}
		return attempts, outcomes, reasons, sources, otherOK
	}
	t.Run("hooks keep the budget", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			attempts, outcomes, reasons, sources, otherOK := run(t)
			t.Logf("attempts %d, outcomes %v, reasons %v, sources %v", attempts, outcomes, reasons, sources)
			assert.Less(t, attempts, 120, "the host's budget stopped most retries")
			assert.GreaterOrEqual(t, attempts, 50)
			assert.Equal(t, attempts, outcomes[resilient.Retry], "each 503 attempt seen as Retry")
			assert.Positive(t, reasons[resilient.ReasonRejected], "calls the budget stopped end as rejected")
			assert.Zero(t, sources[resilient.FromHint])
			assert.Equal(t, 1, otherOK)
		})
	})
	t.Run("control: without the budget", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			attempts, _, reasons, _, _ := run(t, WithoutHostBudget())
			assert.Equal(t, 200, attempts)
			assert.Equal(t, 50, reasons[resilient.ReasonExhausted])
		})
	})
}

// TestAdversaryBreakerSwapHammer: a breakers set of 2 and a Transport
// that keeps 2 hosts, 6 hosts in turn under 64 goroutines with hedging:
// the set forgets breakers and the Transport forgets hosts all the time,
// so host executors are rebuilt and swapped (replaceBreaker) concurrently
// with the requests that use them (run under -race). One host's breaker
// is forced open: the set keeps it over the others, so through every
// swap and rebuild no request to that host is sent, each is refused with
// ErrOpen, and every other request gets its answer.
// Mutation that fails it: the set not keeping open breakers (breakers.go,
// keep returning false): the open host's breaker is forgotten, rebuilt
// closed, and requests reach it.
func TestAdversaryBreakerSwapHammer(t *testing.T) {
	set := resilient.MustNewBreakers(2, time.Hour, resilient.WithConsecutiveFailures(1000))
	set.Get("h0.test").ForceOpen()
	var perHost [6]atomic.Int64
	base := rtFunc(func(req *http.Request) (*http.Response, error) {
		i := int(req.URL.Host[1] - '0')
		perHost[i].Add(1)
		r := respond(200, req.URL.Host)
		r.Request = req
		return r, nil
	})
	tr := newTransport(t, base, WithHostBreakers(set), WithMaxHosts(2),
		WithExecutorOptions(resilient.WithHedge(time.Millisecond, 2), resilient.WithBackoff(resilient.Constant(0))))
	var wg sync.WaitGroup
	var refused atomic.Int64
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				host := "h" + strconv.Itoa((g+i)%6) + ".test"
				resp, err := tr.RoundTrip(get(t, context.Background(), "http://"+host+"/"))
				if host == "h0.test" {
					if assert.ErrorIs(t, err, resilient.ErrOpen) {
						refused.Add(1)
					}
					continue
				}
				if assert.NoError(t, err) {
					assert.Equal(t, host, readAll(t, resp.Body))
					_ = resp.Body.Close()
				}
			}
		})
	}
	waitGroup(t, &wg, 60*time.Second)
	assert.Zero(t, perHost[0].Load(), "no request reached the open host")
	assert.Positive(t, refused.Load())
	assert.LessOrEqual(t, set.Len(), 2)
}

// TestDedupJoinerWithLaterDeadlineGoesOnItsOwn: a shared execution runs
// under the deadline of the request that started it. A request that joined
// it with a later deadline, and is still waiting when that first deadline
// ends the execution, is not cut short by another caller's deadline: it
// sends its own request and gets the answer. The first request gets its
// deadline's error, and each upstream request is accounted for.
func TestDedupJoinerWithLaterDeadlineGoesOnItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
			select { // a slow upstream: 2s per answer
			case <-time.After(2 * time.Second):
				return respond(200, "ok"), nil
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
		}}
		tr := newTransport(t, f, WithDedup(nil))
		short, cancelShort := context.WithTimeout(t.Context(), time.Second)
		defer cancelShort()
		long, cancelLong := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancelLong()

		type result struct {
			resp *http.Response
			err  error
			at   time.Duration
		}
		start := time.Now()
		first, joiner := make(chan result, 1), make(chan result, 1)
		go func() {
			resp, err := tr.RoundTrip(get(t, short, "http://api.test/x"))
			first <- result{resp, err, time.Since(start)}
		}()
		synctest.Wait() // the first request is in flight
		go func() {
			resp, err := tr.RoundTrip(get(t, long, "http://api.test/x"))
			joiner <- result{resp, err, time.Since(start)}
		}()

		r := <-first
		require.Error(t, r.err)
		assert.ErrorIs(t, r.err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, r.at, "the first request ends at its own deadline")

		r = <-joiner
		require.NoError(t, r.err, "the joiner had 9s left: not cut short by the first deadline")
		assert.Equal(t, 200, r.resp.StatusCode)
		assert.Equal(t, "ok", readAll(t, r.resp.Body))
		require.NoError(t, r.resp.Body.Close())
		assert.Equal(t, 3*time.Second, r.at, "its own request, sent when the shared one was cut")
		assert.Equal(t, 2, f.calls(), "the shared request, cut, and the joiner's own")
	})
}
