package httpx

import (
	"context"
	"errors"
	"net/http"
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

// hosts answers each host by its own script: attempt n (from 1) of the
// host's requests gets scripts[host](n). It counts the requests per host.
type hosts struct {
	scripts map[string]func(n int) (*http.Response, error)
	mu      sync.Mutex
	n       map[string]int
}

func newHosts(scripts map[string]func(n int) (*http.Response, error)) *hosts {
	return &hosts{scripts: scripts, n: map[string]int{}}
}

func (h *hosts) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	h.mu.Lock()
	h.n[req.URL.Host]++
	n := h.n[req.URL.Host]
	h.mu.Unlock()
	resp, err := h.scripts[req.URL.Host](n)
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

func (h *hosts) count(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[host]
}

func always(code int) func(int) (*http.Response, error) {
	return func(int) (*http.Response, error) { return respond(code, ""), nil }
}

// okAfter fails the first k attempts of every 4 with 503, then answers 200.
func okAfter(k int) func(int) (*http.Response, error) {
	return func(n int) (*http.Response, error) {
		if (n-1)%4 < k {
			return respond(503, ""), nil
		}
		return respond(200, ""), nil
	}
}

// statusOf sends a GET to url and returns the status it ended with, 0
// without a response.
func statusOf(t *testing.T, tr *Transport, url string) int {
	t.Helper()
	resp, err := tr.RoundTrip(get(t, context.Background(), url))
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func lastDone(ev *atomic.Pointer[resilient.DoneEvent]) resilient.DoneEvent {
	if e := ev.Load(); e != nil {
		return *e
	}
	return resilient.DoneEvent{}
}

// TestHostBudgetsAreSeparate: by default each host has its own adaptive
// budget. A host that is down spends its own (10 retries, then the floor's
// one a second; no time passes here, so one), after which its calls make one
// attempt each, ended by the budget; the other host still gets every retry
// it needs. Without the per-host budget, the dead host gets 4 attempts a
// call; with one budget for every host, the dead host starves the healthy
// one.
func TestHostBudgetsAreSeparate(t *testing.T) {
	const calls = 20
	run := func(t *testing.T, opts ...Option) (down int, upOK bool, reason string) {
		var done atomic.Pointer[resilient.DoneEvent]
		h := newHosts(map[string]func(int) (*http.Response, error){
			"down.test": always(503),
			"up.test":   okAfter(3),
		})
		opts = append([]Option{WithBase(h), WithExecutorOptions(
			resilient.WithBackoff(resilient.Constant(0)),
			resilient.WithHooks(resilient.Hooks{OnDone: func(e resilient.DoneEvent) { done.Store(&e) }}),
		)}, opts...)
		tr, err := NewTransport(opts...)
		require.NoError(t, err)
		for range calls {
			require.Equal(t, 503, statusOf(t, tr, "http://down.test/"))
		}
		reason = resilient.RejectedBy(lastDone(&done).Err)
		code := statusOf(t, tr, "http://up.test/")
		return h.count("down.test"), code == 200 && h.count("up.test") == 4, reason
	}
	synctest.Test(t, func(t *testing.T) {
		down, upOK, reason := run(t)
		assert.Equal(t, calls+10+1, down, "one attempt a call, plus the burst of 10 retries and the floor's one")
		assert.Equal(t, resilient.PolicyBudget, reason, "the last call was ended by the budget")
		assert.True(t, upOK, "the healthy host retried 3 times, on its own budget")
	})
	synctest.Test(t, func(t *testing.T) {
		down, upOK, reason := run(t, WithoutHostBudget())
		assert.Equal(t, 4*calls, down, "no budget: 4 attempts a call")
		assert.Empty(t, reason)
		assert.True(t, upOK)
	})
	synctest.Test(t, func(t *testing.T) {
		_, upOK, _ := run(t, WithoutHostBudget(), WithExecutorOptions(resilient.WithBudget(resilient.MustNewAdaptiveBudget())))
		assert.False(t, upOK, "one budget for every host: the dead host spent the healthy one's retries")
	})
	synctest.Test(t, func(t *testing.T) {
		down, _, _ := run(t, WithHostPolicies(func(string) []resilient.Option {
			return []resilient.Option{resilient.WithBudget(resilient.MustNewBudget(resilient.WithMinRetryRate(0)))}
		}), WithoutHostBudget())
		assert.Equal(t, calls+10+1, down, "a fixed-ratio budget per host instead: the burst of 10, then 10% of the 16 calls after it")
	})
}

// TestWithExecutorHasNoHostBudget: an executor of the caller's replaces the
// whole default policy, its per-host budgets included; WithHostPolicies
// adds them back.
func TestWithExecutorHasNoHostBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts(map[string]func(int) (*http.Response, error){"down.test": always(503)})
		tr := newTransport(t, h, WithExecutor(noWait()))
		assert.Nil(t, tr.cfg.hosts, "no per-host state at all")
		for range 20 {
			require.Equal(t, 503, statusOf(t, tr, "http://down.test/"))
		}
		assert.Equal(t, 80, h.count("down.test"))

		h = newHosts(map[string]func(int) (*http.Response, error){"down.test": always(503)})
		tr = newTransport(t, h, WithExecutor(noWait()), WithHostPolicies(func(string) []resilient.Option {
			return []resilient.Option{resilient.WithBudget(resilient.MustNewAdaptiveBudget())}
		}))
		for range 20 {
			require.Equal(t, 503, statusOf(t, tr, "http://down.test/"))
		}
		assert.Equal(t, 20+10+1, h.count("down.test"))
	})
}

