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

	"github.com/resilient-go/resilient/internal/names"
)

// Event is anything the library reports as it works: an [AttemptEvent], a
// [RetryEvent] or a [DoneEvent] from an executor, a [Transition] from a
// [Breaker]. A program that wants every event in one place, in the order it
// happened, passes a function of Event to [Observe] (and to
// [ObserveBreaker]) and switches on the type:
//
//	sink := func(ev resilient.Event) {
//		switch ev := ev.(type) {
//		case resilient.RetryEvent:
//			…
//		case resilient.Transition:
//			…
//		}
//	}
//	br := resilient.MustNewBreaker(resilient.ObserveBreaker(sink))
//	ex := resilient.MustNew(resilient.WithBreaker(br), resilient.WithHooks(resilient.Observe(sink)))
//
// Policies that refuse calls (a breaker, a budget, a bulkhead, a throttle)
// show in a DoneEvent with [ReasonRejected]; [RejectedBy] names the policy.
type Event interface {
	isEvent()
}

func (AttemptEvent) isEvent() {}
func (RetryEvent) isEvent()   {}
func (DoneEvent) isEvent()    {}
func (Transition) isEvent()   {}
func (GroupEvent) isEvent()   {}

// Observe returns hooks that hand every event of every call to fn, in the
// order the events happen, on the caller's goroutine. fn must be safe for
// concurrent use when the executor is shared.
//
// Each event is boxed into an [Event] interface, which allocates when fn
// keeps the event or lets it escape; code that must not allocate per event
// (a metrics adapter) sets [Hooks] directly.
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

// ObserveBreaker returns a breaker option that hands every [Transition]
// of the breaker to fn, as an [Event], starting with the initial state (see
// [WithStateListener]). A nil fn is refused when the breaker is built.
func ObserveBreaker(fn func(Event)) BreakerOption {
	if fn == nil {
		return breakerOptionFunc(func(*breakerConfig) error {
			return optionError("ObserveBreaker", "nil function")
		})
	}
	return WithStateListener(func(t Transition) { fn(t) })
}

// ObserveGroup returns a [Group] option that hands a [GroupEvent] to fn at
// the end of every shared execution (see [WithGroupListener]). A nil fn is
// refused when the group is built.
func ObserveGroup(fn func(Event)) GroupOption {
	if fn == nil {
		return func(*groupConfig) error {
			return optionError("ObserveGroup", "nil function")
		}
	}
	return WithGroupListener(func(e GroupEvent) { fn(e) })
}

// Names of the policies that refuse calls, as [RejectedBy] returns them and
// as the adapters label rejections with.
const (
	PolicyBreaker  = "breaker"  // a [Breaker]: [ErrOpen]
	PolicyBudget   = "budget"   // a retry [Budget]: [ErrBudgetExhausted]
	PolicyThrottle = "throttle" // a [Throttle]: [ErrThrottled]
	PolicyBulkhead = "bulkhead" // a [Bulkhead]: [ErrBulkheadFull]
	// PolicyRateLimit names a rate limit ([WithRateLimit]): [ErrRateLimited].
	PolicyRateLimit = "ratelimit"
	// PolicyConcurrency names a [ConcurrencyLimiter]: [ErrConcurrencyLimit].
	PolicyConcurrency = "concurrency"
	// PolicyOther names a policy the library does not know (one of the
	// program's own), or a refusal for another reason, such as a bulkhead's
	// wait for a slot ended by the caller's context.
	PolicyOther = "other"
)

// rejectionPolicies maps a policy's refusal error to its name. Matching
// is done on the call's Cause (the refusal itself), never on the last
// attempt's error, so an inner call's rejection is not mistaken for the
// outer call's.
var rejectionPolicies = [...]struct {
	err  error
	name string
}{
	{ErrOpen, PolicyBreaker},
	{ErrBudgetExhausted, PolicyBudget},
	{ErrThrottled, PolicyThrottle},
	{ErrBulkheadFull, PolicyBulkhead},
	{ErrRateLimited, PolicyRateLimit},
	{ErrConcurrencyLimit, PolicyConcurrency},
}

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

