package main

import (
	"bytes"
	"testing"
	"time"

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
			{Phase: "brownout", Requests: 500, Success: 0.996, RetrySafe: 490, RetrySafeOK: 490, Dials: 7, PeakInFlight: 6},
			{Phase: "throttling"},
			{Phase: "outage"},
			{Phase: "recovery", Dials: recoveryDials, PeakInFlight: recoveryPeak},
		}
	}
	server := &ServerFigures{}
	lag := 163.0
	f := &Figures{Upstream: "built-in", Protocol: "HTTP/1.1", Fidelity: Fidelity{Valid: true}, Clients: []ClientFigures{
		{Name: "plain", Connections: 9, Phases: phases(1, 2), Total: PhaseFigures{Server: server}},
		{Name: "httpx", Library: true, Connections: 13, Phases: phases(5, 7), Total: PhaseFigures{Server: server},
			Throttled: Latencies{Count: 139}},
		{Name: "tuned", Library: true, Breaker: true, Connections: 15, Cut: 4, Phases: phases(1, 2), Total: PhaseFigures{Server: server},
			AfterOpen: &AfterOpen{Amplification: 0.008}, Rejected: Latencies{Count: 600, P50Ms: 0.01}, RecoveryLagMs: &lag,
			Throttled: Latencies{Count: 141}},
	}}
	if change != nil {
		change(f)
	}
	judgeTargets(f, time.Second)
	return f
}

func TestTargetsOfAGoodRun(t *testing.T) {
	got := judged(t, nil)
	require.Len(t, got, 2, "the library's clients only")
	for _, c := range []string{"httpx", "tuned"} {
		require.Len(t, got[c], len(targetIDs), c)
	}
	for id, tg := range got["tuned"] {
		assert.Equal(t, statusMet, tg.Status, "%s: %s", id, tg.Figure)
	}
	for _, id := range []string{"after-open", "open-p50", "recovery"} {
		assert.Equal(t, statusNA, got["httpx"][id].Status, "no breaker")
		assert.Contains(t, got["httpx"][id].Note, "no breaker")
	}
	assert.Equal(t, "13 (allowed 15 = 9 + 0 cut + 6)", got["httpx"]["connections"].Figure)
	assert.Equal(t, statusMet, got["httpx"]["connections"].Status)
	assert.Equal(t, "15 (allowed 19 = 9 + 4 cut + 6)", got["tuned"]["connections"].Figure, "one per request cut in flight")
	assert.Equal(t, "100.00% (99.60% of all requests)", got["tuned"]["brownout"].Figure)
	assert.Equal(t, "0 of 141 held", got["tuned"]["429-held"].Figure)
}

