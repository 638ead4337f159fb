// Package prometheus exports what resilient executors do as Prometheus
// metrics, through github.com/prometheus/client_golang.
//
//	m := prometheus.MustNew()
//	registry.MustRegister(m)
//	usersAPI := resilient.MustNew(
//		resilient.WithName("users-api"),
//		resilient.WithHooks(m.Hooks()),
//	)
//
// # Metrics
//
// With the default namespace "resilient":
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
// Label values are those of [resilient.Reason.Label],
// [resilient.Outcome.Label], [resilient.DelaySource.Label] and
// [resilient.State.Label] (snake_case: reason="max_elapsed",
// state="half_open"), the policy names of [resilient.RejectedBy], and the
// executor's and breaker's names made valid UTF-8 (the client refuses
// other label values). These are the names, help texts and labels that
// [resilient.TextMetrics] writes, and that contrib/otel's instruments
// become through OpenTelemetry's Prometheus exporter: one naming table
// for the three, so one dashboard serves them all.
//
// Breakers report through [Metrics.OnTransition], given to each breaker
// with [resilient.WithStateListener] when it is built: its initial state
// is exported at once, so the gauge is truthful before the first call.
//
// # Cardinality
//
// Labels carry only the names a program gives its executors and breakers,
// never a URL, and a host only where the program chose one: a keyed set of
// breakers ([resilient.Breakers]) names each breaker after its key, so
// per-host breakers export one series per host. The number of names is
// bounded all the same, executors and breakers apart (see
// [WithMaxNames]): events of names beyond the bound are counted under
// [resilient.OverflowName], which exports breaker transitions but no
// breaker state.
//
// # Errors
//
// An invalid option is a [*resilient.OptionError] that names it with this
// package's name, such as "resilient: prometheus.WithMaxNames: n must be
// >= 1, got 0" (Option "prometheus.WithMaxNames"), and matches
// [resilient.ErrInvalidOption]. [New] reports every invalid option,
// joined (errors.As finds the first).
package prometheus

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/contrib/prometheus/internal/names"
)

// Metrics is a [prom.Collector] of the metrics of the executors it hooks
// into. It is safe for concurrent use; once an executor's name has been
// seen, counting its events takes no lock and allocates nothing.
type Metrics struct {
	maxNames int

	calls      *prom.CounterVec
	callDur    *prom.HistogramVec
	attempts   *prom.CounterVec
	attemptDur *prom.HistogramVec
	retries    *prom.CounterVec
	rejections *prom.CounterVec
	brState    *prom.GaugeVec
	brTrans    *prom.CounterVec

	executors *names.Table[series]
	breakers  *names.Table[breakerSeries]
}

// states are the breaker states exported, in order.
var states = [...]resilient.State{
	resilient.StateClosed, resilient.StateOpen, resilient.StateHalfOpen,
	resilient.StateForcedOpen, resilient.StateDisabled,
}

// breakerSeries holds one breaker name's children.
type breakerSeries struct {
	name  string     // made valid UTF-8
	mu    sync.Mutex // orders the gauge updates of concurrent transitions
	state [len(states)]lazy[prom.Gauge]
	trans [len(states)]lazy[prom.Counter]
}

// series caches the children of one executor name, made on first use.
type series struct {
	name       string // made valid UTF-8
	calls      [numReasons]lazy[prom.Counter]
	callDur    [numReasons]lazy[prom.Observer]
	attempts   [numOutcomes]lazy[prom.Counter]
	attemptDur [numOutcomes]lazy[prom.Observer]
	retries    [2]lazy[prom.Counter]
}

const (
	numReasons  = int(resilient.ReasonRejected) + 1
	numOutcomes = int(resilient.Ignore) + 1
)

// lazy holds a metric child made on first use; later uses read it with one
// atomic load.
type lazy[M any] struct{ p atomic.Pointer[M] }

func (l *lazy[M]) get(make func() M) M {
	if p := l.p.Load(); p != nil {
		return *p
	}
	m := make()
	l.p.CompareAndSwap(nil, &m) // a racing maker made the same child
	return *l.p.Load()
}

// Option configures [New].
type Option func(*config) error

// optionError is the error of an invalid option of this package: a
// *resilient.OptionError that names the option with the package's name,
// "prometheus.WithBuckets".
func optionError(option, format string, args ...any) error {
	return &resilient.OptionError{Option: "prometheus." + option, Err: fmt.Errorf(format, args...)}
}

type config struct {
	namespace string
	buckets   []float64
	labels    prom.Labels
	maxNames  int
}

