package main

import (
	"fmt"
	"io"
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
	fmt.Fprintf(w, "upstream: %s\ntimeline: %s\n", up, f.Timeline)
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
	fmt.Fprintln(tw, hdr+"conns\t")
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
		fmt.Fprintf(tw, "%d\t\n", c.Connections)
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
connections opened.
`)
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
	if len(c.Transitions) > 0 {
		var ts []string
		for _, t := range c.Transitions {
			ts = append(ts, fmt.Sprintf("%.2fs %s", t.At.Seconds(), t.To))
		}
		out = append(out, "breaker: "+strings.Join(ts, ", "))
	}
	return out
}
