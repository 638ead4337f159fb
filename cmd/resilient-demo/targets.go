package main

import (
	"fmt"
	"strings"
	"time"
)

// Target is one promise of the library checked on a run against the
// built-in upstream, for one of the library's clients.
type Target struct {
	// ID names the promise, the same for every client ("after-open", …).
	ID     string `json:"id"`
	Client string `json:"client"`
	// Want is the promise, Figure what the run measured.
	Want   string `json:"target"`
	Figure string `json:"figure"`
	Status string `json:"status"` // one of the status… constants
	// Note says why a target does not apply, or what kept it from being
	// met.
	Note string `json:"note,omitempty"`
}

// A target's status.
const (
	statusMet       = "met"
	statusNotMet    = "NOT MET"
	statusNA        = "n/a"
	statusNotJudged = "not judged"
)

// targetIDs lists the targets in the order they are printed. They are
// the targets of httpx's defaults (outage amplification, brownout,
// throttling, recovery, duplicate POSTs), the recommended breaker's (once
// open, refusals, recovery) and the lab's own (429s returned at once,
// connections).
var targetIDs = []string{
	"outage-ampl", "after-open", "open-p50", "recovery",
	"brownout", "brownout-naive", "throttling", "early", "429-held",
	"dup-post", "connections",
}

// maxOutageAmplification is the most upstream requests per logical request
// a library client may send during an outage: retries may add a
// fifth, where 4 attempts into a dead upstream would make 4.
const maxOutageAmplification = 1.2

// recoveryBound is how soon after the outage's end a client without a
// breaker must serve a success. A client with one may take its
// open duration: its probe waits it out.
const recoveryBound = time.Second

// retryBurst is how many connections beyond plain's (and beyond one per
// request cut in flight) the connection target allows a retrying client.
//
// Decision: a correct client that retries sends, at some moments, more
// requests at once than plain does, and over HTTP/1.1 each request on the
// wire needs its own connection: the retries of the requests that failed
// in the outage arrive together with new requests when it ends (at about
// four times plain's rate). In 17 valid default runs (2026-12-03), plain
// opened 9 to 11 connections; httpx opened 0 to 4 more than plain (the
// extra ones in the recovery, where it had up to 6 requests on the wire at
// once against plain's 1 to 3), tuned 3 fewer to as many as plain's plus
// its cuts. 6 leaves room for the spread. What it does not allow is a
// connection per request: a client that fails to drain and close what it
// discards opens hundreds.
const retryBurst = 6

// judgeTargets checks the library's clients in f against their targets.
// With -url there are none: they are stated for the built-in scenario.
// When the run is not valid, every target is listed with its figure but
// not judged.
func judgeTargets(f *Figures) {
	if !f.builtIn() {
		return
	}
	peers := map[string]*ClientFigures{}
	for i := range f.Clients {
		peers[f.Clients[i].Name] = &f.Clients[i]
	}
	for _, c := range f.Clients {
		if c.Library {
			f.Targets = append(f.Targets, clientTargets(f, c, peers["plain"], peers["naive"])...)
		}
	}
	if !f.Fidelity.Valid {
		for i := range f.Targets {
			if f.Targets[i].Status != statusNA {
				f.Targets[i].Status = statusNotJudged
			}
		}
	}
}

// departure says how the flags set client c apart from what its column
// stands for (httpx's defaults, the recommended setup); "" when they do
// not.
func departure(f *Figures, c string) string {
	s := f.Setup
	var flags []string
	switch c {
	case "httpx":
		if s.Budget != "" && s.Budget != budgetAdaptive {
			return "-budget " + s.Budget + ": not httpx's default budget"
		}
	case "tuned":
		if s.OpenMs > 0 && s.OpenMs != ms(recommendedOpen) {
			flags = append(flags, "-open "+msDuration(s.OpenMs))
		}
		if s.HedgeMs > 0 {
			flags = append(flags, "-hedge "+msDuration(s.HedgeMs))
		}
		if s.Limit != "" && s.Limit != limitNone {
			flags = append(flags, "-limit "+s.Limit)
		}
	}
	if len(flags) == 0 {
		return ""
	}
	return strings.Join(flags, ", ") + ": not the recommended setup as it is"
}

// msDuration writes milliseconds as a time.Duration does: "1s", "500ms".
func msDuration(v float64) string { return time.Duration(v * float64(time.Millisecond)).String() }

