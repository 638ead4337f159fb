package httpx_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/chaos"
	"github.com/resilient-go/resilient/httpx"
)

// These tests run the chaos lab's scenarios (cmd/resilient-demo) in memory
// and on fake time, so that the figures are exact and do not depend on the
// machine: the same load of logical requests goes through each client,
// each against its own upstream with the same fault schedule, and the
// targets of httpx's defaults are checked.

// memory carries requests to an upstream's handler in memory, as loopback
// would: refused connections during a refusing outage, a reset before the
// headers or in the middle of the body.
type memory struct{ up *chaos.Upstream }

func (m memory) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if _, p := m.up.Phase(); p.Kind == chaos.Outage && m.up.Config().Outage == chaos.Refuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	aborted := func() (aborted bool) {
		defer func() {
			if r := recover(); r != nil {
				if r != http.ErrAbortHandler {
					panic(r)
				}
				aborted = true
			}
		}()
		m.up.ServeHTTP(rec, sreq)
		return false
	}()
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	if aborted {
		if !rec.Flushed {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(rec.Body.Bytes()), errReader{io.ErrUnexpectedEOF}))
	}
	return resp, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// wire records when each request on the wire was sent.
type wire struct {
	base  http.RoundTripper
	start time.Time
	mu    sync.Mutex
	sent  []time.Duration
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	at := time.Since(w.start)
	w.mu.Lock()
	w.sent = append(w.sent, at)
	w.mu.Unlock()
	return w.base.RoundTrip(req)
}

// load is the demo's: callers share rate logical requests a second, each
// with a deadline of timeout; posts of them are POSTs with an
// Idempotency-Key, unkeyed POSTs without one, the rest GETs.
type load struct {
	callers        int
	rate           float64
	timeout        time.Duration
	posts, unkeyed float64
	seed           uint64
}

// demoLoad is cmd/resilient-demo's default load.
var demoLoad = load{callers: 10, rate: 100, timeout: 2 * time.Second, posts: 0.38, unkeyed: 0.02, seed: 1}

// logical is one logical request, as its caller saw it.
type logical struct {
	at, took time.Duration
	safe     bool // a GET or a keyed POST: safe to retry
	ok       bool
}

type doer func(*http.Request) (*http.Response, error)

// phaseFigures are a client's figures for one phase: logical requests
// counted in the phase they started in, requests on the wire in the phase
// they were sent in.
type phaseFigures struct {
	requests, ok, safe, safeOK, upstream int
}

func (p phaseFigures) success() float64     { return float64(p.ok) / float64(p.requests) }
func (p phaseFigures) safeSuccess() float64 { return float64(p.safeOK) / float64(p.safe) }

// figures are what one client did in one scenario.
type figures struct {
	name   string
	phases map[chaos.Kind]phaseFigures
	server chaos.PhaseStats // the upstream's totals
	// outage: requests on the wire per logical request during the
	// outage; afterOpen, the same from the first opening of a breaker in
	// it (-1 if none opened); recovery, from the end of the outage to
	// the first success a caller got.
	outage, afterOpen float64
	openedAt          time.Duration
	recovery          time.Duration
}

// client builds a doer over base; opened is to be called when a breaker
// of the client opens.
type client struct {
	name  string
	build func(base http.RoundTripper, opened func()) doer
}

func plainClient() client {
	return client{"plain", func(base http.RoundTripper, _ func()) doer { return (&http.Client{Transport: base}).Do }}
}

// naiveClient is the demo's hand-written loop: 4 attempts 100ms apart, a
// 1s client timeout, any method, any error or 429/5xx, no Retry-After.
func naiveClient() client {
	return client{"naive", func(base http.RoundTripper, _ func()) doer {
		c := &http.Client{Transport: base, Timeout: time.Second}
		return func(req *http.Request) (*http.Response, error) {
			for i := 1; ; i++ {
				r := req
				if i > 1 && req.GetBody != nil {
					body, err := req.GetBody()
					if err != nil {
						return nil, err
					}
					r = req.Clone(req.Context())
					r.Body = body
				}
				resp, err := c.Do(r)
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					resp.Body = io.NopCloser(bytes.NewReader(b))
					if err == nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
						return resp, nil
					}
				}
				if i == 4 || req.Context().Err() != nil {
					if err != nil {
						return nil, err
					}
					return resp, nil
				}
				t := time.NewTimer(100 * time.Millisecond)
				select {
				case <-t.C:
				case <-req.Context().Done():
					t.Stop()
					return nil, req.Context().Err()
				}
			}
		}
	}}
}

func httpxClient() client {
	return client{"httpx", func(base http.RoundTripper, _ func()) doer {
		return httpx.NewClient(httpx.WithBase(base)).Do
	}}
}

