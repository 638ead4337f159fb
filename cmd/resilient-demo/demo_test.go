package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"html"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBadFlagsAreRejected(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "flag provided but not defined: -nope"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
		{"callers", []string{"-callers", "0"}, "-callers must be >= 1, got 0"},
		{"rate", []string{"-rate", "-3"}, "-rate must be in (0, 1e6], got -3"},
		{"rate NaN", []string{"-rate", "NaN"}, "-rate must be in (0, 1e6], got NaN"},
		{"timeout", []string{"-timeout", "0s"}, "-timeout must be > 0, got 0s"},
		{"duration", []string{"-duration", "-1s"}, "-duration must be > 0, got -1s"},
		{"duration zero", []string{"-duration", "0s"}, "-duration must be > 0, got 0s"},
		{"duration not a duration", []string{"-duration", "5"}, `invalid value "5" for flag -duration`},
		{"phases", []string{"-phases", "sunny=1s"}, `-phases: chaos: unknown phase "sunny"`},
		{"phase duration", []string{"-phases", "outage=0s"}, "-phases: chaos: phase 0 (outage): duration must be > 0, got 0s"},
		{"outage", []string{"-outage", "sometimes"}, `-outage must be refuse or 503, got "sometimes"`},
		{"mix", []string{"-posts", "0.9", "-unkeyed", "0.2"}, "-posts plus -unkeyed must be at most 1"},
		{"unkeyed", []string{"-unkeyed", "2"}, "-unkeyed must be in [0, 1], got 2"},
		{"url", []string{"-url", "localhost:8080"}, `-url must be an absolute http or https URL, got "localhost:8080"`},
		{"client", []string{"-clients", "plain,magic"}, `-clients: unknown client "magic"`},
		{"client twice", []string{"-clients", "plain,plain"}, `-clients: "plain" given twice`},
		{"no client", []string{"-clients", ","}, "-clients: name at least one client"},
		{"open", []string{"-open", "0s"}, "-open must be > 0, got 0s"},
		{"open negative", []string{"-open", "-1s"}, "-open must be > 0, got -1s"},
		{"hedge", []string{"-hedge", "-1ms"}, "-hedge must be >= 0 (0: no hedging), got -1ms"},
		{"budget", []string{"-budget", "fixed"}, `-budget must be one of adaptive, ratio, grpc, none, got "fixed"`},
		{"budget empty", []string{"-budget", ""}, `-budget must be one of adaptive, ratio, grpc, none, got ""`},
		{"limit", []string{"-limit", "vegas"}, `-limit must be one of none, gradient2, aimd, got "vegas"`},
		{"brownout", []string{"-brownout", "1"}, "-brownout must be in [0, 0.9], got 1"},
		{"brownout negative", []string{"-brownout", "-0.1"}, "-brownout must be in [0, 0.9], got -0.1"},
		{"brownout NaN", []string{"-brownout", "NaN"}, "-brownout must be in [0, 0.9], got NaN"},
		{"budget without httpx", []string{"-clients", "plain,tuned", "-budget", "none"}, "-budget applies to the httpx client, which -clients leaves out"},
		{"budget at its default without httpx", []string{"-clients", "tuned", "-budget", "adaptive"}, "-budget applies to the httpx client"},
		{"hedge without tuned", []string{"-clients", "plain,httpx", "-hedge", "500ms"}, "-hedge applies to the tuned client, which -clients leaves out"},
		{"limit without tuned", []string{"-clients", "httpx", "-limit", "aimd"}, "-limit applies to the tuned client, which -clients leaves out"},
		{"open without tuned", []string{"-clients", "httpx", "-open", "2s"}, "-open applies to the tuned client, which -clients leaves out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr, false)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr.String(), tt.want)
			assert.Empty(t, stdout.String(), "nothing ran")
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 0, run(context.Background(), []string{"-h"}, &stdout, &stderr, false))
	assert.Contains(t, stderr.String(), "usage: resilient-demo")
}

// shortScenario runs the whole command on a compressed timeline and
// returns its figures, table and HTML.
func shortScenario(t *testing.T, extra ...string) (*Figures, string, []byte) {
	t.Helper()
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "f.json"), filepath.Join(dir, "r.html")
	args := append([]string{
		"-phases", "healthy=300ms,brownout=600ms,throttling=500ms,outage=1200ms,recovery=700ms",
		"-callers", "8", "-rate", "120", "-timeout", "1500ms", "-open", "300ms",
		"-quiet", "-json", jsonPath, "-report", htmlPath,
	}, extra...)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, false)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var f Figures
	require.NoError(t, json.Unmarshal(raw, &f))
	page, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	return &f, stdout.String(), page
}