// DefaultMaxNames is how many distinct executor names, and how many
// distinct breaker names, a metrics sink keeps series for; events of
// further names are counted under the name [OverflowName].
const DefaultMaxNames = 100

// OverflowName is the name that events of executors (or breakers) beyond a
// metrics sink's name limit are counted under, so that the number of series
// stays bounded whatever names a program makes up.
const OverflowName = "_other"

// latencyBuckets are the upper bounds, in seconds, of the latency
// histograms: the Prometheus client's defaults, 5ms to 10s.
var latencyBuckets = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// TextMetrics counts what executors and breakers do, in memory, and writes
// the counts in the Prometheus text exposition format: a way to expose
// metrics with the standard library alone (the contrib/prometheus and
// contrib/otel modules serve the client libraries, with the same names).
// Feed it with [TextMetrics.Hooks] and [TextMetrics.OnTransition]; serve it
// from an HTTP handler that sets the Content-Type to
// [TextMetricsContentType] and calls [TextMetrics.WriteTo].
//
// It exports, with the executor's name in the label "executor" and the
// breaker's in "breaker":
//
//	resilient_calls_total{executor,reason}               counter
//	resilient_call_duration_seconds{executor,reason}     histogram
//	resilient_attempts_total{executor,outcome}           counter
//	resilient_attempt_duration_seconds{executor,outcome} histogram
//	resilient_retries_total{executor,source}             counter
//	resilient_rejections_total{executor,policy}          counter
//	resilient_breaker_state{breaker,state}               gauge, 1 for the current state, 0 for the others
//	resilient_breaker_transitions_total{breaker,state}   counter, by the state entered
//
// Label values are those of [Reason.Label], [Outcome.Label],
// [DelaySource.Label] and [State.Label] (snake_case: reason="max_elapsed",
// state="half_open"), the names of [RejectedBy], and the executor's and
// breaker's names, made valid UTF-8. Executor series appear once
// they count something; a breaker's appear with its initial state. At most
// [DefaultMaxNames] executor names, and as many breaker names, get series of
// their own; the rest share [OverflowName].
//
// The zero value is not usable; build one with [NewTextMetrics]. A
// TextMetrics is safe for concurrent use; counting takes no lock and does
// not allocate once a name has been seen.
//
// Decision: TextMetrics is an io.WriterTo, not an http.Handler. The core
// package does not import net/http (a program that retries database calls
// should not link an HTTP stack for its metrics); the handler is three
// lines in the program, as in the example.
type TextMetrics struct {
	executors *names.Table[textSeries]
	breakers  *names.Table[breakerSeries]
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

// breakerSeries holds the state of one breaker name.
type breakerSeries struct {
	state       atomic.Uint32 // the State
	transitions [numStates]atomic.Uint64
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
	return &TextMetrics{
		executors: names.New(DefaultMaxNames, OverflowName, func(string) *textSeries { return new(textSeries) }),
		breakers: names.New(DefaultMaxNames, OverflowName, func(string) *breakerSeries {
			s := new(breakerSeries)
			s.state.Store(uint32(numStates)) // no state until one is seen
			return s
		}),
	}
}

// Hooks returns the hooks that feed m. Give them to every executor to be
// counted, with [WithHooks].
func (m *TextMetrics) Hooks() Hooks {
	return Hooks{
		OnAttempt: func(ev AttemptEvent) {
			s := m.executors.Get(ev.Name)
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
			m.executors.Get(ev.Name).retries[src].Add(1)
		},
		OnDone: func(ev DoneEvent) {
			s := m.executors.Get(ev.Name)
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

// OnTransition records a breaker's state change; give it to every breaker
// to be watched, with [WithStateListener] (m.OnTransition), before the
// breaker is built, so that its initial state is recorded too.
func (m *TextMetrics) OnTransition(t Transition) {
	if t.To >= numStates {
		return
	}
	s := m.breakers.Get(t.Name)
	if s != m.breakers.Overflow() {
		// The overflow has no one state: it counts transitions only.
		s.state.Store(uint32(t.To))
	}
	if t.From != t.To {
		s.transitions[t.To].Add(1)
	}
}

// WriteTo writes every series of m to w in the Prometheus text exposition
// format, families and label values in a stable order. It returns the
// number of bytes written and the first error of w.
func (m *TextMetrics) WriteTo(w io.Writer) (int64, error) {
	executors := m.executors.All()
	breakers := m.breakers.All()

	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(metric, key, name, label, value string, n uint64) {
		fmt.Fprintf(&b, "%s{%s=%s,%s=%s} %d\n", metric, key, quote(name), label, quote(value), n)
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
	counters := func(metric, help, label string, values int, name func(int) string, get func(*textSeries, int) uint64) {
		family(metric, "counter", help)
		for _, e := range executors {
			for i := range values {
				if n := get(e.Series, i); n > 0 {
					sample(metric, "executor", e.Name, label, name(i), n)
				}
			}
		}
	}
	reason := func(i int) string { return Reason(i).Label() }
	outcome := func(i int) string { return Outcome(i).Label() }

	counters("resilient_calls_total", "Calls that ended, by executor and reason.", "reason",
		numReasons, reason, func(s *textSeries, i int) uint64 { return s.calls[i].Load() })
	family("resilient_call_duration_seconds", "histogram", "Duration of calls, attempts and waits together, by executor and reason.")
	for _, e := range executors {
		for r := range numReasons {
			hist("resilient_call_duration_seconds", "reason", reason(r), &e.Series.callDur[r], e.Name)
		}
	}
	counters("resilient_attempts_total", "Attempts made, by executor and outcome.", "outcome",
		numOutcomes, outcome, func(s *textSeries, i int) uint64 { return s.attempts[i].Load() })
	family("resilient_attempt_duration_seconds", "histogram", "Duration of attempts, by executor and outcome.")
	for _, e := range executors {
		for o := range numOutcomes {
			hist("resilient_attempt_duration_seconds", "outcome", outcome(o), &e.Series.attemptDur[o], e.Name)
		}
	}
	counters("resilient_retries_total", "Retries scheduled, by executor and the source of their delay.", "source",
		2, func(i int) string { return DelaySource(i).Label() }, func(s *textSeries, i int) uint64 { return s.retries[i].Load() })
	family("resilient_rejections_total", "counter", "Calls refused by a policy, by executor and policy.")
	for _, e := range executors {
		var policies []string
		e.Series.rejections.Range(func(k, _ any) bool {
			policies = append(policies, k.(string))
			return true
		})
		slices.Sort(policies)
		for _, p := range policies {
			c, _ := e.Series.rejections.Load(p)
			sample("resilient_rejections_total", "executor", e.Name, "policy", p, c.(*atomic.Uint64).Load())
		}
	}

	family("resilient_breaker_state", "gauge", "State of each breaker: 1 for the state it is in, 0 for the others.")
	for _, br := range breakers {
		cur := State(br.Series.state.Load())
		if cur >= numStates {
			continue // the overflow, before any breaker used it
		}
		for st := range numStates {
			v := uint64(0)
			if st == cur {
				v = 1
			}
			sample("resilient_breaker_state", "breaker", br.Name, "state", st.Label(), v)
		}
	}
	family("resilient_breaker_transitions_total", "counter", "State changes of each breaker, by the state entered.")
	for _, br := range breakers {
		for st := range numStates {
			if n := br.Series.transitions[st].Load(); n > 0 {
				sample("resilient_breaker_transitions_total", "breaker", br.Name, "state", st.Label(), n)
			}
		}
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// quote writes a label value as the text format wants it: valid UTF-8
// (invalid bytes become U+FFFD), in double quotes, with backslash, double
// quote and line feed escaped.
func quote(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
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
