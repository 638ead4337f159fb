package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// writeTables prints a table per client and phase, then one line per
// client with the figures that matter most, then the targets. A run that
// is not valid opens and ends with a warning that says why.
func writeTables(w io.Writer, cfg *config, f *Figures) {
	writeBanner(w, f)
	fmt.Fprintf(w, "resilient-demo: seed %d, %d callers at %g req/s per client, %v deadline per request\n",
		f.Seed, f.Callers, f.Rate, cfg.timeout)
	up := "built-in, one instance per client, same seed; " + upstreamFaults(f)
	if !f.builtIn() {
		up = f.Upstream + " (shared; counted on the client side)"
	}
	fmt.Fprintf(w, "upstream: %s; %s\ntimeline: %s\n", up, f.Protocol, f.Timeline)
	fmt.Fprintf(w, "lab fidelity: %s\n", fidelityLine(f))
	if f.Interrupts {
		fmt.Fprintln(w, "interrupted: the figures cover the part that ran")
	}
	server := f.builtIn()
	for _, c := range f.Clients {
		fmt.Fprintf(w, "\n%s: %s\n", c.Name, c.Description)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		hdr := "phase\treqs\tsuccess\tp50\tp99\tmax\tupstream\tampl\tbreaker\tconns\t"
		if server {
			hdr += "early\tdup POST\t"
		}
		fmt.Fprintln(tw, hdr)
		for _, p := range append(c.Phases, c.Total) {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%.2f\t%d\t%d\t", p.Phase, p.Requests, pct(p.Success, p.Requests),
				msStr(p.P50Ms), msStr(p.P99Ms), msStr(p.MaxMs), p.Upstream, p.Amplification, p.Transitions, p.Dials)
			if server && p.Server != nil {
				fmt.Fprintf(tw, "%d\t%d\t", p.Server.EarlyRetries, p.Server.Duplicates)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		fmt.Fprintf(w, "  %s\n", strings.Join(notes(c), "; "))
	}

	fmt.Fprint(w, "\nsummary")
	if !f.Fidelity.Valid {
		fmt.Fprint(w, " (INVALID RUN: these figures describe the machine, not the clients)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := summaryColumns(f)
	for _, col := range cols {
		fmt.Fprintf(tw, "%s\t", col.name)
	}
	fmt.Fprintln(tw)
	for _, c := range f.Clients {
		for _, col := range cols {
			fmt.Fprintf(tw, "%s\t", col.value(c))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, col := range cols {
		if col.legend != "" {
			fmt.Fprintf(w, "  %-13s%s\n", col.name+":", col.legend)
		}
	}
	if server {
		fmt.Fprintf(w, "\n%s\n", retryAfterNote)
	}
	writeTargets(w, f)
	if !f.Fidelity.Valid {
		fmt.Fprintln(w)
		writeBanner(w, f)
	}
}

// upstreamFaults says what the flags set of the built-in upstream's faults.
func upstreamFaults(f *Figures) string {
	return fmt.Sprintf("brownout: %.4g%% 503s; outage: %s", 100*f.Brownout, f.Outage)
}

// retryAfterNote says why the library's clients are slower than plain in
// the throttling phase.
const retryAfterNote = `Throttling latency: a client that honours Retry-After waits the hint (1s, 2s) before its retry
when the deadline leaves room for it, and then succeeds; plain and a client that cannot wait
return the 429 at once. The higher p99 in that phase is the cost of the successes it buys.`

// writeBanner warns, when the run is not valid, that its figures describe
// the machine, with every figure out of tolerance.
func writeBanner(w io.Writer, f *Figures) {
	if f.Fidelity.Valid {
		return
	}
	fmt.Fprint(w, `!! INVALID RUN: the lab fell behind its own schedule, so these figures describe the load on
!! this machine, not the clients: they are not the library's, and no target is judged on them.
`)
	for _, p := range f.Fidelity.Problems {
		fmt.Fprintf(w, "!!   %s\n", p)
	}
	fmt.Fprint(w, "!! Run it again on a quieter machine, or with fewer -clients, fewer -callers or a lower -rate.\n\n")
}

// fidelityLine is the lab's measure of itself, in one line.
func fidelityLine(f *Figures) string {
	fi := f.Fidelity
	verdict := "valid"
	if !fi.Valid {
		verdict = "INVALID"
	}
	var worst Delays
	for _, c := range f.Clients {
		if c.Lag.P99Ms > worst.P99Ms {
			worst.P99Ms = c.Lag.P99Ms
		}
		worst.MaxMs = max(worst.MaxMs, c.Lag.MaxMs)
	}
	return fmt.Sprintf("%s; requests started late by p99 %s, max %s; scheduler delay p99 %s, max %s (tolerance p99 %s, max %s; requests per phase within ±%.0f%% or %d of the plan)",
		verdict, msStr(worst.P99Ms), msStr(worst.MaxMs), msStr(fi.Scheduler.P99Ms), msStr(fi.Scheduler.MaxMs),
		msStr(fi.Tolerance.P99Ms), msStr(fi.Tolerance.MaxMs), 100*fi.Tolerance.Share, fi.Tolerance.Slack)
}

// column is one column of the summary: its name, its value for a client,
// and what it means (the same words in the terminal and in the report).
type column struct {
	name, legend string
	value        func(ClientFigures) string
}

// summaryColumns are the summary's columns: with -url only those that do
// not depend on the built-in upstream's phases or counters.
func summaryColumns(f *Figures) []column {
	cols := []column{
		{"client", "", func(c ClientFigures) string { return c.Name }},
		{"success", "share of all logical requests that succeeded (2xx)", func(c ClientFigures) string { return pct(c.Total.Success, c.Total.Requests) }},
	}
	if !f.builtIn() {
		cols = append(cols,
			column{"p50", "median latency of a logical request, retries included", func(c ClientFigures) string { return msStr(c.Total.P50Ms) }},
			column{"p99", "99th percentile of that latency", func(c ClientFigures) string { return msStr(c.Total.P99Ms) }},
			column{"ampl", "requests sent on the wire (or connections tried) per logical request", func(c ClientFigures) string { return fmt.Sprintf("%.2f", c.Total.Amplification) }},
			column{"refused", "logical requests the client refused itself (open breaker, empty budget, concurrency limit)", func(c ClientFigures) string { return fmt.Sprint(c.Rejected.Count) }},
		)
	} else {
		cols = append(cols,
			column{"brownout", "success in the brownout: of all requests / of those safe to retry (GETs, POSTs with an Idempotency-Key)", func(c ClientFigures) string {
				for _, p := range c.Phases {
					if p.Phase == "brownout" {
						return pct(p.Success, p.Requests) + " / " + pct(ratio(p.RetrySafeOK, p.RetrySafe), p.RetrySafe)
					}
				}
				return "-"
			}},
			column{"outage ampl", "requests sent on the wire (or connections tried) per logical request, in the outage", func(c ClientFigures) string {
				return fmt.Sprintf("%.2f", c.OutageAmplification)
			}},
			column{"after open", "the same, from the moment the breaker first opened to the end of the outage", func(c ClientFigures) string {
				if c.AfterOpen == nil {
					return "-"
				}
				return fmt.Sprintf("%.3f", c.AfterOpen.Amplification)
			}},
			column{"open p50", "median latency of the requests the client refused itself (breaker open, budget empty, concurrency limit)", func(c ClientFigures) string {
				if c.Rejected.Count == 0 {
					return "-"
				}
				return msStr(c.Rejected.P50Ms)
			}},
			column{"recovery", "from the end of the outage to the first success a caller got", func(c ClientFigures) string {
				if c.RecoveryLagMs == nil {
					return "-"
				}
				return msStr(*c.RecoveryLagMs)
			}},
		)
	}
	cols = append(cols,
		column{"429 p50", "median latency of the requests that ended with a 429", func(c ClientFigures) string {
			if c.Throttled.Count == 0 {
				return "-"
			}
			return msStr(c.Throttled.P50Ms)
		}},
		column{"429 held", "of those whose Retry-After could not fit the deadline, how many the client kept 50ms or more before returning the 429", func(c ClientFigures) string {
			if c.Throttled.Count == 0 {
				return "-"
			}
			return fmt.Sprint(c.ThrottledHeld)
		}},
	)
	if f.builtIn() {
		cols = append(cols,
			column{"early", "requests that came back sooner than a Retry-After allowed (counted by the upstream)", func(c ClientFigures) string {
				if c.Total.Server == nil {
					return "-"
				}
				return fmt.Sprint(c.Total.Server.EarlyRetries)
			}},
			column{"dup POST", "POSTs the upstream executed twice", func(c ClientFigures) string {
				if c.Total.Server == nil {
					return "-"
				}
				return fmt.Sprint(c.Total.Server.Duplicates)
			}},
		)
	}
	return append(cols,
		column{"conns", "connections the client's transport opened", func(c ClientFigures) string { return fmt.Sprint(c.Connections) }},
		column{"cut", "requests the client cancelled on the wire before their response came (a hedge that lost, a timeout, a deadline); over HTTP/1.1 each closes its connection", func(c ClientFigures) string {
			return fmt.Sprint(c.Cut)
		}},
	)
}

func pct(rate float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*rate)
}

// msStr formats a latency in milliseconds as the tables print it. The
// figures are rounded to 10µs, so what rounds to 0 prints as "<10µs".
func msStr(v float64) string {
	switch {
	case v < 0.01:
		return "<10µs"
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
		out = append(out, fmt.Sprintf("requests cancelled on the wire %d (by the caller's deadline %d)", c.Cut, c.CutByDeadline))
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

// writeTargets prints the targets of each library client, met or not,
// with the figure measured.
func writeTargets(w io.Writer, f *Figures) {
	if !f.builtIn() {
		fmt.Fprintln(w, "\ntargets: none; they are stated for the built-in upstream's scenario, and -url measures yours")
		return
	}
	client := ""
	for i, t := range f.Targets {
		if t.Client != client {
			client = t.Client
			fmt.Fprintf(w, "\ntargets, %s:", client)
			if d := departure(f, client); d != "" {
				fmt.Fprintf(w, " (%s)", d)
			}
			if !f.Fidelity.Valid {
				fmt.Fprint(w, " not judged: the run is invalid (see the top)")
			}
			fmt.Fprintln(w)
		}
		if t.Status == statusNA {
			// Targets that do not apply for one reason share a line.
			if i > 0 && f.Targets[i-1].Client == t.Client && f.Targets[i-1].Status == statusNA && f.Targets[i-1].Note == t.Note {
				continue
			}
			var ids []string
			for _, u := range f.Targets[i:] {
				if u.Client != t.Client || u.Status != statusNA || u.Note != t.Note {
					break
				}
				ids = append(ids, u.ID)
			}
			fmt.Fprintf(w, "  %-10s %s (%s)\n", t.Status, t.Note, strings.Join(ids, ", "))
			continue
		}
		fig := t.Figure
		if t.Note != "" {
			fig += "; " + t.Note
		}
		fmt.Fprintf(w, "  %-10s %s: %s\n", t.Status, t.Want, fig)
	}
}
