package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memory carries requests to an upstream's handler in memory, as loopback
// would: refused connections during a refusing outage, a reset before the
// headers or in the middle of the body, a request cancelled while the
// upstream takes its time. Inside a synctest bubble, everything runs on
// fake time.
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

// inMemoryScenario runs the scenario of args (the default one without
// any), whole, in memory and on fake time, and returns its figures.
func inMemoryScenario(t *testing.T, args ...string) *Figures {
	t.Helper()
	var f *Figures
	synctest.Test(t, func(t *testing.T) {
		cfg, err := parseFlags(args, io.Discard)
		require.NoError(t, err)
		cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
		f, err = scenario(context.Background(), cfg, nil, false)
		require.NoError(t, err)
	})
	return f
}

// TestDefaultScenarioInMemory runs the demo's default scenario, whole, in
// memory and on fake time: the figures do not depend on the machine's load,
// so the targets are checked exactly. httpx is httpx.NewClient() and tuned
// httpx.Recommended(), as they are: these are the targets of their defaults.
//
// With -v it logs what the command prints, as the README quotes it.
func TestDefaultScenarioInMemory(t *testing.T) {
	f := inMemoryScenario(t)
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	var out bytes.Buffer
	writeTables(&out, cfg, f)
	t.Logf("go run ./cmd/resilient-demo, in memory on fake time:\n%s", out.String())

	plain, naive, httpx, tuned := client(t, f, "plain"), client(t, f, "naive"), client(t, f, "httpx"), client(t, f, "tuned")
	for _, c := range f.Clients {
		assert.Equal(t, 23*100, c.Total.Requests, "%s: every client gets the same load", c.Name)
		assert.Equal(t, 1.0, phase(t, c, "healthy").Success, c.Name)
		if c.Name != "tuned" { // its breaker is still open as the recovery begins
			assert.Equal(t, 1.0, phase(t, c, "recovery").Success, c.Name)
		}
	}
	t.Logf("brownout success: plain %.4f naive %.4f httpx %.4f tuned %.4f", phase(t, plain, "brownout").Success,
		phase(t, naive, "brownout").Success, phase(t, httpx, "brownout").Success, phase(t, tuned, "brownout").Success)

	for _, lib := range []ClientFigures{httpx, tuned} {
		b := phase(t, lib, "brownout")
		assert.Equal(t, b.RetrySafe, b.RetrySafeOK, "%s: every request safe to retry succeeds in the brownout", lib.Name)
		// Only POSTs without a key fail: a 503 to one of them may not
		// be retried. The naive loop's retries of them succeed no more
		// often here.
		assert.GreaterOrEqual(t, b.Success, 0.995, lib.Name)
		assert.GreaterOrEqual(t, b.Success, phase(t, naive, "brownout").Success, lib.Name)
		assert.LessOrEqual(t, lib.OutageAmplification, 1.2, "%s: the outage is not multiplied", lib.Name)
		assert.Zero(t, lib.Total.Server.Duplicates, lib.Name)
		assert.Zero(t, lib.Total.Server.EarlyRetries, lib.Name)
		assert.Zero(t, lib.MaxHeldMs, "%s: a hint that cannot fit returns the 429 at once", lib.Name)
		assert.Greater(t, phase(t, lib, "throttling").Success, phase(t, naive, "throttling").Success, lib.Name)
		assert.Greater(t, phase(t, lib, "throttling").Success, phase(t, plain, "throttling").Success, lib.Name)
		require.NotNil(t, lib.RecoveryLagMs, lib.Name)
		assert.LessOrEqual(t, *lib.RecoveryLagMs, 1000.0, "%s: recovery noticed within 1s", lib.Name)
	}
	assert.Positive(t, naive.Total.Server.EarlyRetries)
	assert.Greater(t, naive.OutageAmplification, 3.5)
	assert.Nil(t, httpx.AfterOpen, "no breaker")
	t.Logf("outage amplification: naive %.2f httpx %.2f tuned %.2f", naive.OutageAmplification, httpx.OutageAmplification, tuned.OutageAmplification)

	// Requests cancelled on the wire each close an HTTP/1.1 connection.
	// plain's deadline outlasts the slow headers; the library's clients
	// have no timer of their own, only the caller's deadline, which a
	// retry that meets slow headers can still run into; neither hedges.
	assert.Zero(t, plain.Cut)
	assert.LessOrEqual(t, httpx.Cut, 3)
	assert.LessOrEqual(t, tuned.Cut, 3)
	assert.Equal(t, tuned.Cut, tuned.CutByDeadline, "no hedging: only deadlines cut")
	assert.Positive(t, naive.Cut, "the naive loop's 1s timeout cuts the slow headers")

	require.NotNil(t, tuned.AfterOpen)
	assert.LessOrEqual(t, tuned.AfterOpen.Amplification, 0.1)
	assert.Zero(t, tuned.Rejected.P50Ms, "a refusal takes no (fake) time")
	t.Logf("tuned: after open %.3f, recovery %.0fms, transitions %d", tuned.AfterOpen.Amplification, *tuned.RecoveryLagMs, len(tuned.Transitions))

	// On fake time the lab never falls behind: the run is valid, every
	// request started on schedule and as planned, and every target a
	// user sees is met.
	assert.True(t, f.Fidelity.Valid, "%v", f.Fidelity.Problems)
	assert.GreaterOrEqual(t, f.Fidelity.Scheduler.Samples, 23*100-1, "a probe every 10ms")
	assert.Zero(t, f.Fidelity.Scheduler.MaxMs)
	for _, c := range f.Clients {
		assert.Zero(t, c.Lag.MaxMs, c.Name)
		for _, p := range c.Phases {
			assert.Equal(t, p.Planned, p.Requests, "%s %s", c.Name, p.Phase)
		}
	}
	assert.Equal(t, Setup{Budget: "adaptive", OpenMs: 1000, Limit: "none", Recommended: true}, f.Setup)
	require.Len(t, f.Targets, 2*len(targetIDs), "every target, for httpx and tuned")
	for _, tg := range f.Targets {
		assert.Contains(t, []string{statusMet, statusNA}, tg.Status, "%s %s: %s %s", tg.Client, tg.ID, tg.Figure, tg.Note)
		if tg.Client == "tuned" {
			assert.Equal(t, statusMet, tg.Status, "%s %s", tg.Client, tg.ID)
		}
	}
}