func client(t *testing.T, f *Figures, name string) ClientFigures {
	t.Helper()
	for _, c := range f.Clients {
		if c.Name == name {
			return c
		}
	}
	require.Failf(t, "no client", "%s", name)
	return ClientFigures{}
}

func phase(t *testing.T, c ClientFigures, name string) PhaseFigures {
	t.Helper()
	for _, p := range c.Phases {
		if p.Phase == name {
			return p
		}
	}
	require.Failf(t, "no phase", "%s", name)
	return PhaseFigures{}
}

// TestShortScenario runs a short scenario over real loopback connections,
// on a machine that may be busy (-race, other tests), and checks only what
// the code guarantees there: the figures' accounting, and what each client
// does by construction. Figures that depend on how fast the machine is
// (success rates, amplification and latency, where a slow machine moves
// requests across phase boundaries and past deadlines) are checked exactly
// by TestDefaultScenarioInMemory, on fake time.
func TestShortScenario(t *testing.T) {
	f, table, page := shortScenario(t)
	require.Len(t, f.Clients, len(clientKinds))

	for _, c := range f.Clients {
		t.Run(c.Name+" figures add up", func(t *testing.T) {
			sum, up := 0, 0
			for _, p := range c.Phases {
				assert.Positive(t, p.Requests, "phase %s has load", p.Phase)
				sum += p.Requests
				up += p.Upstream
				require.NotNil(t, p.Server)
			}
			assert.Equal(t, sum, c.Total.Requests)
			assert.Equal(t, up, c.Total.Upstream)
			// Every request sent on a connection that was not refused
			// arrives, but for two kinds, each of which is a cut or costs a
			// connection: a request cancelled on the wire before it left,
			// or lost with a connection the upstream reset (at the outage's
			// start); and net/http's own retry of a request after its
			// reused connection died, which arrives without being counted
			// as sent. So what was sent and what arrived differ by no more
			// than the cuts and the connections, whatever the load.
			sent := c.Total.Upstream - c.Refused
			received := c.Total.Server.Received
			assert.LessOrEqual(t, received, sent+c.Connections)
			assert.GreaterOrEqual(t, received, sent-c.Cut-c.Connections)
			assert.Zero(t, c.Total.Server.Duplicates, "no client sends a POST without a key twice")
		})
	}

	plain, naive := client(t, f, "plain"), client(t, f, "naive")
	assert.Equal(t, plain.Total.Requests, plain.Total.Upstream, "plain sends each request once")
	assert.Zero(t, plain.Total.Server.EarlyRetries, "plain never retries")
	// Refusals are instant and the naive loop pauses 100ms between its 4
	// attempts: a machine would have to stall for most of the 1.5s
	// deadline to leave it one attempt per request.
	assert.Greater(t, naive.OutageAmplification, 1.5, "the naive loop retries into the outage")

	// httpx retries a throttled request only once the Retry-After it
	// received has passed, so no retry arrives early. (The tuned client's
	// hedge, started while a 429 is still on its way back, can arrive
	// before that 429's Retry-After is over: it cannot wait for an answer
	// it has not received. On fake time, where answers arrive at once,
	// TestDefaultScenarioInMemory finds none for either, and the naive
	// loop's early retries.)
	assert.Zero(t, client(t, f, "httpx").Total.Server.EarlyRetries, "no retry sooner than Retry-After")

	t.Run("tuned's breaker opens in the outage", func(t *testing.T) {
		tuned := client(t, f, "tuned")
		// 1.2s of refused connections fail far more than the 20 attempts
		// its window needs; when it opens, and whether it closes again
		// before the load ends, depends on the machine's speed.
		require.NotNil(t, tuned.AfterOpen, "the breaker opened in the outage")
		assert.Positive(t, tuned.Rejected.Count, "open, it refuses")
		legal := map[[2]string]bool{
			{"closed", "open"}: true, {"open", "half-open"}: true,
			{"half-open", "open"}: true, {"half-open", "closed"}: true,
		}
		state := "closed"
		for _, tr := range tuned.Transitions {
			assert.Equal(t, state, tr.From, "transitions follow one another: %v", tuned.Transitions)
			assert.True(t, legal[[2]string{tr.From, tr.To}], "a legal edge: %v", tr)
			state = tr.To
		}
	})

	for _, c := range f.Clients {
		assert.Contains(t, table, "\n"+c.Name+": ")
	}
	assert.Contains(t, table, "summary")
	checkHTML(t, page, f)
}