func recommendedClient() client {
	return client{"recommended", func(base http.RoundTripper, opened func()) doer {
		return httpx.NewClient(httpx.WithBase(base), httpx.Recommended(resilient.WithStateListener(func(t resilient.Transition) {
			if t.To == resilient.StateOpen && t.From != t.To {
				opened()
			}
		}))).Do
	}}
}

// runScenario runs ld through c against an upstream built from cfg, in a
// synctest bubble, and returns the figures.
func runScenario(t *testing.T, cfg chaos.Config, ld load, c client) figures {
	t.Helper()
	var f figures
	synctest.Test(t, func(t *testing.T) {
		up, err := chaos.New(cfg)
		require.NoError(t, err)
		start := up.Started()
		w := &wire{base: memory{up}, start: start}
		var mu sync.Mutex
		var opens []time.Duration
		do := c.build(w, func() {
			mu.Lock()
			opens = append(opens, time.Since(start))
			mu.Unlock()
		})

		var calls []logical
		interval := time.Duration(float64(ld.callers) * float64(time.Second) / ld.rate)
		end := cfg.Timeline.Total()
		var wg sync.WaitGroup
		for cl := range ld.callers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(ld.seed, uint64(cl)))
				offset := interval * time.Duration(cl) / time.Duration(ld.callers)
				for k := 0; ; k++ {
					next := offset + time.Duration(k)*interval
					if next >= end {
						return
					}
					time.Sleep(time.Until(start.Add(next)))
					u := rng.Float64()
					method, keyed := http.MethodGet, false
					switch {
					case u < ld.posts:
						method, keyed = http.MethodPost, true
					case u < ld.posts+ld.unkeyed:
						method = http.MethodPost
					}
					id := fmt.Sprintf("c%d-%d", cl, k+1)
					wg.Go(func() {
						l := send(do, ld.timeout, id, method, keyed)
						l.at = next
						mu.Lock()
						calls = append(calls, l)
						mu.Unlock()
					})
				}
			})
		}
		wg.Wait()

		tl := cfg.Timeline
		f = figures{name: c.name, phases: map[chaos.Kind]phaseFigures{}, afterOpen: -1, recovery: -1}
		out := -1
		for i, p := range tl {
			if p.Kind == chaos.Outage {
				out = i
			}
		}
		require.GreaterOrEqual(t, out, 0, "the scenario has an outage")
		from, to := tl.Start(out), tl.Start(out)+tl[out].Duration
		var opened time.Duration = -1
		for _, at := range opens {
			if at >= from && at < to {
				opened = at
				break
			}
		}
		var outReq, outUp, openReq, openUp int
		for _, l := range calls {
			p := f.phases[tl[tl.Index(l.at)].Kind]
			p.requests++
			if l.ok {
				p.ok++
			}
			if l.safe {
				p.safe++
				if l.ok {
					p.safeOK++
				}
			}
			f.phases[tl[tl.Index(l.at)].Kind] = p
			if l.at >= from && l.at < to {
				outReq++
			}
			if opened >= 0 && l.at >= opened && l.at < to {
				openReq++
			}
			if e := l.at + l.took; l.ok && e >= to && (f.recovery < 0 || e-to < f.recovery) {
				f.recovery = e - to
			}
		}
		for _, at := range w.sent {
			p := f.phases[tl[tl.Index(at)].Kind]
			p.upstream++
			f.phases[tl[tl.Index(at)].Kind] = p
			if at >= from && at < to {
				outUp++
			}
			if opened >= 0 && at >= opened && at < to {
				openUp++
			}
		}
		f.outage = float64(outUp) / float64(outReq)
		if opened >= 0 {
			f.openedAt = opened
			f.afterOpen = float64(openUp) / float64(openReq)
		}
		f.server = up.Stats().Total
	})
	return f
}

// send sends one logical request and tells how it went.
func send(do doer, timeout time.Duration, id, method string, keyed bool) logical {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"item":"demo","quantity":1}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://chaos.test/items/"+id, body)
	if err != nil {
		panic(err)
	}
	req.Header.Set(chaos.RequestIDHeader, id)
	if keyed {
		req.Header.Set("Idempotency-Key", id)
	}
	l := logical{safe: method == http.MethodGet || keyed}
	t0 := time.Now()
	resp, err := do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		l.ok = err == nil && resp.StatusCode/100 == 2
	}
	l.took = time.Since(t0)
	return l
}

func (f figures) log(t *testing.T) {
	t.Helper()
	b, th := f.phases[chaos.Brownout], f.phases[chaos.Throttling]
	after := "-"
	if f.afterOpen >= 0 {
		after = fmt.Sprintf("%.3f (open at %.2fs)", f.afterOpen, f.openedAt.Seconds())
	}
	t.Logf("%-11s brownout %.2f%% all, %.2f%% safe | throttling %.2f%% | outage ampl %.3f, after open %s | recovery %v | early %d, dup POST %d",
		f.name, 100*b.success(), 100*b.safeSuccess(), 100*th.success(), f.outage, after, f.recovery,
		f.server.EarlyRetries, f.server.Duplicates)
}