// TestSameSeedSameFigures runs the clients that draw no random numbers of
// their own twice with one seed, and once with another: on fake time, the
// whole report is a function of the seed.
func TestSameSeedSameFigures(t *testing.T) {
	figures := func(seed string) *Figures {
		var f *Figures
		synctest.Test(t, func(t *testing.T) {
			cfg, err := parseFlags([]string{"-clients", "plain,naive", "-seed", seed, "-duration", "8s"}, io.Discard)
			require.NoError(t, err)
			cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
			f, err = scenario(context.Background(), cfg, nil, false)
			require.NoError(t, err)
		})
		return f
	}
	a := figures("3")
	assert.Equal(t, a, figures("3"))
	b := figures("4")
	assert.NotEqual(t, a.Clients[0].Total.Outcomes, b.Clients[0].Total.Outcomes)
}

// TestBudgetFlag runs the default scenario, and one with 30% of the
// brownout's requests answered 503 (-brownout 0.3, as in httpx's harsher
// chaos scenario), with each -budget in the httpx client's place: a budget that
// stops an outage's retries may starve a brownout's, one that feeds a
// brownout's may let an outage's through; the adaptive one (the default)
// does both. Run with -v for the table in cmd/resilient-demo/README.md.
func TestBudgetFlag(t *testing.T) {
	t.Logf("%-9s %18s %22s %11s %7s %9s", "-budget", "brownout 8%: safe", "brownout 30%: all/safe", "throttling", "outage", "recovery")
	for _, tt := range []struct {
		budget string
		// Bounds on the figures of the httpx client.
		minSafe30, maxSafe30 float64 // brownout 30%, requests safe to retry
		minAmpl, maxAmpl     float64 // outage amplification
	}{
		{"adaptive", 0.99, 1, 1, 1.2},
		{"ratio", 0.9, 0.97, 1.2, 1.5},
		{"grpc", 0.6, 0.8, 1, 1.02},
		// Without a budget every request makes its 4 attempts; retries of
		// requests started just before the outage land in it too, so the
		// figure may pass 4 by a little (4.01 seen).
		{"none", 0.99, 1, 3.5, 4.1},
	} {
		t.Run(tt.budget, func(t *testing.T) {
			mild := inMemoryScenario(t, "-clients", "plain,naive,httpx", "-budget", tt.budget)
			harsh := inMemoryScenario(t, "-clients", "plain,naive,httpx", "-budget", tt.budget, "-brownout", "0.3")
			h, hh := client(t, mild, "httpx"), client(t, harsh, "httpx")
			assert.Equal(t, tt.budget, mild.Setup.Budget)
			assert.Contains(t, h.Description, budgetDescriptions[tt.budget])
			b, b30 := phase(t, h, "brownout"), phase(t, hh, "brownout")
			safe, safe30 := ratio(b.RetrySafeOK, b.RetrySafe), ratio(b30.RetrySafeOK, b30.RetrySafe)
			th := phase(t, h, "throttling")
			t.Logf("%-9s %18s %22s %11s %7.2f %9s", tt.budget, pct(safe, b.RetrySafe), pct(b30.Success, b30.Requests)+" / "+pct(safe30, b30.RetrySafe),
				pct(th.Success, th.Requests), h.OutageAmplification, msStr(*h.RecoveryLagMs))

			assert.GreaterOrEqual(t, safe30, tt.minSafe30, "brownout 30%%, requests safe to retry")
			assert.LessOrEqual(t, safe30, tt.maxSafe30, "brownout 30%%, requests safe to retry")
			assert.GreaterOrEqual(t, h.OutageAmplification, tt.minAmpl, "outage amplification")
			assert.LessOrEqual(t, h.OutageAmplification, tt.maxAmpl, "outage amplification")
			assert.GreaterOrEqual(t, th.Success, phase(t, client(t, mild, "plain"), "throttling").Success, "throttling, against plain")
			for _, f := range []*Figures{mild, harsh} {
				c := client(t, f, "httpx")
				assert.Zero(t, c.Total.Server.Duplicates)
				assert.Zero(t, c.Total.Server.EarlyRetries)
				// The targets say when the client is not httpx's defaults.
				for _, tg := range f.Targets {
					if tg.Status == statusNotMet && tt.budget != budgetAdaptive {
						assert.Contains(t, tg.Note, "-budget "+tt.budget+": not httpx's default budget", tg.ID)
					}
				}
			}
			// The output says which budget and which brownout it ran with.
			var out, page bytes.Buffer
			writeTables(&out, &config{timeout: 2 * time.Second}, harsh)
			assert.Contains(t, out.String(), "upstream: built-in, one instance per client, same seed; brownout: 30% 503s; outage: refuse; HTTP/1.1\n")
			assert.Contains(t, out.String(), "\nhttpx: "+h.Description+"\n")
			require.NoError(t, writeHTML(&page, harsh))
			if tt.budget == budgetAdaptive {
				assert.Contains(t, out.String(), "\ntargets, httpx:\n")
				assert.Contains(t, page.String(), "<th>httpx</th>")
			} else {
				assert.Contains(t, out.String(), "\ntargets, httpx: (-budget "+tt.budget+": not httpx's default budget)\n")
				assert.Contains(t, page.String(), `<th>httpx<div class="legend">-budget `+tt.budget+`: not httpx&#39;s default budget</div></th>`)
			}
			if tt.budget == budgetAdaptive {
				// The defaults' brownout targets there: 99% of the
				// requests safe to retry; all requests trail the naive loop,
				// which sends POSTs without a key again, and the target
				// says so.
				nb := phase(t, client(t, harsh, "naive"), "brownout")
				for _, tg := range harsh.Targets {
					if tg.ID == "brownout-naive" && b30.Success < nb.Success {
						assert.Equal(t, statusNotMet, tg.Status)
						assert.Contains(t, tg.Note, "the naive loop sends POSTs without a key again after a 503")
					}
				}
			}
		})
	}
}