// checkHTML parses the page as XML and finds the report's parts: one
// chart per metric with the phases shaded and a line per client, the
// breaker states of the clients with one, and a legend for every column
// of the summary.
func checkHTML(t *testing.T, page []byte, f *Figures) {
	t.Helper()
	assert.NotContains(t, string(page), "<script")
	local := strings.NewReplacer(`xmlns="http://www.w3.org/1999/xhtml"`, "", `xmlns="http://www.w3.org/2000/svg"`, "").Replace(string(page))
	assert.NotContains(t, local, "http://", "no external asset")
	assert.NotContains(t, local, "https://", "no external asset")
	for _, ref := range []string{`src="`, `href="`, "@import", "url("} {
		assert.NotContains(t, string(page), ref, "no external asset")
	}
	d := xml.NewDecoder(bytes.NewReader(page))
	var charts, breakers, phaseRects, breakerRects, polylines int
	var in string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "the page is well-formed")
		switch el := tok.(type) {
		case xml.StartElement:
			class := ""
			for _, a := range el.Attr {
				if a.Name.Local == "class" {
					class = a.Value
				}
			}
			switch {
			case el.Name.Local == "svg":
				in = class
				if class == "chart" {
					charts++
				} else if class == "breakers" {
					breakers++
				}
			case el.Name.Local == "rect" && class == "phase" && in == "chart":
				phaseRects++
			case el.Name.Local == "rect" && class == "breaker" && in == "breakers":
				breakerRects++
			case el.Name.Local == "polyline" && in == "chart":
				polylines++
			}
		case xml.EndElement:
			if el.Name.Local == "svg" {
				in = ""
			}
		}
	}
	phases := strings.Count(f.Timeline, "=")
	assert.Equal(t, 4, charts, "one chart per metric: load, success, p99, connections")
	assert.Equal(t, charts*phases, phaseRects, "every chart shades every phase")
	assert.GreaterOrEqual(t, polylines, charts*len(f.Clients), "every chart has a line per client")
	withBreaker := 0
	for _, c := range f.Clients {
		if c.Breaker {
			withBreaker++
		}
		assert.Contains(t, string(page), "<strong>"+c.Name+"</strong>", "its figures per phase")
	}
	if withBreaker > 0 {
		assert.Equal(t, 1, breakers, "the breakers' states are drawn")
		assert.GreaterOrEqual(t, breakerRects, withBreaker, "a state per breaker at least")
		for _, s := range []string{"closed", "open", "half-open"} {
			assert.Contains(t, string(page), "</span>"+s+"</span>", "the key names the state %s", s)
		}
	}
	for _, col := range summaryColumns(f)[1:] {
		assert.Contains(t, string(page), "<th>"+html.EscapeString(col.name)+"<div class=\"legend\">"+html.EscapeString(col.legend)+"</div></th>",
			"the summary's %s has its legend", col.name)
	}
}

