package resilient

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event is anything the library reports as it works: an [AttemptEvent], a
// [RetryEvent] or a [DoneEvent] from an executor. A program that wants every
// event in one place, in the order it happened, passes a function of Event
// to [Observe] and switches on the type:
//
//	resilient.WithHooks(resilient.Observe(func(ev resilient.Event) {
//		switch ev := ev.(type) {
//		case resilient.RetryEvent:
//			…
//		}
//	}))
type Event interface {
	isEvent()
}

func (AttemptEvent) isEvent() {}
func (RetryEvent) isEvent()   {}
func (DoneEvent) isEvent()    {}

// Observe returns hooks that hand every event of every call to fn, in the
// order the events happen, on the caller's goroutine. fn must be safe for
// concurrent use when the executor is shared.
//
// Each event is boxed into an [Event] interface, which allocates; code that
// must not allocate per event (a metrics adapter) sets [Hooks] directly.
// A nil fn returns empty Hooks, which cost nothing.
func Observe(fn func(Event)) Hooks {
	if fn == nil {
		return Hooks{}
	}
	return Hooks{
		OnAttempt: func(ev AttemptEvent) { fn(ev) },
		OnRetry:   func(ev RetryEvent) { fn(ev) },
		OnDone:    func(ev DoneEvent) { fn(ev) },
	}
}

// Names of the policies that refuse calls, as [RejectedBy] returns them and
// as the adapters label rejections with.
const (
	// PolicyOther names a policy the library does not know: one of the
	// program's own.
	PolicyOther = "other"
)

// rejectionPolicies maps a policy's refusal error to its name. Matching
// is done on the call's Cause (the refusal itself), never on the last
// attempt's error, so an inner call's rejection is not mistaken for the
// outer call's.
var rejectionPolicies = [...]struct {
	err  error
	name string
}{}

// RejectedBy names the kind of policy that refused the call whose error is
// err, or returns "" when err is not a policy's refusal (it does not match
// [ErrRejected]). A refusal by a policy of the program's own is
// [PolicyOther]. The name is short, lower case and stable, and serves as a
// metric label or a log attribute.
func RejectedBy(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonRejected {
		return ""
	}
	for _, p := range rejectionPolicies {
		if errors.Is(e.Cause, p.err) {
			return p.name
		}
	}
	return PolicyOther
}

// TextMetricsContentType is the media type of what [TextMetrics.WriteTo]
// writes: version 0.0.4 of the Prometheus text exposition format.
const TextMetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// DefaultMaxNames is how many distinct executor names a [TextMetrics]
// keeps series for; events of further names are counted under the name
// [OverflowName].
const DefaultMaxNames = 100

// OverflowName is the name that events of executors beyond a metrics
// sink's name limit are counted under, so that the number of series stays
// bounded whatever names a program makes up.
const OverflowName = "_other"

// latencyBuckets are the upper bounds, in seconds, of the latency
// histograms: the Prometheus client's defaults, 5ms to 10s.
var latencyBuckets = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// TextMetrics counts what executors do, in memory, and writes the counts
// in the Prometheus text exposition format: a way to expose metrics with the
// standard library alone (the contrib/prometheus and contrib/otel modules
// serve the client libraries). Feed it with [TextMetrics.Hooks]; serve it
// from an HTTP handler that sets the Content-Type to
// [TextMetricsContentType] and calls [TextMetrics.WriteTo].
//
// It exports, with the executor's name in the label "executor":
//
//	resilient_calls_total{executor,reason}               counter
//	resilient_call_duration_seconds{executor,reason}     histogram
//	resilient_attempts_total{executor,outcome}           counter
//	resilient_attempt_duration_seconds{executor,outcome} histogram
//	resilient_retries_total{executor,source}             counter
//	resilient_rejections_total{executor,policy}          counter
//
// Label values are the String forms of [Reason], [Outcome] and
// [DelaySource], and the names of [RejectedBy]. Series appear once they
// count something. At most [DefaultMaxNames] executor names get series of
// their own; the rest share [OverflowName].
//
// The zero value is not usable; build one with [NewTextMetrics]. A
// TextMetrics is safe for concurrent use; counting takes no lock and does
// not allocate once a name has been seen.
type TextMetrics struct {
	mu     sync.Mutex                             // serialises adding a name
	series atomic.Pointer[map[string]*textSeries] // copy on write
	other  *textSeries
}

// textSeries holds the counts of one executor name.
type textSeries struct {
	calls      [numReasons]atomic.Uint64
	callDur    [numReasons]histogram
	attempts   [numOutcomes]atomic.Uint64
	attemptDur [numOutcomes]histogram
	retries    [2]atomic.Uint64
	rejections sync.Map // policy name (string) -> *atomic.Uint64
}

const (
	numReasons  = int(ReasonRejected) + 1
	numOutcomes = int(Ignore) + 1
)

// histogram counts durations into latencyBuckets. count is the sum of the
// per-bucket counts at the time they are read, so buckets and count never
// disagree; sum may lag them by the observations in flight.
type histogram struct {
	buckets [len(latencyBuckets) + 1]atomic.Uint64 // last: above every bound
	sumNs   atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && s > latencyBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(int64(d))
}

// NewTextMetrics returns an empty TextMetrics.
func NewTextMetrics() *TextMetrics {
	m := &TextMetrics{other: new(textSeries)}
	empty := map[string]*textSeries{}
	m.series.Store(&empty)
	return m
}

