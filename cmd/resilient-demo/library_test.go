package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scripted is an in-memory upstream that answers each path with a fixed
// sequence (the last answer repeats) and logs every request it gets, with
// its time from start.
//
//	GET /flaky   503, 503, 503, 200: needs all 4 attempts
//	GET /busy    429 with Retry-After: 2, then 200: waits 2s
//	GET /long    503 with Retry-After: 45, beyond the 30s cap: ends at once
//	POST /order  503 to a POST without a key: never retried
//	GET /down    503 forever: spends the budget, opens a breaker
//	GET /ok      200
type scripted struct {
	start time.Time
	mu    sync.Mutex
	n     map[string]int
	log   []string
}

func (s *scripted) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	s.mu.Lock()
	key := req.Method + " " + req.URL.Path
	s.n[key]++
	k := s.n[key]
	s.log = append(s.log, fmt.Sprintf("%v sent %s #%d", time.Since(s.start), key, k))
	s.mu.Unlock()
	code, header := http.StatusOK, http.Header{}
	switch key {
	case "GET /flaky":
		if k < 4 {
			code = http.StatusServiceUnavailable
		}
	case "GET /busy":
		if k == 1 {
			code = http.StatusTooManyRequests
			header.Set("Retry-After", "2")
		}
	case "GET /long":
		code = http.StatusServiceUnavailable
		header.Set("Retry-After", "45")
	case "POST /order", "GET /down":
		code = http.StatusServiceUnavailable
	}
	return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Header: header,
		Body: io.NopCloser(strings.NewReader("body")), Request: req}, nil
}

// seeded is a deterministic source of jitter, safe for concurrent use.
func seeded() func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// script sends a fixed sequence of calls, one after another, through the
// client build makes over a scripted upstream, in a synctest bubble, and
// returns what the upstream got and how each call ended, in order, with
// their times: the client's behaviour, request for request.
func script(t *testing.T, build func(base http.RoundTripper, rec *recorder) (doFunc, error)) (log []string, rec *recorder) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		up := &scripted{start: time.Now(), n: map[string]int{}}
		rec = newRecorder(up.start)
		do, err := build(up, rec)
		require.NoError(t, err)
		call := func(method, path string) (ended string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, method, "http://api.test"+path, strings.NewReader("x"))
			require.NoError(t, err)
			t0 := time.Now()
			resp, err := do(req)
			outcome := ""
			if err != nil {
				outcome = outcomeOf(err)
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				outcome = resp.Status
			}
			line := fmt.Sprintf("%v ended %s %s: %s after %v", time.Since(up.start), method, path, outcome, time.Since(t0))
			up.mu.Lock()
			up.log = append(up.log, line)
			up.mu.Unlock()
			return outcome
		}
		for _, c := range [][2]string{{"GET", "/flaky"}, {"GET", "/busy"}, {"GET", "/long"}, {"POST", "/order"}} {
			call(c[0], c[1])
			time.Sleep(time.Minute) // the budget's floor refills
		}
		for range 14 {
			call("GET", "/down")
		}
		// Then every 100ms, until a call succeeds (a breaker lets a probe
		// through), for 3s at most; off the breaker's whole seconds, where
		// its timer and a call at the same instant would race.
		time.Sleep(50 * time.Millisecond)
		for i := 0; i < 30 && call("GET", "/ok") != "200 OK"; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		up.mu.Lock()
		log = up.log
		up.mu.Unlock()
	})
	return log, rec
}

// demo builds one of the demo's library clients as the command does, with
// a seeded jitter, and -metrics when metered.
func demo(build func(*config, http.RoundTripper, *recorder) (doFunc, error), metered bool, args ...string) func(http.RoundTripper, *recorder) (doFunc, error) {
	return func(base http.RoundTripper, rec *recorder) (doFunc, error) {
		cfg, err := parseFlags(args, io.Discard)
		if err != nil {
			return nil, err
		}
		cfg.random = seeded()
		if metered {
			cfg.metrics = resilient.NewTextMetrics()
		}
		return build(cfg, base, rec)
	}
}

