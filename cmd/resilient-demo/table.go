package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// writeTables prints a table per client and phase, then one line per
// client with the figures that matter most.
func writeTables(w io.Writer, cfg *config, f *Figures) {
	fmt.Fprintf(w, "resilient-demo: seed %d, %d callers at %g req/s per client, %v deadline per request\n",
		f.Seed, f.Callers, f.Rate, cfg.timeout)
	up := "built-in, one instance per client, same seed; outage: " + f.Outage
	if f.Upstream != "built-in" {
		up = f.Upstream + " (shared; counted on the client side)"
	}
	fmt.Fprintf(w, "upstream: %s; %s\ntimeline: %s\n", up, f.Protocol, f.Timeline)
	if f.Interrupts {
		fmt.Fprintln(w, "interrupted: the figures cover the part that ran")
	}
	server := f.Upstream == "built-in"
	for _, c := range f.Clients {
		fmt.Fprintf(w, "\n%s: %s\n", c.Name, c.Description)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		hdr := "phase\treqs\tsuccess\tp50\tp99\tmax\tupstream\tampl\tbreaker\t"
		if server {
			hdr += "early\tdup POST\t"
		}
		fmt.Fprintln(tw, hdr)
		for _, p := range append(c.Phases, c.Total) {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%.2f\t%d\t", p.Phase, p.Requests, pct(p.Success, p.Requests),
				msStr(p.P50Ms), msStr(p.P99Ms), msStr(p.MaxMs), p.Upstream, p.Amplification, p.Transitions)
			if server {
				fmt.Fprintf(tw, "%d\t%d\t", p.Server.EarlyRetries, p.Server.Duplicates)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		fmt.Fprintf(w, "  %s\n", strings.Join(notes(c), "; "))
	}

	fmt.Fprintln(w, "\nsummary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "client\tsuccess\tbrownout\toutage ampl\tafter open\topen p50\trecovery\t429 p50\t429 held\t"
	if server {
		hdr += "early\tdup POST\t"
	}
	fmt.Fprintln(tw, hdr+"conns\tcut\t")
	for _, c := range f.Clients {
		brown := "-"
		for _, p := range c.Phases {
			if p.Phase == "brownout" {
				brown = pct(p.Success, p.Requests) + " / " + pct(ratio(p.RetrySafeOK, p.RetrySafe), p.RetrySafe)
				break
			}
		}
		afterOpen, openP50 := "-", "-"
		if c.AfterOpen != nil {
			afterOpen = fmt.Sprintf("%.3f", c.AfterOpen.Amplification)
			openP50 = msStr(c.Rejected.P50Ms)
		}
		rec := "-"
		if c.RecoveryLagMs != nil {
			rec = msStr(*c.RecoveryLagMs)
		}
		thr, late := "-", "-"
		if c.Throttled.Count > 0 {
			thr, late = msStr(c.Throttled.P50Ms), fmt.Sprint(c.ThrottledHeld)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t", c.Name, pct(c.Total.Success, c.Total.Requests), brown,
			c.OutageAmplification, afterOpen, openP50, rec, thr, late)
		if c.Total.Server != nil {
			fmt.Fprintf(tw, "%d\t%d\t", c.Total.Server.EarlyRetries, c.Total.Server.Duplicates)
		}
		fmt.Fprintf(tw, "%d\t%d\t\n", c.Connections, c.Cut)
	}
	tw.Flush()
	fmt.Fprint(w, `
reqs: logical requests started in the phase; upstream: requests sent on the wire (or connections
tried) in the phase; ampl: upstream / reqs; breaker: breaker transitions; early: requests that came
back sooner than a Retry-After allowed; dup POST: POSTs executed twice; after open: amplification
in the outage once the breaker opened; brownout: success of all requests / of those safe to retry
(GETs, POSTs with an Idempotency-Key); open p50: latency of the requests it refused; recovery: from
the end of the outage to the first success; 429 p50: latency of requests answered with a 429;
429 held: those of them whose 429 the client kept 50ms or more before returning it; conns:
connections opened; cut: requests the client cancelled on the wire before their response came (a
hedge that lost, a timeout), each of which closes its HTTP/1.1 connection.
`)
	writeTargets(w, cfg, f)
}

func pct(rate float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*rate)
}

func msStr(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0fms", v)
	case v >= 1:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fµs", v*1000)
}

// notes is a client's one-line summary: how its requests ended, its
// connections and its breaker.
func notes(c ClientFigures) []string {
	var out []string
	var parts []string
	for _, k := range sortedKeys(c.Total.Outcomes) {
		if k != "ok" {
			parts = append(parts, fmt.Sprintf("%s %d", k, c.Total.Outcomes[k]))
		}
	}
	if len(parts) > 0 {
		out = append(out, "failures: "+strings.Join(parts, ", "))
	}
	out = append(out, fmt.Sprintf("connections opened %d", c.Connections))
	if c.Cut > 0 {
		out = append(out, fmt.Sprintf("requests cancelled on the wire %d", c.Cut))
	}
	if len(c.Transitions) > 0 {
		var ts []string
		for _, t := range c.Transitions {
			ts = append(ts, fmt.Sprintf("%.2fs %s", t.At.Seconds(), t.To))
		}
		out = append(out, "breaker: "+strings.Join(ts, ", "))
	}
	return out
}

// writeTargets checks the library's clients against the targets the README
// states for the default scenario, and prints each one, met or not, with
// the figure measured. Figures counted by the upstream are checked only
// against the built-in one.
func writeTargets(w io.Writer, cfg *config, f *Figures) {
	var plain *ClientFigures
	for i := range f.Clients {
		if f.Clients[i].Name == "plain" {
			plain = &f.Clients[i]
		}
	}
	for _, c := range f.Clients {
		if !slices.Contains(libraryClients(), c.Name) {
			continue
		}
		fmt.Fprintf(w, "\ntargets, %s:\n", c.Name)
		check := func(ok bool, format string, args ...any) {
			mark := "met    "
			if !ok {
				mark = "NOT MET"
			}
			fmt.Fprintf(w, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
		}
		switch {
		case !hasBreaker(c.Name):
			fmt.Fprintf(w, "  n/a      no breaker: the outage targets are for a client with one\n")
		case c.AfterOpen == nil:
			check(false, "the breaker never opened in the outage")
		default:
			check(c.AfterOpen.Amplification <= 0.1, "after the breaker opened in the outage: %.3f upstream requests per request (at most 0.1)",
				c.AfterOpen.Amplification)
			check(c.Rejected.P50Ms < 1, "requests refused while it was open: p50 %s (under 1ms)", msStr(c.Rejected.P50Ms))
			lag := "no success after the outage"
			if c.RecoveryLagMs != nil {
				lag = msStr(*c.RecoveryLagMs) + " after the outage"
			}
			check(c.RecoveryLagMs != nil && *c.RecoveryLagMs <= ms(cfg.openFor), "recovery noticed %s (within one open duration, %v)", lag, cfg.openFor)
		}
		for _, p := range c.Phases {
			if p.Phase == "brownout" {
				// Decision: the target is read on every request, the POSTs
				// without an Idempotency-Key included, although no client
				// may send one of them again after a 503; the share of
				// those safe to retry is shown beside it.
				check(p.Success >= 0.995, "brownout success %s of all requests (at least 99.5%%); %s of those safe to retry",
					pct(p.Success, p.Requests), pct(ratio(p.RetrySafeOK, p.RetrySafe), p.RetrySafe))
				break
			}
		}
		if s := c.Total.Server; s != nil {
			check(s.Duplicates == 0, "%d duplicate executions of POSTs (none)", s.Duplicates)
			check(s.EarlyRetries == 0, "%d requests sooner than a Retry-After allowed (none)", s.EarlyRetries)
		}
		if c.Throttled.Count > 0 {
			check(c.ThrottledHeld == 0, "%d of %d 429s kept 50ms or more before they were returned (none: a hint that cannot fit the deadline returns the 429 at once)",
				c.ThrottledHeld, c.Throttled.Count)
		}
		if plain != nil {
			check(c.Connections <= plain.Connections, "%d connections opened; plain opened %d (at most as many); %d requests cancelled on the wire",
				c.Connections, plain.Connections, c.Cut)
		}
	}
}