func clientTargets(f *Figures, c ClientFigures, plain, naive *ClientFigures) []Target {
	var out []Target
	away := departure(f, c.Name)
	add := func(id, want string, met bool, figure, note string) {
		st := statusMet
		if !met {
			st = statusNotMet
			if away != "" {
				note = strings.TrimPrefix(note+"; "+away, "; ")
			}
		}
		out = append(out, Target{ID: id, Client: c.Name, Want: want, Figure: figure, Status: st, Note: note})
	}
	na := func(id, want, note string) {
		out = append(out, Target{ID: id, Client: c.Name, Want: want, Figure: "-", Status: statusNA, Note: note})
	}
	phaseOf := func(c *ClientFigures, name string) *PhaseFigures {
		if c == nil {
			return nil
		}
		for i := range c.Phases {
			if c.Phases[i].Phase == name {
				return &c.Phases[i]
			}
		}
		return nil
	}
	phase := func(name string) *PhaseFigures { return phaseOf(&c, name) }

	// The outage.
	wantAmpl := fmt.Sprintf("outage: at most %g upstream requests per request", maxOutageAmplification)
	wantOpen := "after the breaker opened in the outage: at most 0.1 upstream requests per request"
	wantP50 := "requests refused while it was open: p50 under 1ms"
	bound := recoveryBound
	if c.Breaker && f.Setup.OpenMs > 0 {
		bound = time.Duration(f.Setup.OpenMs * float64(time.Millisecond))
	}
	wantRec := fmt.Sprintf("recovery noticed within %v of the outage's end", bound)
	out0 := phase("outage")
	if out0 == nil {
		na("outage-ampl", wantAmpl, "no outage in this timeline")
	} else {
		add("outage-ampl", wantAmpl, c.OutageAmplification <= maxOutageAmplification, fmt.Sprintf("%.2f", c.OutageAmplification), "")
	}
	switch {
	case !c.Breaker:
		for _, t := range [][2]string{{"after-open", wantOpen}, {"open-p50", wantP50}} {
			na(t[0], t[1], "no breaker: these targets are for a client with one")
		}
	case out0 == nil:
		for _, t := range [][2]string{{"after-open", wantOpen}, {"open-p50", wantP50}} {
			na(t[0], t[1], "no outage in this timeline")
		}
	case c.AfterOpen == nil:
		note := "the breaker never opened in the outage: it opens on 75% failures over at least 20 attempts"
		add("after-open", wantOpen, false, "never opened", note)
		add("open-p50", wantP50, false, "never opened", note)
	default:
		add("after-open", wantOpen, c.AfterOpen.Amplification <= 0.1, fmt.Sprintf("%.3f", c.AfterOpen.Amplification), "")
		add("open-p50", wantP50, c.Rejected.P50Ms < 1, msStr(c.Rejected.P50Ms), "")
	}
	switch {
	case out0 == nil:
		na("recovery", wantRec, "no outage in this timeline")
	case out0 == &c.Phases[len(c.Phases)-1]:
		na("recovery", wantRec, "the outage is the last phase")
	case c.RecoveryLagMs == nil:
		add("recovery", wantRec, false, "no success after the outage", "")
	default:
		add("recovery", wantRec, *c.RecoveryLagMs <= ms(bound), msStr(*c.RecoveryLagMs), "")
	}

	// Decision: the brownout target is read on the requests safe to retry
	// (GETs, POSTs with an Idempotency-Key). A POST without a key that got
	// a 503 may not be sent again by any correct client, so the share of
	// all requests that can succeed depends on the mix and the seed, not
	// on the client; it is shown beside the figure, and compared with the
	// naive loop's, which does send them again.
	wantBrown := "brownout: at least 99.5% of the requests safe to retry succeed"
	wantNaive := "brownout: success of all requests no lower than the naive loop's"
	b := phase("brownout")
	if b != nil && b.RetrySafe > 0 {
		safe := ratio(b.RetrySafeOK, b.RetrySafe)
		note := ""
		if safe < 0.995 {
			note = "how the brownout's requests failed: " + failures(b.Outcomes)
		}
		add("brownout", wantBrown, safe >= 0.995, fmt.Sprintf("%s (%s of all requests)", pct(safe, b.RetrySafe), pct(b.Success, b.Requests)), note)
	} else {
		na("brownout", wantBrown, "no brownout in this timeline")
	}
	switch nb := phaseOf(naive, "brownout"); {
	case b == nil:
		na("brownout-naive", wantNaive, "no brownout in this timeline")
	case nb == nil:
		na("brownout-naive", wantNaive, "naive did not run (-clients): nothing to compare with")
	default:
		note := ""
		if b.Success < nb.Success {
			note = belowNaive(c.Name, *b, *nb)
		}
		add("brownout-naive", wantNaive, b.Success >= nb.Success, pct(b.Success, b.Requests)+" against "+pct(nb.Success, nb.Requests), note)
	}

	// The throttling.
	wantThrottle := "throttling: success no lower than plain's"
	switch th, pt := phase("throttling"), phaseOf(plain, "throttling"); {
	case th == nil:
		na("throttling", wantThrottle, "no throttling in this timeline")
	case pt == nil:
		na("throttling", wantThrottle, "plain did not run (-clients): nothing to compare with")
	default:
		note := ""
		if th.Success < pt.Success {
			note = "how the throttling's requests failed: " + failures(th.Outcomes)
		}
		add("throttling", wantThrottle, th.Success >= pt.Success, pct(th.Success, th.Requests)+" against "+pct(pt.Success, pt.Requests), note)
	}
	s := c.Total.Server
	if s == nil {
		return out
	}
	add("early", "no request sooner than a Retry-After allowed", s.EarlyRetries == 0, fmt.Sprint(s.EarlyRetries), "")
	wantHeld := "a 429 whose hint cannot fit the deadline is returned at once (none kept 50ms or more)"
	if c.Throttled.Count > 0 {
		note := ""
		if c.ThrottledHeld > 0 {
			note = "the longest kept " + msStr(c.MaxHeldMs)
		}
		add("429-held", wantHeld, c.ThrottledHeld == 0, fmt.Sprintf("%d of %d held", c.ThrottledHeld, c.Throttled.Count), note)
	} else {
		na("429-held", wantHeld, "no request ended with a 429")
	}
	add("dup-post", "no POST executed twice", s.Duplicates == 0, fmt.Sprint(s.Duplicates), "")

	cost, per := c.Cut, "+ 1 per request cut in flight "
	if f.Protocol != "HTTP/1.1" {
		cost, per = 0, ""
	}
	wantConns := fmt.Sprintf("connections: at most plain's %s+ %d for retries arriving together", per, retryBurst)
	if plain == nil {
		na("connections", wantConns, "plain did not run (-clients): nothing to compare with")
	} else {
		allowed := plain.Connections + cost + retryBurst
		fig := fmt.Sprintf("%d (allowed %d = %d", c.Connections, allowed, plain.Connections)
		if per != "" {
			fig += fmt.Sprintf(" + %d cut", cost)
		}
		fig += fmt.Sprintf(" + %d)", retryBurst)
		note := ""
		if c.Connections > allowed {
			note = connectionsNote(c, *plain)
		}
		add("connections", wantConns, c.Connections <= allowed, fig, note)
	}
	return out
}

