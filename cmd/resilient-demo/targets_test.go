package main

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// judged builds the figures of a default run as a quiet machine gives
// them, lets change alter them, and returns the targets judged on them,
// by client and id.
func judged(t *testing.T, change func(f *Figures)) map[string]map[string]Target {
	t.Helper()
	f := goodRun(change)
	out := map[string]map[string]Target{}
	for _, tg := range f.Targets {
		if out[tg.Client] == nil {
			out[tg.Client] = map[string]Target{}
		}
		out[tg.Client][tg.ID] = tg
	}
	return out
}

// goodRun is the figures of a default run as a quiet machine gives them,
// altered by change, with the targets judged.
func goodRun(change func(f *Figures)) *Figures {
	phases := func(recoveryDials, recoveryPeak int) []PhaseFigures {
		return []PhaseFigures{
			{Phase: "healthy", Dials: 1, PeakInFlight: 1},
			{Phase: "brownout", Requests: 500, OK: 498, Success: 0.996, RetrySafe: 490, RetrySafeOK: 490, Dials: 7, PeakInFlight: 6,
				Outcomes: map[string]int{"ok": 498, "status 503": 2}},
			{Phase: "throttling", Requests: 400, OK: 246, Success: 0.615, Outcomes: map[string]int{"ok": 246, "status 429": 154}},
			{Phase: "outage"},
			{Phase: "recovery", Dials: recoveryDials, PeakInFlight: recoveryPeak},
		}
	}
	server := &ServerFigures{}
	lag, fast := 163.0, 2.0
	f := &Figures{Upstream: "built-in", Protocol: "HTTP/1.1", Fidelity: Fidelity{Valid: true},
		Setup: Setup{Budget: "adaptive", OpenMs: 1000, Limit: "none", Recommended: true},
		Clients: []ClientFigures{
			{Name: "plain", Connections: 9, Phases: phases(1, 2), Total: PhaseFigures{Server: server}, OutageAmplification: 1},
			{Name: "naive", Connections: 14, Phases: phases(1, 2), Total: PhaseFigures{Server: server}, OutageAmplification: 3.94},
			{Name: "httpx", Library: true, Connections: 13, Phases: phases(5, 7), Total: PhaseFigures{Server: server},
				OutageAmplification: 1.07, RecoveryLagMs: &fast, Throttled: Latencies{Count: 139}},
			{Name: "tuned", Library: true, Breaker: true, Connections: 15, Cut: 4, Phases: phases(1, 2), Total: PhaseFigures{Server: server},
				OutageAmplification: 0.07, AfterOpen: &AfterOpen{Amplification: 0.008}, Rejected: Latencies{Count: 600, P50Ms: 0.01},
				RecoveryLagMs: &lag, Throttled: Latencies{Count: 141}},
		}}
	// plain's and naive's figures where they differ from the library's.
	pb, pt, nb := &f.Clients[gPlain].Phases[1], &f.Clients[gPlain].Phases[2], &f.Clients[gNaive].Phases[1]
	pb.OK, pb.Success, pb.RetrySafeOK = 465, 0.93, 457
	pt.OK, pt.Success = 221, 0.5525
	nb.RetrySafeOK = 488
	if change != nil {
		change(f)
	}
	judgeTargets(f)
	return f
}

// The clients of goodRun.
const (
	gPlain = iota
	gNaive
	gHTTPX
	gTuned
)

func TestTargetsOfAGoodRun(t *testing.T) {
	got := judged(t, nil)
	require.Len(t, got, 2, "the library's clients only")
	for _, c := range []string{"httpx", "tuned"} {
		require.Len(t, got[c], len(targetIDs), c)
	}
	for id, tg := range got["tuned"] {
		assert.Equal(t, statusMet, tg.Status, "%s: %s", id, tg.Figure)
	}
	for id, tg := range got["httpx"] {
		if id == "after-open" || id == "open-p50" {
			assert.Equal(t, statusNA, tg.Status, "no breaker")
			assert.Contains(t, tg.Note, "no breaker")
			continue
		}
		assert.Equal(t, statusMet, tg.Status, "%s: %s", id, tg.Figure)
	}
	assert.Equal(t, "1.07", got["httpx"]["outage-ampl"].Figure)
	assert.Equal(t, "2.0ms", got["httpx"]["recovery"].Figure)
	assert.Equal(t, "recovery noticed within 1s of the outage's end", got["httpx"]["recovery"].Want)
	assert.Equal(t, "recovery noticed within 1s of the outage's end", got["tuned"]["recovery"].Want, "the recommended open duration")
	assert.Equal(t, "99.60% against 99.60%", got["httpx"]["brownout-naive"].Figure)
	assert.Equal(t, "61.50% against 55.25%", got["httpx"]["throttling"].Figure)
	assert.Equal(t, "13 (allowed 15 = 9 + 0 cut + 6)", got["httpx"]["connections"].Figure)
	assert.Equal(t, "15 (allowed 19 = 9 + 4 cut + 6)", got["tuned"]["connections"].Figure, "one per request cut in flight")
	assert.Equal(t, "100.00% (99.60% of all requests)", got["tuned"]["brownout"].Figure)
	assert.Equal(t, "0 of 141 held", got["tuned"]["429-held"].Figure)
}