// TestChaosDefaultScenario checks the targets of httpx's defaults (issue
// 16) on the demo's default scenario: its upstream (chaos.DefaultConfig:
// a brownout with 8% 503s, latency spikes and held-back headers; 40% 429s
// with a Retry-After of 1, 2 or 4s; 6s of refused connections) and its
// load (10 callers, 100 requests a second, 2s deadlines, 38% keyed POSTs
// and 2% POSTs without a key).
func TestChaosDefaultScenario(t *testing.T) {
	cfg := chaos.DefaultConfig(1)
	checkTargets(t, cfg, demoLoad, targets{allVsNaive: true, safe: 0.99})
}

// TestChaosIssueScenario is the harsher scenario, first measured by hand: 32 callers
// at 400 requests a second, a brownout of 30% 503s, throttling with 429s
// and a Retry-After of 1s, an outage of 503s. The defaults sent 3.68
// requests per logical request in that outage, and the README's advice of
// the time (a fixed 10% budget) kept 76.8% of the brownout.
//
// With 30% of attempts failing, the naive loop's success on all requests
// is out of reach by design: it retries the 503s of POSTs without a key
// (2% of the requests, 30% of which fail: 0.6%), which httpx never does
// (DESIGN 3: such a POST may have run). So here the comparison with it is
// on the requests safe to retry. And 4 attempts can rescue at most
// 1 - 0.3^4 = 99.19% of them on average: with about 2000 of them, runs
// (whose jitter differs) measured 99.03% to 99.24%, so 99% is checked with
// a margin for that noise.
func TestChaosIssueScenario(t *testing.T) {
	cfg := chaos.DefaultConfig(1)
	cfg.Outage = chaos.Fail503
	cfg.Profiles[chaos.Brownout] = chaos.Profile{Unavailable: 0.3}
	cfg.Profiles[chaos.Throttling] = chaos.Profile{Throttled: 0.5}
	cfg.RetryAfter = []time.Duration{time.Second}
	cfg.DateShare = 0
	checkTargets(t, cfg, load{callers: 32, rate: 400, timeout: 2 * time.Second, posts: 0.38, unkeyed: 0.02, seed: 1},
		targets{safe: 0.985})
}

// targets are what checkTargets checks, where scenarios differ.
type targets struct {
	// allVsNaive: the brownout's success on all requests is at least the
	// naive loop's (that of the requests safe to retry always is).
	allVsNaive bool
	// safe is the least brownout success of the requests safe to retry.
	safe float64
}

// checkTargets runs ld through the four clients and checks the targets.
func checkTargets(t *testing.T, cfg chaos.Config, ld load, want targets) {
	fig := map[string]figures{}
	for _, c := range []client{plainClient(), naiveClient(), httpxClient(), recommendedClient()} {
		fig[c.name] = runScenario(t, cfg, ld, c)
		fig[c.name].log(t)
	}
	plain, naive := fig["plain"], fig["naive"]
	for _, name := range []string{"httpx", "recommended"} {
		f := fig[name]
		b, th := f.phases[chaos.Brownout], f.phases[chaos.Throttling]
		assert.LessOrEqual(t, f.outage, 1.2, "%s: outage amplification", name)
		assert.GreaterOrEqual(t, b.safeSuccess(), want.safe, "%s: brownout success of the requests safe to retry", name)
		nb := naive.phases[chaos.Brownout]
		if want.allVsNaive {
			assert.GreaterOrEqual(t, b.success(), nb.success(), "%s: brownout success, all requests, against the naive loop", name)
		}
		assert.GreaterOrEqual(t, b.safeSuccess(), nb.safeSuccess(), "%s: brownout success, requests safe to retry, against the naive loop", name)
		assert.Zero(t, f.server.EarlyRetries, "%s: no request sooner than a Retry-After allowed", name)
		assert.GreaterOrEqual(t, th.success(), plain.phases[chaos.Throttling].success(), "%s: throttling success against the plain client", name)
		assert.GreaterOrEqual(t, f.recovery, time.Duration(0), "%s: a success after the outage", name)
		assert.LessOrEqual(t, f.recovery, time.Second, "%s: recovery noticed within 1s", name)
		assert.Zero(t, f.server.Duplicates, "%s: no POST without a key executed twice", name)
		assert.Equal(t, 1.0, f.phases[chaos.Healthy].success(), name)
	}
	assert.Negative(t, fig["httpx"].afterOpen, "the defaults have no breaker")
	rec := fig["recommended"]
	if assert.GreaterOrEqual(t, rec.afterOpen, 0.0, "the recommended breaker opens in the outage") {
		assert.LessOrEqual(t, rec.afterOpen, 0.1, "once open, at most 0.1 requests on the wire per request")
	}
	assert.Greater(t, naive.outage, 3.0, "without a budget, an outage is multiplied")
}