// belowNaive says why a library client's brownout success is below the
// naive loop's. Where it is because the naive loop sent POSTs without a key
// again after a 503, which a correct client never does (they may have run),
// it says so and what meeting the target would take; otherwise, how the
// client's requests failed.
func belowNaive(name string, b, nb PhaseFigures) string {
	safe, nsafe := ratio(b.RetrySafeOK, b.RetrySafe), ratio(nb.RetrySafeOK, nb.RetrySafe)
	unkeyed := b.Requests - b.RetrySafe
	got, ngot := b.OK-b.RetrySafeOK, nb.OK-nb.RetrySafeOK
	if safe < nsafe || ngot <= got {
		return "how the brownout's requests failed: " + failures(b.Outcomes)
	}
	return fmt.Sprintf("the naive loop sends POSTs without a key again after a 503, which a correct client never does (the first may have run): "+
		"of the brownout's %d, naive got %d through, %s %d; on the requests safe to retry, %s against naive's %s. "+
		"Meeting it takes retrying such POSTs: httpx.WithIdempotencyKeys() where the server honours keys",
		unkeyed, ngot, name, got, pct(safe, b.RetrySafe), pct(nsafe, nb.RetrySafe))
}

// failures lists how requests ended, but for successes: "deadline 37,
// status 503 2".
func failures(outcomes map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(outcomes) {
		if k != "ok" {
			parts = append(parts, fmt.Sprintf("%s %d", k, outcomes[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// connectionsNote explains where a client opened more connections than
// plain: the phase where it opened the most beyond plain's, with the most
// requests each had on the wire at once there.
func connectionsNote(c, plain ClientFigures) string {
	best, excess := -1, 0
	for i := range c.Phases {
		if i < len(plain.Phases) {
			if d := c.Phases[i].Dials - plain.Phases[i].Dials; d > excess {
				best, excess = i, d
			}
		}
	}
	if best < 0 {
		return ""
	}
	p, q := c.Phases[best], plain.Phases[best]
	return fmt.Sprintf("most of them in the %s: %d connections opened against plain's %d, with up to %d requests on the wire at once against plain's %d",
		p.Phase, p.Dials, q.Dials, p.PeakInFlight, q.PeakInFlight)
}