func TestTargetsMissed(t *testing.T) {
	const connNote = "most of them in the recovery: 5 connections opened against plain's 1, with up to 7 requests on the wire at once against plain's 2"
	tests := []struct {
		name, client, id string
		change           func(f *Figures)
		status           string
		figure, note     string
	}{
		{"outage multiplied", "httpx", "outage-ampl", func(f *Figures) { f.Clients[gHTTPX].OutageAmplification = 1.21 }, statusNotMet, "1.21", ""},
		{"outage multiplied without a budget", "httpx", "outage-ampl", func(f *Figures) {
			f.Clients[gHTTPX].OutageAmplification, f.Setup.Budget = 3.98, "none"
		}, statusNotMet, "3.98", "-budget none: not httpx's default budget"},
		{"another budget, met", "httpx", "outage-ampl", func(f *Figures) { f.Setup.Budget = "grpc" }, statusMet, "1.07", ""},
		{"no outage, no amplification", "httpx", "outage-ampl", func(f *Figures) { f.Clients[gHTTPX].Phases = f.Clients[gHTTPX].Phases[:3] }, statusNA,
			"-", "no outage in this timeline"},
		{"one connection too many", "httpx", "connections", func(f *Figures) { f.Clients[gHTTPX].Connections = 16 }, statusNotMet,
			"16 (allowed 15 = 9 + 0 cut + 6)", connNote},
		{"over HTTP/2 a cut costs nothing", "tuned", "connections", func(f *Figures) { f.Protocol = "HTTP/2"; f.Clients[gTuned].Connections = 16 }, statusNotMet,
			"16 (allowed 15 = 9 + 6)", ""},
		{"no plain to compare with", "tuned", "connections", func(f *Figures) { f.Clients = f.Clients[1:] }, statusNA,
			"-", "plain did not run (-clients): nothing to compare with"},
		{"breaker never opened", "tuned", "after-open", func(f *Figures) { f.Clients[gTuned].AfterOpen = nil }, statusNotMet,
			"never opened", "the breaker never opened in the outage: it opens on 75% failures over at least 20 attempts"},
		{"breaker never opened, recovery still judged", "tuned", "recovery", func(f *Figures) { f.Clients[gTuned].AfterOpen = nil }, statusMet, "163ms", ""},
		{"slow recovery", "tuned", "recovery", func(f *Figures) { v := 1000.01; f.Clients[gTuned].RecoveryLagMs = &v }, statusNotMet, "1.00s", ""},
		{"slow recovery, changed flags", "tuned", "recovery", func(f *Figures) {
			v := 1000.01
			f.Clients[gTuned].RecoveryLagMs, f.Setup.HedgeMs, f.Setup.Limit, f.Setup.Recommended = &v, 500, "aimd", false
		}, statusNotMet, "1.00s", "-hedge 500ms, -limit aimd: not the recommended setup as it is"},
		{"a shorter open duration", "tuned", "recovery", func(f *Figures) { f.Setup.OpenMs, f.Setup.Recommended = 150, false }, statusNotMet, "163ms",
			"-open 150ms: not the recommended setup as it is"},
		{"slow recovery without a breaker", "httpx", "recovery", func(f *Figures) { v := 1000.01; f.Clients[gHTTPX].RecoveryLagMs = &v }, statusNotMet, "1.00s", ""},
		{"no success after the outage", "tuned", "recovery", func(f *Figures) { f.Clients[gTuned].RecoveryLagMs = nil }, statusNotMet, "no success after the outage", ""},
		{"outage last", "tuned", "recovery", func(f *Figures) { f.Clients[gTuned].Phases = f.Clients[gTuned].Phases[:4] }, statusNA, "-", "the outage is the last phase"},
		{"no outage", "tuned", "after-open", func(f *Figures) {
			f.Clients[gTuned].Phases = f.Clients[gTuned].Phases[:2]
		}, statusNA, "-", "no outage in this timeline"},
		{"no outage, no recovery", "httpx", "recovery", func(f *Figures) { f.Clients[gHTTPX].Phases = f.Clients[gHTTPX].Phases[:2] }, statusNA, "-", "no outage in this timeline"},
		{"slow refusals", "tuned", "open-p50", func(f *Figures) { f.Clients[gTuned].Rejected.P50Ms = 1 }, statusNotMet, "1.0ms", ""},
		{"amplification once open", "tuned", "after-open", func(f *Figures) { f.Clients[gTuned].AfterOpen.Amplification = 0.11 }, statusNotMet, "0.110", ""},
		{"brownout", "httpx", "brownout", func(f *Figures) {
			f.Clients[gHTTPX].Phases[1].RetrySafeOK = 487
			f.Clients[gHTTPX].Phases[1].Outcomes = map[string]int{"ok": 495, "deadline": 3, "status 503": 2}
		}, statusNotMet, "99.39% (99.60% of all requests)", "how the brownout's requests failed: deadline 3, status 503 2"},
		{"no brownout", "httpx", "brownout", func(f *Figures) { f.Clients[gHTTPX].Phases = f.Clients[gHTTPX].Phases[2:] }, statusNA, "-", "no brownout in this timeline"},
		{"below naive: its retries of POSTs without a key", "httpx", "brownout-naive", func(f *Figures) {
			// naive got 8 of 10 POSTs without a key through, httpx 4 (it
			// does not retry their 503s), and no fewer of the others.
			f.Clients[gNaive].Phases[1] = PhaseFigures{Phase: "brownout", Requests: 500, OK: 497, Success: 0.994, RetrySafe: 490, RetrySafeOK: 489}
			f.Clients[gHTTPX].Phases[1] = PhaseFigures{Phase: "brownout", Requests: 500, OK: 494, Success: 0.988, RetrySafe: 490, RetrySafeOK: 490}
		}, statusNotMet, "98.80% against 99.40%", "the naive loop sends POSTs without a key again after a 503, which a correct client never does (the first may have run): " +
			"of the brownout's 10, naive got 8 through, httpx 4; on the requests safe to retry, 100.00% against naive's 99.80%. " +
			"Meeting it takes retrying such POSTs: httpx.WithIdempotencyKeys() where the server honours keys"},
		{"below naive on the requests safe to retry too", "httpx", "brownout-naive", func(f *Figures) {
			f.Clients[gHTTPX].Phases[1] = PhaseFigures{Phase: "brownout", Requests: 500, OK: 494, Success: 0.988, RetrySafe: 490, RetrySafeOK: 486,
				Outcomes: map[string]int{"ok": 494, "budget empty": 4, "status 503": 2}}
		}, statusNotMet, "98.80% against 99.60%", "how the brownout's requests failed: budget empty 4, status 503 2"},
		{"no naive to compare with", "httpx", "brownout-naive", func(f *Figures) { f.Clients = slices.Delete(f.Clients, gNaive, gNaive+1) }, statusNA,
			"-", "naive did not run (-clients): nothing to compare with"},
		{"throttling below plain", "tuned", "throttling", func(f *Figures) {
			f.Clients[gTuned].Phases[2] = PhaseFigures{Phase: "throttling", Requests: 400, OK: 220, Success: 0.55,
				Outcomes: map[string]int{"ok": 220, "breaker open": 30, "status 429": 150}}
		}, statusNotMet, "55.00% against 55.25%", "how the throttling's requests failed: breaker open 30, status 429 150"},
		{"throttling, no plain", "tuned", "throttling", func(f *Figures) { f.Clients = f.Clients[1:] }, statusNA, "-", "plain did not run (-clients): nothing to compare with"},
		{"no throttling", "httpx", "throttling", func(f *Figures) { f.Clients[gHTTPX].Phases = f.Clients[gHTTPX].Phases[:2] }, statusNA, "-", "no throttling in this timeline"},
		{"a duplicate", "httpx", "dup-post", func(f *Figures) { f.Clients[gHTTPX].Total.Server = &ServerFigures{Duplicates: 1} }, statusNotMet, "1", ""},
		{"early", "httpx", "early", func(f *Figures) { f.Clients[gHTTPX].Total.Server = &ServerFigures{EarlyRetries: 2} }, statusNotMet, "2", ""},
		{"a 429 held", "httpx", "429-held", func(f *Figures) { f.Clients[gHTTPX].ThrottledHeld, f.Clients[gHTTPX].MaxHeldMs = 1, 61 }, statusNotMet, "1 of 139 held", "the longest kept 61ms"},
		{"no 429", "httpx", "429-held", func(f *Figures) { f.Clients[gHTTPX].Throttled.Count = 0 }, statusNA, "-", "no request ended with a 429"},
		{"invalid run", "httpx", "connections", func(f *Figures) { f.Fidelity.Valid = false; f.Clients[gHTTPX].Connections = 99 }, statusNotJudged,
			"99 (allowed 15 = 9 + 0 cut + 6)", connNote},
		{"invalid run, n/a stays", "httpx", "after-open", func(f *Figures) { f.Fidelity.Valid = false }, statusNA, "-", "no breaker: these targets are for a client with one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, ok := judged(t, tt.change)[tt.client][tt.id]
			require.True(t, ok)
			assert.Equal(t, tt.status, tg.Status)
			assert.Equal(t, tt.figure, tg.Figure)
			assert.Equal(t, tt.note, tg.Note)
		})
	}
}