// TestZeroTransportsDoNotShareBudgets: the zero Transport builds its
// configuration on first use, so each one has per-host budgets of its own.
func TestZeroTransportsDoNotShareBudgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHosts(map[string]func(int) (*http.Response, error){"down.test": always(503)})
		a, b := &Transport{Base: h}, &Transport{Base: h}
		ctx := context.Background()
		drain := func(tr *Transport) int {
			before := h.count("down.test")
			for range 20 {
				// Fake time: the default backoff's waits pass at once.
				resp, err := tr.RoundTrip(get(t, ctx, "http://down.test/"))
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
			}
			return h.count("down.test") - before
		}
		first := drain(a)
		assert.Less(t, first, 4*20, "a's budget ran out")
		assert.Equal(t, first, drain(b), "b starts with a full budget of its own")
		assert.Same(t, a.config(), a.config(), "built once")
	})
}

// TestHostConcurrencyLimit: a concurrency limiter per host, through
// WithHostPolicies: a host at its limit refuses more attempts at
// once, as a rejection naming the limiter, while another host is served.
func TestHostConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			<-release
			r := respond(200, "ok")
			r.Request = req
			return r, nil
		})
		var mu sync.Mutex
		limiters := map[string]*resilient.ConcurrencyLimiter{}
		tr := newTransport(t, base, WithHostPolicies(func(host string) []resilient.Option {
			l := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(2, 2))
			mu.Lock()
			limiters[host] = l
			mu.Unlock()
			return []resilient.Option{resilient.WithConcurrencyLimit(l)}
		}))
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				resp, err := tr.RoundTrip(get(t, context.Background(), "http://a.test/"))
				if assert.NoError(t, err) {
					assert.Equal(t, 200, resp.StatusCode)
					_ = resp.Body.Close()
				}
			})
		}
		synctest.Wait()
		_, err := tr.RoundTrip(get(t, context.Background(), "http://a.test/"))
		require.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
		assert.Equal(t, resilient.PolicyConcurrency, resilient.RejectedBy(err))
		var rerr *resilient.Error
		require.ErrorAs(t, err, &rerr)
		assert.Zero(t, rerr.Attempts, "nothing was sent")

		wg.Go(func() {
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://b.test/"))
			if assert.NoError(t, err, "another host has its own limit") {
				_ = resp.Body.Close()
			}
		})
		synctest.Wait()
		assert.Equal(t, 2, limiters["a.test"].InFlight())
		assert.Equal(t, 1, limiters["b.test"].InFlight())
		close(release)
		wg.Wait()
		assert.Zero(t, limiters["a.test"].InFlight()+limiters["b.test"].InFlight(), "every slot given back")
	})
}