// Hooks returns the hooks that feed m. Give them to every executor to be
// counted, with [WithHooks].
func (m *TextMetrics) Hooks() Hooks {
	return Hooks{
		OnAttempt: func(ev AttemptEvent) {
			s := m.lookup(ev.Name)
			if o := int(ev.Outcome); o < numOutcomes {
				s.attempts[o].Add(1)
				s.attemptDur[o].observe(ev.Duration)
			}
		},
		OnRetry: func(ev RetryEvent) {
			src := 0
			if ev.Source == FromHint {
				src = 1
			}
			m.lookup(ev.Name).retries[src].Add(1)
		},
		OnDone: func(ev DoneEvent) {
			s := m.lookup(ev.Name)
			if r := int(ev.Reason); r < numReasons {
				s.calls[r].Add(1)
				s.callDur[r].observe(ev.Elapsed)
			}
			if ev.Reason != ReasonRejected {
				return
			}
			if p := RejectedBy(ev.Err); p != "" {
				c, ok := s.rejections.Load(p)
				if !ok {
					c, _ = s.rejections.LoadOrStore(p, new(atomic.Uint64))
				}
				c.(*atomic.Uint64).Add(1)
			}
		},
	}
}

// lookup returns the series of name, adding it if there is room.
func (m *TextMetrics) lookup(name string) *textSeries {
	if s, ok := (*m.series.Load())[name]; ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.series.Load()
	if s, ok := old[name]; ok {
		return s
	}
	if len(old) >= DefaultMaxNames {
		return m.other
	}
	s := new(textSeries)
	next := make(map[string]*textSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = s
	m.series.Store(&next)
	return s
}

// WriteTo writes every series of m to w in the Prometheus text exposition
// format, families and label values in a stable order. It returns the
// number of bytes written and the first error of w.
func (m *TextMetrics) WriteTo(w io.Writer) (int64, error) {
	type named struct {
		name string
		s    *textSeries
	}
	all := make([]named, 0, len(*m.series.Load())+1)
	for k, v := range *m.series.Load() {
		all = append(all, named{k, v})
	}
	slices.SortFunc(all, func(a, b named) int { return strings.Compare(a.name, b.name) })
	all = append(all, named{OverflowName, m.other})

	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	counter := func(metric, label, value string, n uint64, executor string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(&b, "%s{executor=%s,%s=%s} %d\n", metric, quote(executor), label, quote(value), n)
	}
	hist := func(metric, label, value string, h *histogram, executor string) {
		var counts [len(latencyBuckets) + 1]uint64
		var total uint64
		for i := range h.buckets {
			counts[i] = h.buckets[i].Load()
			total += counts[i]
		}
		if total == 0 {
			return
		}
		labels := "executor=" + quote(executor) + "," + label + "=" + quote(value)
		var cum uint64
		for i, le := range latencyBuckets {
			cum += counts[i]
			fmt.Fprintf(&b, "%s_bucket{%s,le=\"%s\"} %d\n", metric, labels, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(&b, "%s_bucket{%s,le=\"+Inf\"} %d\n", metric, labels, total)
		fmt.Fprintf(&b, "%s_sum{%s} %s\n", metric, labels, strconv.FormatFloat(time.Duration(h.sumNs.Load()).Seconds(), 'g', -1, 64))
		fmt.Fprintf(&b, "%s_count{%s} %d\n", metric, labels, total)
	}

	family("resilient_calls_total", "counter", "Calls that ended, by executor and reason.")
	for _, e := range all {
		for r := range numReasons {
			counter("resilient_calls_total", "reason", Reason(r).String(), e.s.calls[r].Load(), e.name)
		}
	}
	family("resilient_call_duration_seconds", "histogram", "Duration of calls, attempts and waits together, by executor and reason.")
	for _, e := range all {
		for r := range numReasons {
			hist("resilient_call_duration_seconds", "reason", Reason(r).String(), &e.s.callDur[r], e.name)
		}
	}
	family("resilient_attempts_total", "counter", "Attempts made, by executor and outcome.")
	for _, e := range all {
		for o := range numOutcomes {
			counter("resilient_attempts_total", "outcome", Outcome(o).String(), e.s.attempts[o].Load(), e.name)
		}
	}
	family("resilient_attempt_duration_seconds", "histogram", "Duration of attempts, by executor and outcome.")
	for _, e := range all {
		for o := range numOutcomes {
			hist("resilient_attempt_duration_seconds", "outcome", Outcome(o).String(), &e.s.attemptDur[o], e.name)
		}
	}
	family("resilient_retries_total", "counter", "Retries scheduled, by executor and the source of their delay.")
	for _, e := range all {
		for src := range 2 {
			counter("resilient_retries_total", "source", DelaySource(src).String(), e.s.retries[src].Load(), e.name)
		}
	}
	family("resilient_rejections_total", "counter", "Calls refused by a policy, by executor and policy.")
	for _, e := range all {
		var policies []string
		e.s.rejections.Range(func(k, _ any) bool {
			policies = append(policies, k.(string))
			return true
		})
		slices.Sort(policies)
		for _, p := range policies {
			c, _ := e.s.rejections.Load(p)
			counter("resilient_rejections_total", "policy", p, c.(*atomic.Uint64).Load(), e.name)
		}
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// quote writes a label value as the text format wants it: in double
// quotes, with backslash, double quote and line feed escaped.
func quote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