// direct builds an httpx client from opts, with a seeded jitter.
func direct(opts ...httpx.Option) func(http.RoundTripper, *recorder) (doFunc, error) {
	return func(base http.RoundTripper, _ *recorder) (doFunc, error) {
		opts := append([]httpx.Option{httpx.WithBase(base), httpx.WithExecutorOptions(resilient.WithRandom(seeded()))}, opts...)
		return newClient(opts)
	}
}

// TestLibraryClientsAreTheREADMEs: the httpx column is httpx.NewClient()
// and the tuned column httpx.Recommended(), request for request: on one
// script, with one source of jitter, they send the same requests at the
// same times and end every call the same way. So does each with -metrics,
// whose hooks and name are added with WithExecutorOptions: no default is
// lost. An executor of the demo's own given with WithExecutor, as -metrics
// used to build, restates the policy but loses the per-host budget: it
// sends more.
func TestLibraryClientsAreTheREADMEs(t *testing.T) {
	httpxLog, _ := script(t, direct())
	t.Logf("httpx.NewClient():\n%s", strings.Join(httpxLog, "\n"))
	for _, metered := range []bool{false, true} {
		got, _ := script(t, demo(httpxDefaults, metered))
		assert.Equal(t, httpxLog, got, "httpx column, -metrics %v", metered)
	}

	recommended, _ := script(t, direct(httpx.Recommended(resilient.WithBreakerName("tuned"))))
	t.Logf("httpx.Recommended():\n%s", strings.Join(recommended, "\n"))
	for _, metered := range []bool{false, true} {
		got, _ := script(t, demo(tuned, metered))
		assert.Equal(t, recommended, got, "tuned column, -metrics %v", metered)
	}
	assert.NotEqual(t, httpxLog, recommended, "the breaker makes a difference")

	// What the script proves of the defaults.
	joined := strings.Join(httpxLog, "\n")
	for _, want := range []string{
		"ended GET /flaky: 200 OK",
		"ended GET /busy: 200 OK",
		"ended GET /long: 503 Service Unavailable after 0s",
		"ended POST /order: 503 Service Unavailable after 0s",
		"sent GET /flaky #4", "sent GET /busy #2", "sent GET /long #1",
	} {
		assert.Contains(t, joined, want)
	}
	assert.NotContains(t, joined, "sent GET /long #2", "a 45s hint is beyond the 30s cap")
	assert.NotContains(t, joined, "sent POST /order #2", "a POST without a key is not retried after a 503")
	downs := strings.Count(joined, "sent GET /down")
	assert.Less(t, downs, 4*14, "the budget stops the retries of a dead upstream")
	assert.Contains(t, strings.Join(recommended, "\n"), "ended GET /down: breaker open", "the recommended breaker opens")

	// Before WithExecutorOptions, -metrics built an executor of its own.
	own, _ := script(t, direct(httpx.WithExecutor(resilient.MustNew(
		resilient.WithName("httpx"),
		resilient.WithAttempts(httpx.DefaultAttempts),
		resilient.WithBackoff(resilient.Exponential(httpx.DefaultBaseDelay, httpx.DefaultMaxBackoff)),
		resilient.WithMaxDelay(httpx.DefaultMaxRetryAfter),
		resilient.WithRandom(seeded()),
		resilient.WithHooks(resilient.NewTextMetrics().Hooks()),
	))))
	assert.NotEqual(t, httpxLog, own)
	assert.Equal(t, 4*14, strings.Count(strings.Join(own, "\n"), "sent GET /down"), "no per-host budget: every attempt goes out")
}