// TestHedgeFlag: -hedge adds hedging to the tuned client: the requests
// held back in the brownout are hedged after the delay, which cuts the
// brownout's tail from the 1.5s of the held-back headers to the delay; each
// hedge that wins cancels the attempt it beat on the wire, which the cut
// column counts and the connection target allows for. Nothing else moves:
// no POST twice, no early retry.
func TestHedgeFlag(t *testing.T) {
	plainTuned := client(t, inMemoryScenario(t, "-clients", "plain,tuned"), "tuned")
	f := inMemoryScenario(t, "-clients", "plain,tuned", "-hedge", "500ms")
	hedged := client(t, f, "tuned")

	t.Logf("tuned brownout p99: %s, with -hedge 500ms %s; requests cut %d, of them by the deadline %d; success %s, with -hedge %s",
		msStr(phase(t, plainTuned, "brownout").P99Ms), msStr(phase(t, hedged, "brownout").P99Ms), hedged.Cut, hedged.CutByDeadline,
		pct(plainTuned.Total.Success, plainTuned.Total.Requests), pct(hedged.Total.Success, hedged.Total.Requests))
	assert.Equal(t, Setup{Budget: "adaptive", OpenMs: 1000, HedgeMs: 500, Limit: "none"}, f.Setup)
	assert.Contains(t, hedged.Description, "hedging after 500ms (-hedge)")
	assert.Contains(t, plainTuned.Description, "no hedging")
	assert.GreaterOrEqual(t, phase(t, plainTuned, "brownout").P99Ms, 1400.0, "unhedged: the held-back headers")
	assert.Less(t, phase(t, hedged, "brownout").P99Ms, 600.0, "hedged after 500ms")
	assert.Zero(t, plainTuned.Cut-plainTuned.CutByDeadline, "no hedge, no cut of the client's own")
	assert.Positive(t, hedged.Cut-hedged.CutByDeadline, "the hedges that won cut the attempts they beat")
	assert.LessOrEqual(t, hedged.Cut, hedged.Total.Requests/100, "at most one request in 100 cut")
	assert.Zero(t, hedged.Total.Server.Duplicates)
	assert.Zero(t, hedged.Total.Server.EarlyRetries)
	var page bytes.Buffer
	require.NoError(t, writeHTML(&page, f))
	assert.Contains(t, page.String(), `<th>tuned<div class="legend">-hedge 500ms: not the recommended setup as it is</div></th>`)
	for _, tg := range f.Targets {
		if tg.ID == "connections" {
			assert.Contains(t, tg.Figure, fmt.Sprintf(" + %d cut + ", hedged.Cut), "one connection allowed per request cut")
		}
	}
}

