package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strings"

	"github.com/resilient-go/resilient/chaos"
)

// phaseColors shade the phases in every chart.
var phaseColors = map[string]string{
	"healthy":    "#e8f5e9",
	"brownout":   "#fff3e0",
	"throttling": "#e3f2fd",
	"outage":     "#ffebee",
	"recovery":   "#f1f8e9",
}

// writeHTML writes a self-contained page: no script, no external asset,
// inline SVG only. It is well-formed XML as well as HTML, so that any XML
// parser reads it.
func writeHTML(w io.Writer, f *Figures) error {
	tl, err := chaos.ParseTimeline(f.Timeline)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	e := html.EscapeString
	fmt.Fprint(bw, `<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>resilient-demo report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { padding: 2px 8px; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
section { margin-bottom: 2.5em; }
svg { display: block; margin: .3em 0; }
.note { color: #555; }
</style>
</head>
<body>
`)
	up := "built-in upstream, one instance per client, same seed; outage: " + f.Outage
	if f.Upstream != "built-in" {
		up = "upstream " + f.Upstream + " (shared; counted on the client side)"
	}
	fmt.Fprintf(bw, "<h1>resilient-demo</h1>\n<p>Seed %d, %d callers at %g requests/s per client, %s deadline per request; %s.</p>\n",
		f.Seed, f.Callers, f.Rate, e(msStr(f.TimeoutMs)), e(up))
	fmt.Fprintf(bw, "<p>Timeline: %s.</p>\n", e(strings.ReplaceAll(f.Timeline, ",", ", ")))

	// The summary, one row per client.
	fmt.Fprint(bw, "<h2>Summary</h2>\n<table>\n<tr><th>client</th><th>success</th><th>brownout success</th><th>outage amplification</th><th>after breaker opened</th><th>recovery</th><th>early retries</th><th>duplicate POSTs</th><th>connections</th></tr>\n")
	for _, c := range f.Clients {
		brown := "-"
		for _, p := range c.Phases {
			if p.Phase == "brownout" {
				brown = pct(p.Success, p.Requests)
				break
			}
		}
		after, rec, early, dup := "-", "-", "-", "-"
		if c.AfterOpen != nil {
			after = fmt.Sprintf("%.3f", c.AfterOpen.Amplification)
		}
		if c.RecoveryLagMs != nil {
			rec = msStr(*c.RecoveryLagMs)
		}
		if c.Total.Server != nil {
			early, dup = fmt.Sprint(c.Total.Server.EarlyRetries), fmt.Sprint(c.Total.Server.Duplicates)
		}
		fmt.Fprintf(bw, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%.2f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td></tr>\n",
			e(c.Name), pct(c.Total.Success, c.Total.Requests), brown, c.OutageAmplification, after, e(rec), early, dup, c.Connections)
	}
	fmt.Fprint(bw, "</table>\n")

	// Shared scales, so that the clients' charts compare at a glance.
	var maxLoad, maxP99 float64
	for _, c := range f.Clients {
		for _, s := range c.Series {
			maxLoad = max(maxLoad, float64(s.Upstream), float64(s.Requests))
			maxP99 = max(maxP99, s.P99Ms)
		}
	}
	for _, c := range f.Clients {
		fmt.Fprintf(bw, "<section>\n<h2>%s</h2>\n<p class=\"note\">%s</p>\n", e(c.Name), e(c.Description))
		fmt.Fprint(bw, "<table>\n<tr><th>phase</th><th>requests</th><th>success</th><th>p50</th><th>p99</th><th>max</th><th>upstream</th><th>amplification</th><th>breaker transitions</th>")
		if c.Total.Server != nil {
			fmt.Fprint(bw, "<th>early retries</th><th>duplicate POSTs</th>")
		}
		fmt.Fprint(bw, "</tr>\n")
		for _, p := range append(c.Phases, c.Total) {
			fmt.Fprintf(bw, "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%.2f</td><td>%d</td>",
				e(p.Phase), p.Requests, pct(p.Success, p.Requests), e(msStr(p.P50Ms)), e(msStr(p.P99Ms)), e(msStr(p.MaxMs)), p.Upstream, p.Amplification, p.Transitions)
			if p.Server != nil {
				fmt.Fprintf(bw, "<td>%d</td><td>%d</td>", p.Server.EarlyRetries, p.Server.Duplicates)
			}
			fmt.Fprint(bw, "</tr>\n")
		}
		fmt.Fprint(bw, "</table>\n")
		up, logical, succ, p99 := make([]float64, len(c.Series)), make([]float64, len(c.Series)), make([]float64, len(c.Series)), make([]float64, len(c.Series))
		for i, s := range c.Series {
			up[i], logical[i], succ[i], p99[i] = float64(s.Upstream), float64(s.Requests), 100*s.Success, s.P99Ms
			if s.Requests == 0 {
				succ[i] = -1 // no point
			}
		}
		chart(bw, tl, c.Transitions, "upstream load (requests/s; dashed: logical requests/s)", "", maxLoad, []line{{up, "#1565c0", false}, {logical, "#757575", true}})
		chart(bw, tl, c.Transitions, "success rate per second (%)", "%", 100, []line{{succ, "#2e7d32", false}})
		chart(bw, tl, c.Transitions, "p99 latency per second (ms)", "ms", maxP99, []line{{p99, "#c62828", false}})
		fmt.Fprint(bw, "</section>\n")
	}
	fmt.Fprint(bw, "<p class=\"note\">Requests count in the second (and phase) in which they started. Upstream load counts requests sent on the wire, or connections tried, by the client's transport. Vertical ticks mark breaker transitions.</p>\n</body>\n</html>\n")
	return bw.Flush()
}

