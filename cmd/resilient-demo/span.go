package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// span is a stretch of the run that figures are given for: a phase of the
// built-in upstream's timeline or, with -url, the whole run, named "run"
// (a real upstream has no phases the lab knows of).
type span struct {
	Name     string
	Duration time.Duration
}

// spans are the stretches of a run, in order, from its start.
type spans []span

// urlSpan names the one span of a run against -url.
const urlSpan = "run"

func spansOf(tl chaos.Timeline) spans {
	s := make(spans, len(tl))
	for i, p := range tl {
		s[i] = span{p.Kind.String(), p.Duration}
	}
	return s
}

// total is the length of the run.
func (s spans) total() time.Duration {
	var d time.Duration
	for _, p := range s {
		d += p.Duration
	}
	return d
}

// index returns the span in progress at elapsed: 0 before the start, the
// last one after the end, as chaos.Timeline.Index does.
func (s spans) index(elapsed time.Duration) int {
	var end time.Duration
	for i, p := range s {
		end += p.Duration
		if elapsed < end {
			return i
		}
	}
	return len(s) - 1
}

// start returns when span i starts.
func (s spans) start(i int) time.Duration {
	var d time.Duration
	for _, p := range s[:i] {
		d += p.Duration
	}
	return d
}

// find returns the index of the first span of that name, or -1.
func (s spans) find(name string) int {
	for i, p := range s {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// String writes the spans as name=duration pairs, as -phases reads them.
func (s spans) String() string {
	var b strings.Builder
	for i, p := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%v", p.Name, p.Duration)
	}
	return b.String()
}

// parseSpans reads spans as String writes them.
func parseSpans(s string) (spans, error) {
	var out spans
	for part := range strings.SplitSeq(s, ",") {
		name, dur, ok := strings.Cut(part, "=")
		d, err := time.ParseDuration(dur)
		if !ok || err != nil || d <= 0 || name == "" {
			return nil, fmt.Errorf("bad span %q in %q", part, s)
		}
		out = append(out, span{name, d})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no span in %q", s)
	}
	return out, nil
}