func TestSummarize(t *testing.T) {
	// A hand-made record: the figures are computed exactly.
	tl := mustTimeline(t, "healthy=1s,outage=2s,recovery=1s")
	rec := newRecorder(time.Now())
	ms := time.Millisecond
	rec.calls = []call{
		{At: 100 * ms, Took: 10 * ms, OK: true, Status: 200, Outcome: "ok"},
		{At: 200 * ms, Took: 30 * ms, OK: true, Status: 200, Outcome: "ok"},
		{At: 300 * ms, Took: 20 * ms, Status: 429, Outcome: "status 429", Method: "POST"},
		{At: 400 * ms, Took: 290 * ms, Status: 429, Outcome: "status 429", Held: 60 * ms},
		{At: 1100 * ms, Took: 5 * ms, Outcome: "refused"},
		{At: 1600 * ms, Took: 100 * time.Microsecond, Outcome: "breaker open"},
		{At: 2000 * ms, Took: 300 * time.Microsecond, Outcome: "breaker open"},
		{At: 2900 * ms, Took: 250 * ms, OK: true, Status: 200, Outcome: "ok"}, // ends 150ms into recovery
		{At: 3500 * ms, Took: 10 * ms, OK: true, Status: 200, Outcome: "ok"},
	}
	rec.attempts = []time.Duration{100 * ms, 200 * ms, 300 * ms, 1100 * ms, 1101 * ms, 1102 * ms, 2900 * ms, 3500 * ms}
	rec.transitions = []transition{{At: 1500 * ms, From: "closed", To: "open"}, {At: 2900 * ms, From: "open", To: "half-open"}, {At: 3150 * ms, From: "half-open", To: "closed"}}
	// The three attempts into the outage are on the wire together.
	rec.ends = []time.Duration{101 * ms, 201 * ms, 301 * ms, 1200 * ms, 1200 * ms, 1200 * ms, 2901 * ms, 3501 * ms}
	rec.dials = []time.Duration{100 * ms, 1100 * ms, 3500 * ms}
	rec.conns.Store(3)

	f := summarize(clientKind{name: "x", breaker: true}, spansOf(tl), rec, nil, nil)
	require.Len(t, f.Phases, 3)
	h, o, r := f.Phases[0], f.Phases[1], f.Phases[2]
	assert.Equal(t, PhaseFigures{Phase: "healthy", StartS: 0, DurationS: 1, Requests: 4, OK: 2, Success: 0.5, RetrySafe: 3, RetrySafeOK: 2,
		P50Ms: 20, P99Ms: 290, MaxMs: 290, Upstream: 3, Amplification: 0.75, Outcomes: map[string]int{"ok": 2, "status 429": 2},
		Dials: 1, PeakInFlight: 1}, h)
	assert.Equal(t, 3, o.PeakInFlight, "three attempts on the wire at once")
	assert.Equal(t, 1, o.Dials)
	assert.Equal(t, 1, r.PeakInFlight)
	assert.Equal(t, 3, f.Total.Dials)
	assert.Equal(t, 3, f.Total.PeakInFlight)
	assert.Equal(t, 4, o.Requests)
	assert.Equal(t, 4, o.Upstream)
	assert.Equal(t, 1.0, o.Amplification)
	assert.Equal(t, 2, o.Transitions)
	assert.Equal(t, 1, r.Requests)
	assert.Equal(t, 1, r.Transitions)
	assert.Equal(t, 9, f.Total.Requests)
	assert.Equal(t, 3, f.Total.Transitions)
	assert.Equal(t, 4, f.OutageUpstream)
	assert.Equal(t, 1.0, f.OutageAmplification)
	require.NotNil(t, f.AfterOpen)
	assert.Equal(t, AfterOpen{AtS: 1.5, Requests: 3, Upstream: 1, Amplification: 1.0 / 3, P50Ms: 0.3}, *f.AfterOpen)
	require.NotNil(t, f.RecoveryLagMs)
	assert.Equal(t, 150.0, *f.RecoveryLagMs)
	assert.Equal(t, Latencies{Count: 2, P50Ms: 20, MaxMs: 290}, f.Throttled)
	assert.Equal(t, 1, f.ThrottledHeld, "the 429 kept 60ms")
	assert.Equal(t, 60.0, f.MaxHeldMs)
	assert.Equal(t, Latencies{Count: 2, P50Ms: 0.1, MaxMs: 0.3}, f.Rejected)
	assert.Equal(t, 3, f.Connections)
	require.Len(t, f.Series, 4)
	assert.Equal(t, SecondFigure{Second: 1, Upstream: 3, Requests: 2, OK: 0, Success: 0, P99Ms: 5, Dials: 1}, f.Series[1])
	assert.Equal(t, SecondFigure{Second: 2, Upstream: 1, Requests: 2, OK: 1, Success: 0.5, P99Ms: 250}, f.Series[2])

	var buf bytes.Buffer
	figs := &Figures{Timeline: tl.String(), Upstream: "built-in", Clients: []ClientFigures{f}}
	require.NoError(t, writeHTML(&buf, figs))
	checkHTML(t, buf.Bytes(), figs)
	assert.Contains(t, buf.String(), "open from 1.50s to 2.90s")
	assert.Contains(t, buf.String(), "half-open from 2.90s to 3.15s")
	assert.Contains(t, buf.String(), "closed from 3.15s to 4.00s")
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name string
		q    float64
		want time.Duration
	}{{"p50", 0.5, 5}, {"p99", 0.99, 10}, {"max", 1, 10}, {"min", 0, 1}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.Equal(t, tt.want, quantile(ds, tt.q)) })
	}
	assert.Zero(t, quantile(nil, 0.5))
}

func TestNiceCeil(t *testing.T) {
	tests := []struct {
		name    string
		in, out float64
	}{{"zero", 0, 1}, {"negative", -5, 1}, {"exact", 100, 100}, {"103", 103, 200}, {"0.3", 0.3, 0.5}, {"2400", 2400, 2500}, {"7", 7, 10}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { assert.InDelta(t, tt.out, niceCeil(tt.in), 1e-9) })
	}
}