type line struct {
	values []float64 // per second; < 0 is no point
	color  string
	dashed bool
}

// chart writes one SVG chart: the phases shaded, the lines per second, the
// breaker transitions as ticks.
func chart(w io.Writer, tl chaos.Timeline, trans []transition, title, unit string, yMax float64, lines []line) {
	const (
		width, height          = 940, 170
		left, right, top, foot = 56, 10, 24, 22
	)
	yMax = niceCeil(yMax)
	total := tl.Total().Seconds()
	pw, ph := float64(width-left-right), float64(height-top-foot)
	x := func(s float64) float64 { return left + pw*s/total }
	y := func(v float64) float64 { return top + ph*(1-min(v, yMax)/yMax) }
	e := html.EscapeString
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
		width, height, width, height, e(title))
	fmt.Fprintf(w, "<text x=\"%d\" y=\"15\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", left, e(title))
	for i, p := range tl {
		x0, x1 := x(tl.Start(i).Seconds()), x((tl.Start(i) + p.Duration).Seconds())
		fmt.Fprintf(w, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\"/>\n", x0, top, x1-x0, ph, phaseColors[p.Kind.String()])
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"#666\">%s</text>\n", x0+3, top+11, e(p.Kind.String()))
	}
	// Axes and labels.
	fmt.Fprintf(w, "<line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#999\"/>\n", left, top+ph, width-right, top+ph)
	for _, v := range []float64{0, yMax / 2, yMax} {
		fmt.Fprintf(w, "<text x=\"%d\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%s%s</text>\n", left-4, y(v)+3, e(axis(v)), e(unit))
		fmt.Fprintf(w, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\" stroke-dasharray=\"2,3\"/>\n", left, y(v), width-right, y(v))
	}
	step := max(1, int(total/20))
	for s := 0; float64(s) <= total; s += step {
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%ds</text>\n", x(float64(s)), height-6, s)
	}
	for _, t := range trans {
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#6a1b9a\" stroke-width=\"1\"><title>breaker %s at %.2fs</title></line>\n",
			x(t.At.Seconds()), top, x(t.At.Seconds()), top+ph, e(t.To), t.At.Seconds())
	}
	for _, l := range lines {
		var pts []string
		flush := func() {
			if len(pts) > 0 {
				dash := ""
				if l.dashed {
					dash = ` stroke-dasharray="5,4"`
				}
				fmt.Fprintf(w, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s points=\"%s\"/>\n", l.color, dash, strings.Join(pts, " "))
				pts = pts[:0]
			}
		}
		for s, v := range l.values {
			if v < 0 {
				flush()
				continue
			}
			// The middle of the second, or of its part inside the timeline.
			mid := (float64(s) + min(float64(s+1), total)) / 2
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(mid), y(v)))
		}
		flush()
	}
	fmt.Fprint(w, "</svg>\n")
}

func axis(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v == float64(int(v)):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten, so that the
// axis reads well; v <= 0 gives 1.
func niceCeil(v float64) float64 {
	if !(v > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}
