package chaos

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is how the upstream behaves during a [Phase].
type Kind uint8

const (
	// Healthy serves every request, quickly.
	Healthy Kind = iota
	// Brownout fails a share of requests with 503, delays some (latency
	// spikes, slow headers) and resets a few connections mid-body.
	Brownout
	// Throttling answers a share of requests with 429 and a Retry-After,
	// and every request that comes back sooner than its Retry-After
	// allowed.
	Throttling
	// Outage serves nothing: connections are refused, or every request
	// gets 503 (see [OutageMode]).
	Outage
	// Recovery serves every request again, as Healthy does.
	Recovery

	numKinds = iota
)

var kindNames = [numKinds]string{"healthy", "brownout", "throttling", "outage", "recovery"}

// String returns the kind's lower-case name, as [ParseKind] reads it.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads a kind's name: "healthy", "brownout", "throttling" (or
// "throttle"), "outage" or "recovery".
func ParseKind(s string) (Kind, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "throttle" {
		return Throttling, nil
	}
	for k, name := range kindNames {
		if s == name {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("chaos: unknown phase %q (want healthy, brownout, throttling, outage or recovery)", s)
}

// Phase is one stretch of a [Timeline]: a kind of behaviour held for a
// duration (> 0).
type Phase struct {
	Kind     Kind
	Duration time.Duration
}

// Timeline is the upstream's schedule of phases, in order, from the moment
// it starts. After the last phase ends, the last phase goes on.
type Timeline []Phase

// DefaultTimeline is the scenario of the demo, 23s in all: healthy 3s,
// brownout 5s, throttling 4s, outage 6s, recovery 5s.
func DefaultTimeline() Timeline {
	return Timeline{
		{Healthy, 3 * time.Second},
		{Brownout, 5 * time.Second},
		{Throttling, 4 * time.Second},
		{Outage, 6 * time.Second},
		{Recovery, 5 * time.Second},
	}
}

// ParseTimeline reads a timeline written as comma-separated kind=duration
// pairs, such as "healthy=3s,brownout=5s,outage=6s,recovery=5s" (the form
// [Timeline.String] writes).
func ParseTimeline(s string) (Timeline, error) {
	var t Timeline
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, dur, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("chaos: phase %q: want kind=duration, such as outage=6s", part)
		}
		k, err := ParseKind(name)
		if err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil {
			return nil, fmt.Errorf("chaos: phase %q: %w", part, err)
		}
		t = append(t, Phase{Kind: k, Duration: d})
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate reports whether the timeline can run: at least one phase, every
// kind known and every duration > 0.
func (t Timeline) Validate() error {
	if len(t) == 0 {
		return errors.New("chaos: timeline has no phases")
	}
	for i, p := range t {
		if p.Kind >= numKinds {
			return fmt.Errorf("chaos: phase %d: unknown kind %d", i, p.Kind)
		}
		if p.Duration <= 0 {
			return fmt.Errorf("chaos: phase %d (%s): duration must be > 0, got %v", i, p.Kind, p.Duration)
		}
	}
	return nil
}

// Total is the sum of the phases' durations.
func (t Timeline) Total() time.Duration {
	var d time.Duration
	for _, p := range t {
		d += p.Duration
	}
	return d
}

// Index returns the index of the phase in progress elapsed after the start:
// 0 before the start, the last phase after the end. An empty timeline
// returns -1.
func (t Timeline) Index(elapsed time.Duration) int {
	if len(t) == 0 {
		return -1
	}
	var end time.Duration
	for i, p := range t {
		end += p.Duration
		if elapsed < end {
			return i
		}
	}
	return len(t) - 1
}

// Start returns when phase i starts, from the start of the timeline.
func (t Timeline) Start(i int) time.Duration {
	var d time.Duration
	for _, p := range t[:i] {
		d += p.Duration
	}
	return d
}

// Scale returns a copy of the timeline stretched or compressed to last
// total in all, keeping the phases' proportions (each phase lasts at least
// 1ms). A total <= 0 returns an unchanged copy.
func (t Timeline) Scale(total time.Duration) Timeline {
	out := append(Timeline(nil), t...)
	whole := t.Total()
	if total <= 0 || whole <= 0 {
		return out
	}
	f := float64(total) / float64(whole)
	for i := range out {
		out[i].Duration = max(time.Millisecond, time.Duration(float64(out[i].Duration)*f).Round(time.Millisecond))
	}
	return out
}

// String writes the timeline as [ParseTimeline] reads it.
func (t Timeline) String() string {
	var b strings.Builder
	for i, p := range t {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%v", p.Kind, p.Duration)
	}
	return b.String()
}