// DefaultNamespace is the prefix of every metric name unless
// [WithNamespace] says otherwise.
const DefaultNamespace = "resilient"

// WithNamespace sets the prefix of the metric names (default
// [DefaultNamespace]): "svc" gives svc_calls_total. It must be a valid
// metric name of its own; "" is refused.
func WithNamespace(ns string) Option {
	return func(c *config) error {
		if !validName(ns) {
			return optionError("WithNamespace", "%q is not a valid metric name prefix", ns)
		}
		c.namespace = ns
		return nil
	}
}

// WithBuckets sets the upper bounds, in seconds, of the latency histograms'
// buckets: at least one, strictly increasing. Default: prometheus.DefBuckets
// (5ms to 10s).
func WithBuckets(bounds ...float64) Option {
	return func(c *config) error {
		if len(bounds) == 0 {
			return optionError("WithBuckets", "no bounds")
		}
		if math.IsNaN(bounds[0]) {
			return optionError("WithBuckets", "bounds must be numbers, got NaN")
		}
		for i := 1; i < len(bounds); i++ {
			if !(bounds[i] > bounds[i-1]) { // also refuses NaN
				return optionError("WithBuckets", "bounds must increase, got %v after %v", bounds[i], bounds[i-1])
			}
		}
		c.buckets = append([]float64(nil), bounds...)
		return nil
	}
}

// WithConstLabels adds labels with fixed values to every metric, such as
// {"service": "checkout"}. Names must be valid label names, not reserved
// ("__…", and "le", which histograms use) and not one of the metrics' own
// labels (executor, reason, outcome, source, policy, breaker, state);
// values must be valid UTF-8. Every label that is not is named in the
// error. Default: none.
//
// Decision: these are refused here because the client would refuse them
// late: a clash with the metrics' labels when they are registered, and an
// "le" with a panic at the first observation of a duration, in the
// caller's goroutine.
func WithConstLabels(labels prom.Labels) Option {
	return func(c *config) error {
		var bad []string
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			switch {
			case !validName(k) || strings.HasPrefix(k, "__"):
				bad = append(bad, fmt.Sprintf("%q is not a valid label name", k))
			case k == "le":
				bad = append(bad, `"le" is the histograms' bucket label`)
			case slices.Contains(ownLabels[:], k):
				bad = append(bad, fmt.Sprintf("%q is a label of the metrics' own", k))
			case !utf8.ValidString(labels[k]):
				bad = append(bad, fmt.Sprintf("the value of %q is not valid UTF-8", k))
			}
		}
		if bad != nil {
			return optionError("WithConstLabels", "%s", strings.Join(bad, "; "))
		}
		c.labels = labels
		return nil
	}
}

// ownLabels are the labels of the metrics New makes.
var ownLabels = [...]string{"executor", "reason", "outcome", "source", "policy", "breaker", "state"}

// WithMaxNames bounds how many executor names get series of their own:
// n >= 1. Events of further names are counted under
// [resilient.OverflowName]. Default [resilient.DefaultMaxNames].
func WithMaxNames(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithMaxNames", "n must be >= 1, got %d", n)
		}
		c.maxNames = n
		return nil
	}
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// New builds the metrics; register them with a [prom.Registerer] and give
// [Metrics.Hooks] to the executors to be measured. An invalid option is an
// error that names it, every one reported (see the package doc's Errors).
func New(opts ...Option) (*Metrics, error) {
	c := config{namespace: DefaultNamespace, buckets: prom.DefBuckets, maxNames: resilient.DefaultMaxNames}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("New", "nil option"))
		} else if err := o(&c); err != nil {
			errs = append(errs, err)
		}
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	counter := func(name, help, label string) *prom.CounterVec {
		return prom.NewCounterVec(prom.CounterOpts{
			Namespace: c.namespace, Name: name, Help: help, ConstLabels: c.labels,
		}, []string{"executor", label})
	}
	histogram := func(name, help, label string) *prom.HistogramVec {
		return prom.NewHistogramVec(prom.HistogramOpts{
			Namespace: c.namespace, Name: name, Help: help, ConstLabels: c.labels, Buckets: c.buckets,
		}, []string{"executor", label})
	}
	m := &Metrics{
		maxNames:   c.maxNames,
		calls:      counter("calls_total", "Calls that ended, by executor and reason.", "reason"),
		callDur:    histogram("call_duration_seconds", "Duration of calls, attempts and waits together, by executor and reason.", "reason"),
		attempts:   counter("attempts_total", "Attempts made, by executor and outcome.", "outcome"),
		attemptDur: histogram("attempt_duration_seconds", "Duration of attempts, by executor and outcome.", "outcome"),
		retries:    counter("retries_total", "Retries scheduled, by executor and the source of their delay.", "source"),
		rejections: counter("rejections_total", "Calls refused by a policy, by executor and policy.", "policy"),
		brState: prom.NewGaugeVec(prom.GaugeOpts{
			Namespace: c.namespace, Name: "breaker_state", ConstLabels: c.labels,
			Help: "State of each breaker: 1 for the state it is in, 0 for the others.",
		}, []string{"breaker", "state"}),
		brTrans: prom.NewCounterVec(prom.CounterOpts{
			Namespace: c.namespace, Name: "breaker_transitions_total", ConstLabels: c.labels,
			Help: "State changes of each breaker, by the state entered.",
		}, []string{"breaker", "state"}),
	}
	// The tables clean names: the client refuses label values that are not
	// valid UTF-8, with a panic in the caller's goroutine.
	m.executors = names.New(c.maxNames, resilient.OverflowName, func(name string) *series { return &series{name: name} })
	m.breakers = names.New(c.maxNames, resilient.OverflowName, func(name string) *breakerSeries { return &breakerSeries{name: name} })
	return m, nil
}

