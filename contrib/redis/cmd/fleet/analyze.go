package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// figures are what a trial shows.
type figures struct {
	shared bool
	// The first outage.
	tripAt         time.Time     // the first refusal in it, fleet-wide
	tripAfter      time.Duration // after the outage began
	sentAfterTrip  int           // requests the upstream received after the trip, during the outage
	maxInFlight    int           // most requests in flight at the upstream, from 1s after the trip to the outage's end
	failedInOutage int           // calls the replicas saw fail during the outage
	lightRefused   []time.Duration
	heavyRefused   []time.Duration // after the trip; -1: never refused during the outage
	// The Redis stall (shared trial).
	stall, stallEnd     time.Duration // how long, and its end after the trial's start
	inFlightAtStall     int
	refusedAfterReturn  int           // calls refused from Redis's return to the end
	lastRefusalAfter    time.Duration // after Redis's return; -1: none
	allServedAfter      time.Duration // every replica had a call served, after Redis's return
	longestGap          time.Duration // with no call served fleet-wide, from the stall on
	degraded, recovered int           // Redis events, all replicas
	// Both.
	goroutinesLeft, skipped int
}

const never = time.Duration(-1)

func analyze(r *trialResult) figures {
	f := figures{shared: r.shared, lastRefusalAfter: never}
	for _, e := range r.ends {
		f.goroutinesLeft += e.goroutinesLeft
		f.skipped += e.skipped
		f.degraded += e.degraded
		f.recovered += e.recovered
	}
	inOutage := func(t time.Time) bool { return !t.Before(r.outageStart) && t.Before(r.outageEnd) }
	for _, recs := range r.records {
		for _, c := range recs {
			if !inOutage(c.at) {
				continue
			}
			switch c.outcome {
			case refused:
				if f.tripAt.IsZero() || c.at.Before(f.tripAt) {
					f.tripAt = c.at
				}
			case failed:
				f.failedInOutage++
			}
		}
	}
	if f.tripAt.IsZero() {
		f.tripAt = r.outageEnd // never tripped
	}
	f.tripAfter = f.tripAt.Sub(r.outageStart)
	for _, a := range r.arrivals {
		if !a.at.Before(f.tripAt) && a.at.Before(r.outageEnd) {
			f.sentAfterTrip++
			if !a.at.Before(f.tripAt.Add(time.Second)) {
				f.maxInFlight = max(f.maxInFlight, a.inFlight)
			}
		}
	}
	for i, recs := range r.records {
		first := never
		for _, c := range recs {
			if c.outcome == refused && inOutage(c.at) {
				first = max(c.at.Sub(f.tripAt), 0)
				break
			}
		}
		if i < r.o.heavy {
			f.heavyRefused = append(f.heavyRefused, first)
		} else {
			f.lightRefused = append(f.lightRefused, first)
		}
	}
	if r.shared && !r.stallStart.IsZero() {
		f.stall = r.stallEnd.Sub(r.stallStart)
		f.stallEnd = r.stallEnd.Sub(r.start)
		f.inFlightAtStall = r.inFlightAtStall
		var servedAt []time.Time
		for _, recs := range r.records {
			first := time.Time{}
			for _, c := range recs {
				if c.at.Before(r.stallEnd) {
					continue
				}
				switch c.outcome {
				case refused:
					f.refusedAfterReturn++
					f.lastRefusalAfter = max(f.lastRefusalAfter, c.at.Sub(r.stallEnd))
				case served:
					if first.IsZero() {
						first = c.at
					}
				}
			}
			if first.IsZero() {
				f.allServedAfter = never
			} else if f.allServedAfter != never {
				f.allServedAfter = max(f.allServedAfter, first.Sub(r.stallEnd))
			}
			for _, c := range recs {
				if c.outcome == served && !c.at.Before(r.stallStart) {
					servedAt = append(servedAt, c.at)
				}
			}
		}
		slices.SortFunc(servedAt, func(a, b time.Time) int { return a.Compare(b) })
		prev := r.stallStart
		for _, t := range append(servedAt, r.end) {
			f.longestGap = max(f.longestGap, t.Sub(prev))
			prev = t
		}
	}
	return f
}

// report prints the figures of both trials side by side.
func report(w io.Writer, o options, local, shared figures) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name, a, b string) { fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, a, b) }
	fmt.Fprintln(w)
	row("", "local breakers", "shared breaker")
	row("first refusal after the outage began", ms(local.tripAfter), ms(shared.tripAfter))
	row("requests the upstream got after it, in the outage", fmt.Sprint(local.sentAfterTrip), fmt.Sprint(shared.sentAfterTrip))
	row("most in flight at once, from 1s after it", fmt.Sprint(local.maxInFlight), fmt.Sprint(shared.maxInFlight))
	row("calls that failed in the outage", fmt.Sprint(local.failedInOutage), fmt.Sprint(shared.failedInOutage))
	row("heavy replicas refusing, after it", durations(local.heavyRefused), durations(shared.heavyRefused))
	row("light replicas refusing, after it", durations(local.lightRefused), durations(shared.lightRefused))
	row("goroutines left in the replicas", fmt.Sprint(local.goroutinesLeft), fmt.Sprint(shared.goroutinesLeft))
	_ = tw.Flush()
	fmt.Fprintln(w)
	if shared.stall == 0 {
		fmt.Fprintln(w, "Redis was not stalled (-stall 0, or the fleet sent no probe).")
	} else {
		fmt.Fprintf(w, "Redis stalled %v (SIGSTOP) at %v, with %d request(s) in flight at the upstream (open duration %v):\n",
			shared.stall.Round(time.Millisecond), (shared.stallEnd - shared.stall).Round(time.Millisecond), shared.inFlightAtStall, o.open)
		last := "none"
		if shared.lastRefusalAfter != never {
			last = "the last " + ms(shared.lastRefusalAfter) + " after"
		}
		fmt.Fprintf(w, "  calls refused after Redis returned: %d (%s)\n", shared.refusedAfterReturn, last)
		fmt.Fprintf(w, "  every replica served a call within %s of Redis's return\n", ms(shared.allServedAfter))
		fmt.Fprintf(w, "  longest time with no call served fleet-wide, from the stall on: %s\n", ms(shared.longestGap))
		fmt.Fprintf(w, "  Redis events over the trial: %d degraded, %d recovered (%d replicas)\n", shared.degraded, shared.recovered, o.replicas)
	}
	if local.skipped+shared.skipped > 0 {
		fmt.Fprintf(w, "calls not made (a replica had %d in flight): %d, %d\n", maxInFlight, local.skipped, shared.skipped)
	}
}

func ms(d time.Duration) string {
	switch {
	case d == never:
		return "never"
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = ms(d)
	}
	return strings.Join(s, " ")
}
