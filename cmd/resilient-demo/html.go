package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The HTML report is the page to look at after a run: the verdict first,
// then the summary with what each column means, then one chart per metric
// with every client overlaid on the same phases, so that the clients
// compare at a glance. It is self-contained (no script, no external asset:
// inline SVG and CSS) and well-formed XML as well as HTML, so that any XML
// parser reads it; it reads at 700px wide and up.

// phaseColors shade the phases in every chart.
var phaseColors = map[string]string{
	"healthy":    "#e8f5e9",
	"brownout":   "#fff3e0",
	"throttling": "#e3f2fd",
	"outage":     "#ffebee",
	"recovery":   "#f1f8e9",
	urlSpan:      "#f5f5f5",
}

// stroke is how a client's line is drawn. Lines of clients that did the
// same coincide: the earlier clients are drawn wider and lighter, so that
// each line stays visible inside the one under it.
type stroke struct {
	color   string
	width   float64
	opacity float64
	dash    string
}

var clientStrokes = map[string]stroke{
	"plain": {"#616161", 6, 0.45, ""},
	"naive": {"#ef6c00", 4, 0.7, ""},
	"httpx": {"#1565c0", 2.5, 1, ""},
	"tuned": {"#2e7d32", 1.5, 1, ""},
}

func strokeOf(name string, i int) stroke {
	if s, ok := clientStrokes[name]; ok {
		return s
	}
	return stroke{[]string{"#6a1b9a", "#00838f", "#ad1457"}[i%3], 2, 1, "5,3"}
}

func (s stroke) attrs() string {
	a := fmt.Sprintf(`stroke="%s" stroke-width="%g" stroke-opacity="%g"`, s.color, s.width, s.opacity)
	if s.dash != "" {
		a += fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
	}
	return a
}

// breakerColors draw a breaker's states.
var breakerColors = map[string]string{
	"closed":    "#a5d6a7",
	"open":      "#e53935",
	"half-open": "#fdd835",
}