// TestHostPoliciesBuiltOncePerHost: f runs once per host however many
// requests race to it, and the host's policies stay the same.
func TestHostPoliciesBuiltOncePerHost(t *testing.T) {
	var builds atomic.Int32
	h := newHosts(map[string]func(int) (*http.Response, error){"a.test": always(200), "b.test": always(200)})
	tr := newTransport(t, h, WithHostPolicies(func(string) []resilient.Option {
		builds.Add(1)
		return nil
	}))
	var wg sync.WaitGroup
	for i := range 64 {
		host := []string{"a.test", "b.test"}[i%2]
		wg.Go(func() {
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://"+host+"/"))
			if assert.NoError(t, err) {
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 2, builds.Load())
	assert.Equal(t, 2, tr.cfg.hosts.Len())
}

// TestMaxHosts: past the bound, a host's policies are forgotten, and its
// next request starts afresh with a full budget.
func TestMaxHosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var builds atomic.Int32
		h := newHosts(map[string]func(int) (*http.Response, error){"down.test": always(503), "other.test": always(200)})
		tr := newTransport(t, h, WithMaxHosts(1), WithExecutorOptions(resilient.WithBackoff(resilient.Constant(0))),
			WithHostPolicies(func(string) []resilient.Option {
				builds.Add(1)
				return nil
			}))
		for range 20 {
			statusOf(t, tr, "http://down.test/")
		}
		require.Equal(t, 20+11, h.count("down.test"), "the budget ran out")
		statusOf(t, tr, "http://other.test/")
		assert.Equal(t, 1, tr.cfg.hosts.Len(), "the bound holds")
		statusOf(t, tr, "http://down.test/")
		assert.Equal(t, 20+11+4, h.count("down.test"), "forgotten, then built anew: a full budget again")
		assert.EqualValues(t, 3, builds.Load())
	})
}

// TestExecutorOptionsKeepThePolicy: WithExecutorOptions adds to the default
// policy, or to WithExecutor's, wherever it stands, and several add up.
func TestExecutorOptionsKeepThePolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			opts     []Option
			attempts int
		}{
			{"default policy", []Option{WithExecutorOptions(resilient.WithName("a")), WithExecutorOptions(resilient.WithBackoff(resilient.Constant(0)))}, 4},
			{"own executor after", []Option{WithExecutorOptions(resilient.WithName("a")), WithExecutor(noWait(resilient.WithAttempts(2)))}, 2},
			{"own executor before", []Option{WithExecutor(noWait(resilient.WithAttempts(2))), WithExecutorOptions(resilient.WithName("a"))}, 2},
			{"overriding a setting", []Option{WithExecutor(noWait()), WithExecutorOptions(resilient.WithName("a"), resilient.WithAttempts(3))}, 3},
		} {
			f := &fakeRT{fn: statuses(503)}
			var done atomic.Pointer[resilient.DoneEvent]
			tr := newTransport(t, f, append(tc.opts, WithExecutorOptions(resilient.WithHooks(resilient.Hooks{
				OnDone: func(e resilient.DoneEvent) { done.Store(&e) },
			})))...)
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/"))
			require.NoError(t, err, tc.name)
			_ = resp.Body.Close()
			assert.Equal(t, tc.attempts, f.calls(), tc.name)
			assert.Equal(t, "a", lastDone(&done).Name, tc.name)
		}
	})
}

func TestHostAndExecutorOptionsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Option
		want string
	}{
		{"nil host policies", WithHostPolicies(nil), "resilient: httpx.WithHostPolicies: nil function"},
		{"max hosts 0", WithMaxHosts(0), "resilient: httpx.WithMaxHosts: n must be >= 1, got 0"},
		{"max hosts negative", WithMaxHosts(-3), "resilient: httpx.WithMaxHosts: n must be >= 1, got -3"},
		{"nil executor option", WithExecutorOptions(resilient.WithName("x"), nil), "resilient: httpx.WithExecutorOptions: nil option"},
		{"an executor", WithExecutorOptions(resilient.MustNew()), "resilient: httpx.WithExecutorOptions: an *Executor would replace the policy: give options, or use WithExecutor"},
		{"a nil executor", WithExecutorOptions((*resilient.Executor)(nil)), "resilient: httpx.WithExecutorOptions: an *Executor would replace the policy: give options, or use WithExecutor"},
		{"invalid executor option", WithExecutorOptions(resilient.WithAttempts(0)), "resilient: httpx.WithExecutorOptions: resilient: WithAttempts: n must be >= 1 or Unlimited, got 0"},
		{"invalid breaker option", Recommended(resilient.WithFailureRate(2)), "resilient: httpx.Recommended: resilient: WithFailureRate: rate must be in (0, 1], got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewTransport(tc.opt)
			require.EqualError(t, err, tc.want)
			// NewClient reports it on every request, without sending it.
			f := &fakeRT{fn: statuses(200)}
			_, err = NewClient(tc.opt, WithBase(f)).Get("http://api.test/")
			require.ErrorContains(t, err, tc.want)
			assert.Zero(t, f.calls())
		})
	}
	_, err := NewTransport(WithExecutorOptions(resilient.WithAttempts(0)))
	assert.ErrorIs(t, err, resilient.ErrInvalidOption, "the core's error stays matchable")
}