// TestLimitFlagScenario runs the default scenario with each -limit added to
// the tuned client. The built-in upstream answers in 2ms at any
// concurrency: it has no capacity for a limiter to find, so what the run
// shows is what a limiter costs where it is not needed. A limiter changes
// nothing of the breaker's work, sends no POST twice and no request early.
// Run with -v for the table in cmd/resilient-demo/README.md.
func TestLimitFlagScenario(t *testing.T) {
	t.Logf("%-10s %16s %11s %13s %7s %10s %8s", "-limit", "brownout", "throttling", "brownout p99", "outage", "after open", "refused")
	for _, limit := range limitNames() {
		t.Run(limit, func(t *testing.T) {
			f := inMemoryScenario(t, "-clients", "plain,tuned", "-limit", limit)
			c := client(t, f, "tuned")
			b, th := phase(t, c, "brownout"), phase(t, c, "throttling")
			refused := c.Total.Outcomes["limit reached"]
			t.Logf("%-10s %16s %11s %13s %7.2f %10.3f %8d", limit, pct(b.Success, b.Requests)+" / "+pct(ratio(b.RetrySafeOK, b.RetrySafe), b.RetrySafe),
				pct(th.Success, th.Requests), msStr(b.P99Ms), c.OutageAmplification, c.AfterOpen.Amplification, refused)
			assert.Equal(t, limit, f.Setup.Limit)
			assert.Equal(t, limit == limitNone, f.Setup.Recommended)
			if limit == limitNone {
				assert.Zero(t, refused)
				assert.NotContains(t, c.Description, "limiter")
			} else {
				assert.Contains(t, c.Description, "an adaptive concurrency limiter per host ("+limitLabel(limit)+", -limit)")
			}
			assert.Equal(t, 1.0, phase(t, c, "healthy").Success, "the healthy upstream is never refused")
			assert.LessOrEqual(t, c.OutageAmplification, 1.2)
			require.NotNil(t, c.AfterOpen)
			assert.LessOrEqual(t, c.AfterOpen.Amplification, 0.1)
			assert.Zero(t, c.Total.Server.Duplicates)
			assert.Zero(t, c.Total.Server.EarlyRetries)
		})
	}
}