const css = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0 12px 2em; max-width: 920px; color: #222; }
h1 { font-size: 1.5em; margin: .6em 0 .2em; }
h2 { font-size: 1.2em; margin: 1.6em 0 .4em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1.2em 0 .1em; }
table { border-collapse: collapse; margin: .4em 0 .8em; font-size: 13px; }
th, td { padding: 3px 7px; text-align: right; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
.scroll { overflow-x: auto; }
.legend { font-weight: normal; color: #666; font-size: 12px; max-width: 22em; }
.met { color: #1b5e20; } .notmet { color: #b71c1c; font-weight: bold; } .na, .nj { color: #888; }
.banner { border: 2px solid #b71c1c; background: #ffebee; padding: .6em .9em; margin: 1em 0; }
.banner strong { color: #b71c1c; }
.note { color: #555; font-size: 13px; }
.keys span { display: inline-block; margin-right: 1.1em; white-space: nowrap; font-size: 13px; }
.sw { display: inline-block; width: 22px; height: 0; vertical-align: middle; margin-right: 4px; }
.box { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px; border: 1px solid #ccc; }
svg { display: block; width: 100%; height: auto; }
details { margin: .3em 0; }
summary { cursor: pointer; }
`

// writeHTML writes the report.
func writeHTML(w io.Writer, f *Figures) error {
	sp, err := parseSpans(f.Timeline)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	e := html.EscapeString
	fmt.Fprintf(bw, `<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>resilient-demo report</title>
<style>%s</style>
</head>
<body>
<h1>resilient-demo</h1>
`, css)
	htmlBanner(bw, f)
	up := "the built-in upstream, one instance per client, same seed; " + upstreamFaults(f)
	if !f.builtIn() {
		up = "the upstream at " + f.Upstream + " (shared by the clients; every figure counted on the client side)"
	}
	fmt.Fprintf(bw, "<p>Seed %d; %d callers at %g requests/s per client, a %s deadline per request; %s; %s. Phases: %s.</p>\n",
		f.Seed, f.Callers, f.Rate, e(msStr(f.TimeoutMs)), e(up), e(f.Protocol), e(strings.ReplaceAll(f.Timeline, ",", ", ")))
	fmt.Fprintf(bw, "<p class=\"note\">Lab fidelity: %s.</p>\n", e(fidelityLine(f)))
	if f.Interrupts {
		fmt.Fprint(bw, "<p><strong>Interrupted:</strong> the figures cover the part that ran.</p>\n")
	}

	htmlVerdict(bw, f)
	htmlSummary(bw, f)

	// One chart per metric, every client overlaid.
	fmt.Fprint(bw, "<h2>Over time</h2>\n<p class=\"keys\">")
	for i, c := range f.Clients {
		s := strokeOf(c.Name, i)
		fmt.Fprintf(bw, `<span><span class="sw" style="border-top: %.0fpx solid %s; opacity: %g"></span>%s</span>`, max(s.width, 2), s.color, max(s.opacity, 0.6), e(c.Name))
	}
	fmt.Fprint(bw, `<span><span class="sw" style="border-top: 2px dashed #000"></span>logical requests/s (the same for all)</span>`)
	seen := map[string]bool{}
	for _, p := range sp {
		if c, ok := phaseColors[p.Name]; ok && !seen[p.Name] {
			seen[p.Name] = true
			fmt.Fprintf(bw, `<span><span class="box" style="background: %s"></span>%s</span>`, c, e(p.Name))
		}
	}
	fmt.Fprint(bw, "</p>\n")

	n := len(f.Clients)
	load, succ, p99, conns := make([][]float64, n), make([][]float64, n), make([][]float64, n), make([][]float64, n)
	var logical []float64
	for i, c := range f.Clients {
		total := 0
		for _, s := range c.Series {
			load[i] = append(load[i], float64(s.Upstream))
			rate, lat := 100*s.Success, s.P99Ms
			if s.Requests == 0 {
				rate, lat = -1, -1 // no point
			}
			succ[i] = append(succ[i], rate)
			p99[i] = append(p99[i], lat)
			total += s.Dials
			conns[i] = append(conns[i], float64(total))
			if i == 0 {
				logical = append(logical, float64(s.Requests))
			}
		}
	}
	fmt.Fprint(bw, "<h3>Upstream load: requests sent on the wire per second</h3>\n")
	chart(bw, f, sp, linear("/s"), load, logical)
	breakerChart(bw, f, sp)
	fmt.Fprint(bw, "<h3>Success rate of the logical requests started in each second</h3>\n")
	chart(bw, f, sp, percent(), succ, nil)
	fmt.Fprint(bw, "<h3>p99 latency of the logical requests started in each second (log scale)</h3>\n")
	chart(bw, f, sp, logMs(), p99, nil)
	if f.builtIn() {
		fmt.Fprintf(bw, "<p class=\"note\">%s</p>\n", e(strings.ReplaceAll(retryAfterNote, "\n", " ")))
	}
	fmt.Fprint(bw, "<h3>Connections opened since the start</h3>\n")
	chart(bw, f, sp, linear(""), conns, nil)
	fmt.Fprint(bw, "<p class=\"note\">Over HTTP/1.1 a request cancelled on the wire (a hedge that lost, a deadline) closes its connection, and each request on the wire at the same moment needs its own; over HTTP/2 they share one.</p>\n")

	htmlPhases(bw, f)
	fmt.Fprint(bw, "<p class=\"note\">Requests count in the second (and phase) in which they started. Upstream load counts requests sent on the wire, or connections tried, by each client's transport.</p>\n</body>\n</html>\n")
	return bw.Flush()
}

func htmlBanner(w io.Writer, f *Figures) {
	if f.Fidelity.Valid {
		return
	}
	e := html.EscapeString
	fmt.Fprint(w, "<div class=\"banner\"><p><strong>Invalid run: the lab fell behind its own schedule.</strong> These figures describe the load on the machine that ran it, not the clients: they are not the library's, and no target is judged on them.</p>\n<ul>\n")
	for _, p := range f.Fidelity.Problems {
		fmt.Fprintf(w, "<li>%s</li>\n", e(p))
	}
	fmt.Fprint(w, "</ul>\n<p>Run it again on a quieter machine, or with fewer -clients, fewer -callers or a lower -rate.</p></div>\n")
}

// htmlVerdict writes the targets: one row per target, one column per
// library client.
func htmlVerdict(w io.Writer, f *Figures) {
	e := html.EscapeString
	fmt.Fprint(w, "<h2>Verdict</h2>\n")
	if !f.builtIn() {
		fmt.Fprint(w, "<p>No targets: they are stated for the built-in upstream's scenario, and this run measured another upstream.</p>\n")
		return
	}
	if len(f.Targets) == 0 {
		fmt.Fprint(w, "<p>No library client ran: no target to check.</p>\n")
		return
	}
	if !f.Fidelity.Valid {
		fmt.Fprint(w, "<p><strong>Not judged:</strong> the run is invalid (see above). The figures are shown for diagnosis only.</p>\n")
	}
	var clients []string
	for _, t := range f.Targets {
		if len(clients) == 0 || clients[len(clients)-1] != t.Client {
			clients = append(clients, t.Client)
		}
	}
	fmt.Fprint(w, "<div class=\"scroll\"><table>\n<tr><th>target</th>")
	for _, c := range clients {
		fmt.Fprintf(w, "<th>%s", e(c))
		if d := departure(f, c); d != "" {
			fmt.Fprintf(w, "<div class=\"legend\">%s</div>", e(d))
		}
		fmt.Fprint(w, "</th>")
	}
	fmt.Fprint(w, "</tr>\n")
	for _, id := range targetIDs {
		var row []Target
		for _, c := range clients {
			for _, t := range f.Targets {
				if t.ID == id && t.Client == c {
					row = append(row, t)
				}
			}
		}
		if len(row) == 0 {
			continue
		}
		fmt.Fprintf(w, "<tr><td>%s</td>", e(row[0].Want))
		for _, t := range row {
			class := map[string]string{statusMet: "met", statusNotMet: "notmet", statusNA: "na", statusNotJudged: "nj"}[t.Status]
			text := t.Status + ": " + t.Figure
			if t.Status == statusNA {
				text = "n/a: " + t.Note
			} else if t.Note != "" {
				text += "; " + t.Note
			}
			fmt.Fprintf(w, "<td class=\"%s\">%s</td>", class, e(text))
		}
		fmt.Fprint(w, "</tr>\n")
	}
	fmt.Fprint(w, "</table></div>\n")
}

// htmlSummary writes the summary, one column per client and one row per
// figure, each with what it means.
func htmlSummary(w io.Writer, f *Figures) {
	e := html.EscapeString
	fmt.Fprint(w, "<h2>Summary</h2>\n")
	if !f.Fidelity.Valid {
		fmt.Fprint(w, "<p><strong>Invalid run:</strong> these figures describe the machine, not the clients.</p>\n")
	}
	fmt.Fprint(w, "<div class=\"scroll\"><table>\n<tr><th></th>")
	for _, c := range f.Clients {
		fmt.Fprintf(w, "<th>%s</th>", e(c.Name))
	}
	fmt.Fprint(w, "</tr>\n")
	for _, col := range summaryColumns(f)[1:] {
		fmt.Fprintf(w, "<tr><th>%s<div class=\"legend\">%s</div></th>", e(col.name), e(col.legend))
		for _, c := range f.Clients {
			fmt.Fprintf(w, "<td>%s</td>", e(col.value(c)))
		}
		fmt.Fprint(w, "</tr>\n")
	}
	fmt.Fprint(w, "</table></div>\n<p class=\"note\">")
	for i, c := range f.Clients {
		if i > 0 {
			fmt.Fprint(w, "<br/>")
		}
		fmt.Fprintf(w, "<strong>%s</strong>: %s.", e(c.Name), e(c.Description))
	}
	fmt.Fprint(w, "</p>\n")
}

// htmlPhases writes each client's figures per phase, folded.
func htmlPhases(w io.Writer, f *Figures) {
	e := html.EscapeString
	fmt.Fprint(w, "<h2>Per phase</h2>\n")
	for _, c := range f.Clients {
		fmt.Fprintf(w, "<details><summary><strong>%s</strong>: %s</summary>\n<div class=\"scroll\"><table>\n", e(c.Name), e(strings.Join(notes(c), "; ")))
		fmt.Fprint(w, "<tr><th>phase</th><th>requests</th><th>success</th><th>p50</th><th>p99</th><th>max</th><th>upstream</th><th>ampl</th><th>breaker</th><th>conns</th>")
		if c.Total.Server != nil {
			fmt.Fprint(w, "<th>early</th><th>dup POST</th>")
		}
		fmt.Fprint(w, "</tr>\n")
		for _, p := range append(c.Phases, c.Total) {
			fmt.Fprintf(w, "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%.2f</td><td>%d</td><td>%d</td>",
				e(p.Phase), p.Requests, pct(p.Success, p.Requests), e(msStr(p.P50Ms)), e(msStr(p.P99Ms)), e(msStr(p.MaxMs)), p.Upstream, p.Amplification, p.Transitions, p.Dials)
			if p.Server != nil {
				fmt.Fprintf(w, "<td>%d</td><td>%d</td>", p.Server.EarlyRetries, p.Server.Duplicates)
			}
			fmt.Fprint(w, "</tr>\n")
		}
		fmt.Fprint(w, "</table></div></details>\n")
	}
}

// The plot area of every chart, in SVG units; the SVG scales to the page.
const (
	chartW, chartH                           = 680, 190
	padLeft, padRight, padTop, padBottom     = 52, 10, 18, 22
	plotW                                    = chartW - padLeft - padRight
	breakerRow                               = 20
	fontAttrs                                = `font-family="system-ui, sans-serif" font-size="11"`
	textWidth                            int = 6 // per character, roughly, at that size
)

// scale maps a value to the plot's height (0 at the bottom, 1 at the top)
// and labels the axis.
type scale struct {
	frac  func(v float64) float64
	ticks func() []float64
	label func(v float64) string
	max   float64
}

func linear(unit string) func(vmax float64) scale {
	return func(vmax float64) scale {
		top := niceCeil(vmax)
		return scale{
			frac:  func(v float64) float64 { return min(v, top) / top },
			ticks: func() []float64 { return []float64{0, top / 2, top} },
			label: func(v float64) string { return axis(v) + unit },
			max:   top,
		}
	}
}

func percent() func(float64) scale {
	return func(float64) scale {
		return scale{
			frac:  func(v float64) float64 { return v / 100 },
			ticks: func() []float64 { return []float64{0, 50, 100} },
			label: func(v float64) string { return axis(v) + "%" },
			max:   100,
		}
	}
}

// logMs is a log scale from 1ms to the decade above the largest value.
func logMs() func(float64) scale {
	return func(vmax float64) scale {
		top := math.Pow(10, math.Max(1, math.Ceil(math.Log10(math.Max(vmax, 1)))))
		return scale{
			frac: func(v float64) float64 { return math.Log10(math.Max(v, 1)) / math.Log10(top) },
			ticks: func() []float64 {
				var t []float64
				for v := 1.0; v <= top; v *= 10 {
					t = append(t, v)
				}
				return t
			},
			label: func(v float64) string {
				if v >= 1000 {
					return fmt.Sprintf("%gs", v/1000)
				}
				return fmt.Sprintf("%gms", v)
			},
			max: top,
		}
	}
}

// xOf maps seconds from the start to the SVG's x.
func xOf(sp spans) func(s float64) float64 {
	total := sp.total().Seconds()
	return func(s float64) float64 { return padLeft + plotW*s/total }
}

// chart writes one SVG chart: the phases shaded and labelled, one line
// per client (values per second; < 0 is no point), and, when given, the
// logical requests per second dashed.
func chart(w io.Writer, f *Figures, sp spans, mk func(float64) scale, lines [][]float64, logical []float64) {
	vmax := 0.0
	for _, l := range append(lines, logical) {
		for _, v := range l {
			vmax = max(vmax, v)
		}
	}
	sc := mk(vmax)
	ph := float64(chartH - padTop - padBottom)
	y := func(v float64) float64 { return padTop + ph*(1-sc.frac(v)) }
	x := xOf(sp)
	total := sp.total().Seconds()
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" role=\"img\" class=\"chart\" %s>\n", chartW, chartH, fontAttrs)
	phaseBands(w, sp, padTop, ph)
	for _, v := range sc.ticks() {
		fmt.Fprintf(w, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ccc\" stroke-dasharray=\"2,3\"/>\n", padLeft, y(v), chartW-padRight, y(v))
		fmt.Fprintf(w, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#444\">%s</text>\n", padLeft-4, y(v)+4, html.EscapeString(sc.label(v)))
	}
	fmt.Fprintf(w, "<line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#999\"/>\n", padLeft, padTop+ph, chartW-padRight, padTop+ph)
	step := niceStep(total)
	for s := 0.0; s <= total+1e-9; s += step {
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#444\">%gs</text>\n", x(s), chartH-6, s)
	}
	mid := func(s int) float64 { return x((float64(s) + min(float64(s+1), total)) / 2) } // the middle of the second, or of its part inside the run
	polyline := func(values []float64, attrs string) {
		var pts []string
		flush := func() {
			if len(pts) == 1 { // a lone point: a dot
				pts = append(pts, pts[0])
			}
			if len(pts) > 0 {
				fmt.Fprintf(w, "<polyline fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\" %s points=\"%s\"/>\n", attrs, strings.Join(pts, " "))
				pts = pts[:0]
			}
		}
		for s, v := range values {
			if v < 0 {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", mid(s), y(v)))
		}
		flush()
	}
	for i, l := range lines {
		name := f.Clients[i].Name
		fmt.Fprintf(w, "<g><title>%s</title>\n", html.EscapeString(name))
		polyline(l, strokeOf(name, i).attrs())
		fmt.Fprint(w, "</g>\n")
	}
	if logical != nil {
		polyline(logical, `stroke="#000" stroke-width="1.2" stroke-dasharray="5,4"`)
	}
	fmt.Fprint(w, "</svg>\n")
}

// phaseBands shades and labels the spans over the plot's height.
func phaseBands(w io.Writer, sp spans, top, height float64) {
	x := xOf(sp)
	for i, p := range sp {
		x0, x1 := x(sp.start(i).Seconds()), x((sp.start(i) + p.Duration).Seconds())
		color, ok := phaseColors[p.Name]
		if !ok {
			color = "#f5f5f5"
		}
		fmt.Fprintf(w, "<rect class=\"phase\" x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\"/>\n", x0, top, x1-x0, height, color)
		if x1-x0 >= float64(textWidth*len(p.Name)+6) { // above the plot, clear of the lines
			fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.0f\" fill=\"#555\">%s</text>\n", x0+3, top-5, html.EscapeString(p.Name))
		}
	}
}

// breakerChart draws the state of every breaker over time, one row per
// client with one, on the charts' time axis: closed, open and half-open,
// each labelled where it is wide enough and listed in the key.
func breakerChart(w io.Writer, f *Figures, sp spans) {
	var rows []ClientFigures
	for _, c := range f.Clients {
		if c.Breaker {
			rows = append(rows, c)
		}
	}
	if len(rows) == 0 {
		return
	}
	e := html.EscapeString
	fmt.Fprint(w, "<h3>Breaker state</h3>\n<p class=\"keys\">")
	for _, s := range []string{"closed", "open", "half-open"} {
		fmt.Fprintf(w, `<span><span class="box" style="background: %s"></span>%s</span>`, breakerColors[s], s)
	}
	fmt.Fprint(w, "<span>(half-open: a few probes are let through; a success closes it, a failure opens it again)</span></p>\n")
	x := xOf(sp)
	total := sp.total()
	height := len(rows)*(breakerRow+4) + 4
	fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" role=\"img\" class=\"breakers\" %s>\n", chartW, height, fontAttrs)
	for r, c := range rows {
		top := float64(4 + r*(breakerRow+4))
		fmt.Fprintf(w, "<text x=\"%d\" y=\"%.0f\" text-anchor=\"end\" fill=\"#444\">%s</text>\n", padLeft-4, top+14, e(c.Name))
		// The states in order; the half-open moments (probes, often a few
		// milliseconds) last, at least 3 units wide, so that none is hidden
		// under the open state that follows it.
		type seg struct {
			state    string
			from, to float64
		}
		var segs []seg
		state, from := "closed", 0.0
		for _, t := range c.Transitions {
			at := min(t.At, total).Seconds()
			segs = append(segs, seg{state, from, at})
			state, from = t.To, at
		}
		segs = append(segs, seg{state, from, total.Seconds()})
		for _, pass := range []bool{false, true} {
			for _, s := range segs {
				if (s.state == "half-open") != pass {
					continue
				}
				x0, x1 := x(s.from), x(s.to)
				width := x1 - x0
				if pass {
					width = max(width, 3)
				}
				fmt.Fprintf(w, "<rect class=\"breaker\" x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>%s from %.2fs to %.2fs</title></rect>\n",
					x0, top, width, breakerRow, breakerColors[s.state], s.state, s.from, s.to)
				if x1-x0 >= float64(textWidth*len(s.state)+6) {
					fill := "#222"
					if s.state == "open" {
						fill = "#fff"
					}
					fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"%s\">%s</text>\n", (x0+x1)/2, top+14, fill, s.state)
				}
			}
		}
	}
	fmt.Fprint(w, "</svg>\n")
}

// niceStep is the step of the time axis: about ten ticks.
func niceStep(total float64) float64 {
	for _, s := range []float64{0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600} {
		if total/s <= 12 {
			return s
		}
	}
	return 1200
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