// TestHostPoliciesInvalidForAHost: options f returns for a host are checked
// when that host is first used; its requests then fail, unsent, with an
// error that names the host and the option, their bodies closed, and the
// other hosts are served.
func TestHostPoliciesInvalidForAHost(t *testing.T) {
	f := &fakeRT{fn: statuses(200)}
	tr := newTransport(t, f, WithHostPolicies(func(host string) []resilient.Option {
		switch host {
		case "bad.test":
			return []resilient.Option{resilient.WithBudget(nil)}
		case "exec.test":
			return []resilient.Option{resilient.MustNew()}
		case "nil.test":
			return []resilient.Option{nil}
		}
		return nil
	}))
	for host, want := range map[string]string{
		"bad.test":  `resilient: httpx.WithHostPolicies: host "bad.test": resilient: WithBudget: nil budget`,
		"exec.test": `resilient: httpx.WithHostPolicies: host "exec.test": an *Executor would replace the policy: give options, or use WithExecutor`,
		"nil.test":  `resilient: httpx.WithHostPolicies: host "nil.test": nil option`,
	} {
		body := &trackedReqBody{Reader: strings.NewReader("x")}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, "http://"+host+"/", body)
		require.NoError(t, err)
		_, err = tr.RoundTrip(req)
		assert.EqualError(t, err, want)
		assert.ErrorIs(t, err, resilient.ErrInvalidOption)
		var oe *resilient.OptionError
		if assert.ErrorAs(t, err, &oe) {
			assert.Equal(t, "httpx.WithHostPolicies", oe.Option)
		}
		assert.EqualValues(t, 1, body.closed.Load(), "%s: the body is closed", host)
	}
	assert.Zero(t, f.calls(), "nothing sent")
	resp, err := tr.RoundTrip(get(t, context.Background(), "http://good.test/"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 1, f.calls())
}

// TestHostPoliciesCannotUndoTheTransport: a host's options cannot remove
// the release of discarded responses nor add a value check: every
// discarded body is still closed, and responses are still classified by
// status.
func TestHostPoliciesCannotUndoTheTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: statuses(503, 503, 200)}
		tr := newTransport(t, f, WithExecutorOptions(resilient.WithBackoff(resilient.Constant(0))),
			WithHostPolicies(func(string) []resilient.Option {
				return []resilient.Option{
					resilient.OnDiscard(func(*http.Response) {}),
					resilient.CheckValue(func(*http.Response) error { return errors.New("no") }),
				}
			}))
		resp, err := tr.RoundTrip(get(t, context.Background(), "http://api.test/"))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		require.NoError(t, resp.Body.Close())
		require.Len(t, f.bodies, 3)
		for i, b := range f.bodies {
			assert.EqualValues(t, 1, b.closes.Load(), "body %d closed once", i)
		}
	})
}