// MustNew is like [New] but panics on an invalid option.
func MustNew(opts ...Option) *Metrics {
	m, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return m
}

func (m *Metrics) collectors() [8]prom.Collector {
	return [...]prom.Collector{m.calls, m.callDur, m.attempts, m.attemptDur, m.retries, m.rejections, m.brState, m.brTrans}
}

// Describe sends the descriptors of every metric; see [prom.Collector].
func (m *Metrics) Describe(ch chan<- *prom.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect sends every series; see [prom.Collector].
func (m *Metrics) Collect(ch chan<- prom.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// Hooks returns the hooks that feed m. Give them to every executor to be
// measured, with [resilient.WithHooks].
func (m *Metrics) Hooks() resilient.Hooks {
	return resilient.Hooks{
		OnAttempt: func(ev resilient.AttemptEvent) {
			o := int(ev.Outcome)
			if o >= numOutcomes {
				return
			}
			s := m.executors.Get(ev.Name)
			label := ev.Outcome.Label()
			s.attempts[o].get(func() prom.Counter { return m.attempts.WithLabelValues(s.name, label) }).Inc()
			s.attemptDur[o].get(func() prom.Observer { return m.attemptDur.WithLabelValues(s.name, label) }).Observe(ev.Duration.Seconds())
		},
		OnRetry: func(ev resilient.RetryEvent) {
			src := 0
			if ev.Source == resilient.FromHint {
				src = 1
			}
			s := m.executors.Get(ev.Name)
			s.retries[src].get(func() prom.Counter { return m.retries.WithLabelValues(s.name, ev.Source.Label()) }).Inc()
		},
		OnDone: func(ev resilient.DoneEvent) {
			r := int(ev.Reason)
			if r >= numReasons {
				return
			}
			s := m.executors.Get(ev.Name)
			label := ev.Reason.Label()
			s.calls[r].get(func() prom.Counter { return m.calls.WithLabelValues(s.name, label) }).Inc()
			s.callDur[r].get(func() prom.Observer { return m.callDur.WithLabelValues(s.name, label) }).Observe(ev.Elapsed.Seconds())
			if ev.Reason == resilient.ReasonRejected {
				if p := resilient.RejectedBy(ev.Err); p != "" {
					// Refusals are rare: no cache.
					m.rejections.WithLabelValues(s.name, p).Inc()
				}
			}
		},
	}
}

// OnTransition records a breaker's state change. Give it to every breaker
// to be watched, when it is built:
//
//	br := resilient.MustNewBreaker(resilient.WithStateListener(m.OnTransition))
//
// so that its initial state is exported at once.
func (m *Metrics) OnTransition(t resilient.Transition) {
	i := int(t.To)
	if i >= len(states) {
		return
	}
	s := m.breakers.Get(t.Name)
	if t.From != t.To {
		s.trans[i].get(func() prom.Counter { return m.brTrans.WithLabelValues(s.name, t.To.Label()) }).Inc()
	}
	if s == m.breakers.Overflow() {
		return // the overflow has no one state
	}
	// A breaker delivers its events one at a time, but two breakers of one
	// name (a program's mistake) could interleave: the lock keeps the gauge
	// at one state.
	s.mu.Lock()
	defer s.mu.Unlock()
	for j, st := range states {
		v := 0.0
		if j == i {
			v = 1
		}
		s.state[j].get(func() prom.Gauge { return m.brState.WithLabelValues(s.name, st.Label()) }).Set(v)
	}
}