// TestNoTargetsWithURL: the targets are stated for the built-in upstream.
func TestNoTargetsWithURL(t *testing.T) {
	got := judged(t, func(f *Figures) { f.Upstream = "http://example.test" })
	assert.Empty(t, got)
	var buf bytes.Buffer
	writeTargets(&buf, &Figures{Upstream: "http://example.test"})
	assert.Equal(t, "\ntargets: none; they are stated for the built-in upstream's scenario, and -url measures yours\n", buf.String())
}

func TestTargetsPrinted(t *testing.T) {
	var buf bytes.Buffer
	writeTargets(&buf, goodRun(func(f *Figures) {
		f.Clients[gHTTPX].Connections = 16
		f.Setup.HedgeMs, f.Setup.Recommended = 500, false
	}))
	assert.Equal(t, `
targets, httpx:
  met        outage: at most 1.2 upstream requests per request: 1.07
  n/a        no breaker: these targets are for a client with one (after-open, open-p50)
  met        recovery noticed within 1s of the outage's end: 2.0ms
  met        brownout: at least 99.5% of the requests safe to retry succeed: 100.00% (99.60% of all requests)
  met        brownout: success of all requests no lower than the naive loop's: 99.60% against 99.60%
  met        throttling: success no lower than plain's: 61.50% against 55.25%
  met        no request sooner than a Retry-After allowed: 0
  met        a 429 whose hint cannot fit the deadline is returned at once (none kept 50ms or more): 0 of 139 held
  met        no POST executed twice: 0
  NOT MET    connections: at most plain's + 1 per request cut in flight + 6 for retries arriving together: 16 (allowed 15 = 9 + 0 cut + 6); most of them in the recovery: 5 connections opened against plain's 1, with up to 7 requests on the wire at once against plain's 2

targets, tuned: (-hedge 500ms: not the recommended setup as it is)
  met        outage: at most 1.2 upstream requests per request: 0.07
  met        after the breaker opened in the outage: at most 0.1 upstream requests per request: 0.008
  met        requests refused while it was open: p50 under 1ms: 10µs
  met        recovery noticed within 1s of the outage's end: 163ms
  met        brownout: at least 99.5% of the requests safe to retry succeed: 100.00% (99.60% of all requests)
  met        brownout: success of all requests no lower than the naive loop's: 99.60% against 99.60%
  met        throttling: success no lower than plain's: 61.50% against 55.25%
  met        no request sooner than a Retry-After allowed: 0
  met        a 429 whose hint cannot fit the deadline is returned at once (none kept 50ms or more): 0 of 141 held
  met        no POST executed twice: 0
  met        connections: at most plain's + 1 per request cut in flight + 6 for retries arriving together: 15 (allowed 19 = 9 + 4 cut + 6)
`, buf.String())
}