// TestHostPoliciesCompose puts the per-host policies together with
// hedging, host breakers, deduplication and hooks: a hedge that lost its
// round is charged to no budget and counted by no breaker or limiter, the
// per-host budget stays full, every limiter slot comes back, and
// deduplicated callers count once.
func TestHostPoliciesCompose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		sent := map[string]int{}
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			sent[req.URL.Host]++
			n := sent[req.URL.Host]
			mu.Unlock()
			if n == 1 { // the first attempt is slow: its hedge wins
				select {
				case <-time.After(time.Second):
				case <-req.Context().Done():
					return nil, req.Context().Err()
				}
			}
			r := respond(200, "ok")
			r.Request = req
			return r, nil
		})
		limiters := map[string]*resilient.ConcurrencyLimiter{}
		var failed atomic.Int32
		tr := newTransport(t, base, Recommended(), WithDedup(nil),
			WithExecutorOptions(resilient.WithHedge(100*time.Millisecond, 2),
				resilient.WithHooks(resilient.Hooks{OnAttempt: func(e resilient.AttemptEvent) {
					if e.Attempt.Outcome == resilient.Retry || e.Attempt.Outcome == resilient.Fail {
						failed.Add(1)
					}
				}})),
			WithHostPolicies(func(host string) []resilient.Option {
				l := resilient.MustNewConcurrencyLimiter()
				mu.Lock()
				limiters[host] = l
				mu.Unlock()
				return []resilient.Option{resilient.WithConcurrencyLimit(l)}
			}))
		var wg sync.WaitGroup
		for i := range 30 {
			host := []string{"a.test", "b.test", "c.test"}[i%3]
			wg.Go(func() {
				// Ten identical requests per host, at once: one execution.
				resp, err := tr.RoundTrip(get(t, context.Background(), "http://"+host+"/x"))
				if assert.NoError(t, err) {
					assert.Equal(t, "ok", readAll(t, resp.Body))
					_ = resp.Body.Close()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, map[string]int{"a.test": 2, "b.test": 2, "c.test": 2}, sent,
			"one execution per host: a first attempt and its hedge")
		assert.Zero(t, failed.Load(), "no attempt failed: the losers are not failures")
		for _, host := range []string{"a.test", "b.test", "c.test"} {
			assert.Zero(t, tr.cfg.breakers.Get(host).Metrics().Failures, host)
			assert.Zero(t, limiters[host].InFlight(), host)
			for _, p := range tr.cfg.hosts.Get(host).cur.Load().ex.Policies() {
				if b, ok := p.(*resilient.Budget); ok {
					assert.Equal(t, float64(resilient.DefaultRetryBurst), b.Available(), "%s: the budget is full", host)
				}
			}
		}
	})
}

// TestZeroTransportFirstUseRace: many goroutines using a zero Transport
// for the first time at once all get one configuration.
func TestZeroTransportFirstUseRace(t *testing.T) {
	h := newHosts(map[string]func(int) (*http.Response, error){"a.test": always(200)})
	tr := &Transport{Base: h}
	cfgs := make([]*config, 64)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() {
			cfgs[i] = tr.config()
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://a.test/"))
			if assert.NoError(t, err) {
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	for _, c := range cfgs {
		assert.Same(t, cfgs[0], c)
	}
	assert.Equal(t, 1, cfgs[0].hosts.Len())
}

// TestHostPoliciesHammer: many goroutines over more hosts than the bound,
// with retries: every request gets its answer, the bound holds, and each
// host's budget is its own throughout (-race checks the rest).
func TestHostPoliciesHammer(t *testing.T) {
	const maxHosts = 8
	var sent atomic.Int64
	base := rtFunc(func(req *http.Request) (*http.Response, error) {
		n := sent.Add(1)
		code := 200
		if n%3 == 0 {
			code = 503
		}
		r := respond(code, "")
		r.Request = req
		return r, nil
	})
	tr := newTransport(t, base, WithMaxHosts(maxHosts), WithExecutorOptions(resilient.WithBackoff(resilient.Constant(0))))
	var wg sync.WaitGroup
	var ok atomic.Int64
	for g := range 32 {
		wg.Go(func() {
			for i := range 100 {
				host := "h" + strings.Repeat("x", (g*7+i)%50) + ".test" // 50 hosts
				resp, err := tr.RoundTrip(get(t, context.Background(), "http://"+host+"/"))
				if !assert.NoError(t, err) {
					return
				}
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				_ = resp.Body.Close()
				assert.LessOrEqual(t, tr.cfg.hosts.Len(), maxHosts)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, maxHosts, tr.cfg.hosts.Len())
	assert.Greater(t, ok.Load(), int64(32*100*9/10), "a third of attempts fail: retries rescue nearly every request")
}