// TestTunedProbesAfterRecommendedOpen: tuned's breaker, opened by a dead
// upstream, lets its first probe through after recommendedOpen (the
// README's 1s), the bound the demo's recovery target and description use;
// -open changes it.
func TestTunedProbesAfterRecommendedOpen(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		open time.Duration
	}{
		{"recommended", nil, recommendedOpen},
		{"-open 300ms", []string{"-open", "300ms"}, 300 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log, rec := script(t, demo(tuned, false, tt.args...))
			var opened, probed time.Duration = -1, -1
			for _, tr := range rec.transitions {
				switch {
				case tr.To == "open" && opened < 0:
					opened = tr.At
				case tr.To == "half-open" && opened >= 0 && probed < 0:
					probed = tr.At
				}
			}
			require.GreaterOrEqual(t, opened, time.Duration(0), "the breaker opened: %v\n%s", rec.transitions, strings.Join(log, "\n"))
			require.GreaterOrEqual(t, probed, time.Duration(0), "then let a probe through: %v", rec.transitions)
			// The script calls every 100ms once the breaker is open.
			assert.GreaterOrEqual(t, probed-opened, tt.open)
			assert.Less(t, probed-opened, tt.open+100*time.Millisecond)
		})
	}
}

// TestLimitFlag: -limit gives each host of the tuned client a concurrency
// limiter of the kind named, which starts at a limit of 20 and refuses at
// once the attempts over it; without it, nothing is refused.
func TestLimitFlag(t *testing.T) {
	for _, tt := range []struct {
		limit   string
		refused int
	}{{"none", 0}, {"gradient2", 5}, {"aimd", 5}} {
		t.Run(tt.limit, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				var mu sync.Mutex
				sent := 0
				slow := rtFunc(func(req *http.Request) (*http.Response, error) {
					mu.Lock()
					sent++
					mu.Unlock()
					<-release
					return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
				})
				cfg, err := parseFlags([]string{"-limit", tt.limit}, io.Discard)
				require.NoError(t, err)
				do, err := tuned(cfg, slow, newRecorder(time.Now()))
				require.NoError(t, err)
				outcomes := make(chan string, 25)
				var wg sync.WaitGroup
				for range 25 {
					wg.Go(func() {
						req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://api.test/", nil)
						resp, err := do(req)
						if err != nil {
							outcomes <- outcomeOf(err)
							return
						}
						resp.Body.Close()
						outcomes <- "ok"
					})
				}
				synctest.Wait() // every request sent or refused
				close(release)
				wg.Wait()
				close(outcomes)
				got := map[string]int{}
				for o := range outcomes {
					got[o]++
				}
				assert.Equal(t, tt.refused, got["limit reached"], "%v", got)
				assert.Equal(t, 25-tt.refused, got["ok"], "%v", got)
				assert.Equal(t, 25-tt.refused, sent, "a refused request is not sent")
				assert.True(t, isRejection("limit reached"))
			})
		})
	}
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestGRPCThrottle: the demo's model of gRPC's retry throttling allows a
// retry while more than half its tokens are left; a retryable failure
// costs one, a success earns the ratio, and nothing else counts.
func TestGRPCThrottle(t *testing.T) {
	g := newGRPCThrottle(10, 0.1)
	done := func(o resilient.Outcome) { g.Done(resilient.Permit{}, resilient.Report{Outcome: o}) }
	_, err := g.Admit(context.Background(), 1)
	require.NoError(t, err, "first attempts are never refused")
	for range 4 {
		done(resilient.Retry)
	}
	assert.NoError(t, g.AllowRetry(2), "6 tokens left")
	done(resilient.Retry)
	assert.ErrorIs(t, g.AllowRetry(2), resilient.ErrBudgetExhausted, "5 left: not more than half")
	done(resilient.Fail)
	done(resilient.Ignore)
	assert.ErrorIs(t, g.AllowRetry(2), resilient.ErrBudgetExhausted, "a permanent failure or an ignored attempt earns nothing")
	done(resilient.Success)
	assert.NoError(t, g.AllowRetry(2), "5.1 left")
	for range 100 {
		done(resilient.Success)
	}
	assert.InDelta(t, 10, g.tokens, 1e-9, "never more than the bucket")
	for range 20 {
		done(resilient.Retry)
	}
	assert.Zero(t, g.tokens, "never below empty")
	assert.True(t, errors.Is(g.AllowRetry(2), resilient.ErrBudgetExhausted))
}