func TestTargetsMissed(t *testing.T) {
	tests := []struct {
		name, client, id string
		change           func(f *Figures)
		status           string
		figure, note     string
	}{
		{"one connection too many", "httpx", "connections", func(f *Figures) { f.Clients[1].Connections = 16 }, statusNotMet,
			"16 (allowed 15 = 9 + 0 cut + 6)", "most of them in the recovery: 5 connections opened against plain's 1, with up to 7 requests on the wire at once against plain's 2"},
		{"over HTTP/2 a cut costs nothing", "tuned", "connections", func(f *Figures) { f.Protocol = "HTTP/2"; f.Clients[2].Connections = 16 }, statusNotMet,
			"16 (allowed 15 = 9 + 6)", ""},
		{"no plain to compare with", "tuned", "connections", func(f *Figures) { f.Clients = f.Clients[1:] }, statusNA,
			"-", "plain did not run (-clients): nothing to compare with"},
		{"breaker never opened", "tuned", "after-open", func(f *Figures) { f.Clients[2].AfterOpen = nil }, statusNotMet,
			"never opened", "the breaker never opened in the outage: it opens on 75% failures over at least 20 attempts"},
		{"then no recovery to notice", "tuned", "recovery", func(f *Figures) { f.Clients[2].AfterOpen = nil }, statusNA, "-", "the breaker never opened"},
		{"slow recovery", "tuned", "recovery", func(f *Figures) { v := 1000.01; f.Clients[2].RecoveryLagMs = &v }, statusNotMet, "1.00s", ""},
		{"no success after the outage", "tuned", "recovery", func(f *Figures) { f.Clients[2].RecoveryLagMs = nil }, statusNotMet, "no success after the outage", ""},
		{"outage last", "tuned", "recovery", func(f *Figures) { f.Clients[2].Phases = f.Clients[2].Phases[:4] }, statusNA, "-", "the outage is the last phase"},
		{"no outage", "tuned", "after-open", func(f *Figures) {
			f.Clients[2].Phases = f.Clients[2].Phases[:2]
		}, statusNA, "-", "no outage in this timeline"},
		{"slow refusals", "tuned", "open-p50", func(f *Figures) { f.Clients[2].Rejected.P50Ms = 1 }, statusNotMet, "1.0ms", ""},
		{"amplification once open", "tuned", "after-open", func(f *Figures) { f.Clients[2].AfterOpen.Amplification = 0.11 }, statusNotMet, "0.110", ""},
		{"brownout", "httpx", "brownout", func(f *Figures) {
			f.Clients[1].Phases[1].RetrySafeOK = 487
			f.Clients[1].Phases[1].Outcomes = map[string]int{"ok": 495, "deadline": 3, "status 503": 2}
		}, statusNotMet, "99.39% (99.60% of all requests)", "how the brownout's requests failed: deadline 3, status 503 2"},
		{"no brownout", "httpx", "brownout", func(f *Figures) { f.Clients[1].Phases = f.Clients[1].Phases[2:] }, statusNA, "-", "no brownout in this timeline"},
		{"a duplicate", "httpx", "dup-post", func(f *Figures) { f.Clients[1].Total.Server = &ServerFigures{Duplicates: 1} }, statusNotMet, "1", ""},
		{"early", "httpx", "early", func(f *Figures) { f.Clients[1].Total.Server = &ServerFigures{EarlyRetries: 2} }, statusNotMet, "2", ""},
		{"a 429 held", "httpx", "429-held", func(f *Figures) { f.Clients[1].ThrottledHeld, f.Clients[1].MaxHeldMs = 1, 61 }, statusNotMet, "1 of 139 held", "the longest kept 61ms"},
		{"no 429", "httpx", "429-held", func(f *Figures) { f.Clients[1].Throttled.Count = 0 }, statusNA, "-", "no request ended with a 429"},
		{"invalid run", "httpx", "connections", func(f *Figures) { f.Fidelity.Valid = false; f.Clients[1].Connections = 99 }, statusNotJudged,
			"99 (allowed 15 = 9 + 0 cut + 6)", "most of them in the recovery: 5 connections opened against plain's 1, with up to 7 requests on the wire at once against plain's 2"},
		{"invalid run, n/a stays", "httpx", "after-open", func(f *Figures) { f.Fidelity.Valid = false }, statusNA, "-", "no breaker: the outage targets are for a client with one"},
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
	writeTargets(&buf, goodRun(func(f *Figures) { f.Clients[1].Connections = 16 }))
	assert.Equal(t, `
targets, httpx:
  n/a        no breaker: the outage targets are for a client with one (after-open, open-p50, recovery)
  met        brownout: at least 99.5% of the requests safe to retry succeed: 100.00% (99.60% of all requests)
  met        no POST executed twice: 0
  met        no request sooner than a Retry-After allowed: 0
  met        a 429 whose hint cannot fit the deadline is returned at once (none kept 50ms or more): 0 of 139 held
  NOT MET    connections: at most plain's + 1 per request cut in flight + 6 for retries arriving together: 16 (allowed 15 = 9 + 0 cut + 6); most of them in the recovery: 5 connections opened against plain's 1, with up to 7 requests on the wire at once against plain's 2

targets, tuned:
  met        after the breaker opened in the outage: at most 0.1 upstream requests per request: 0.008
  met        requests refused while it was open: p50 under 1ms: 10µs
  met        recovery noticed within one open duration (1s) of the outage's end: 163ms
  met        brownout: at least 99.5% of the requests safe to retry succeed: 100.00% (99.60% of all requests)
  met        no POST executed twice: 0
  met        no request sooner than a Retry-After allowed: 0
  met        a 429 whose hint cannot fit the deadline is returned at once (none kept 50ms or more): 0 of 141 held
  met        connections: at most plain's + 1 per request cut in flight + 6 for retries arriving together: 15 (allowed 19 = 9 + 4 cut + 6)
`, buf.String())
}
