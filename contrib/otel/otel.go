// Package otel records what resilient executors and breakers do as
// OpenTelemetry metrics, through the go.opentelemetry.io/otel/metric API.
//
//	m := otel.MustNew(otel.WithMeterProvider(provider))
//	usersAPI := resilient.MustNew(
//		resilient.WithName("users-api"),
//		resilient.WithHooks(m.Hooks()),
//	)
//
// # Instruments
//
// OpenTelemetry's semantic conventions define no instruments for retries or
// circuit breakers, so these follow the conventions' general rules: names in
// a "resilient." namespace, durations as histograms in seconds named
// "….duration" (with the bucket boundaries the HTTP conventions advise),
// counters named by the plural of what they count with a curly-brace unit,
// an enumerated state as a 0/1 instrument per state (as "hw.status" does):
//
//	instrument                    kind             unit          attributes
//	resilient.calls               Int64Counter     {call}        executor, reason
//	resilient.call.duration       Float64Histogram s             executor, reason
//	resilient.attempts            Int64Counter     {attempt}     executor, outcome
//	resilient.attempt.duration    Float64Histogram s             executor, outcome
//	resilient.retries             Int64Counter     {retry}       executor, source
//	resilient.rejections          Int64Counter     {rejection}   executor, policy
//	resilient.breaker.state       Int64Gauge       {state}       breaker, state
//	resilient.breaker.transitions Int64Counter     {transition}  breaker, state
//
// Through OpenTelemetry's Prometheus exporter (or any OTLP to Prometheus
// translation) these are the families of contrib/prometheus and of
// [resilient.TextMetrics], with the same labels and label values:
// resilient.calls becomes resilient_calls_total{executor,reason},
// resilient.call.duration resilient_call_duration_seconds, and so on (a
// test runs the exporter and compares). One naming table serves the
// three, and so does one dashboard.
//
// Decision: the attribute keys are the Prometheus label names (executor,
// reason, outcome, source, policy, breaker, state), not keys in a
// namespace of their own ("resilient.executor.name"), which the
// conventions would prefer: the exporter would carry those over as labels
// (resilient_executor_name) that no dashboard of the other two adapters
// knows. The instrument names carry the namespace. For the same reason
// the state instrument's unit is {state}, an annotation the exporter
// drops, and not "1", to which it adds a _ratio suffix.
//
// Attribute values are those of [resilient.Reason.Label],
// [resilient.Outcome.Label], [resilient.DelaySource.Label] and
// [resilient.State.Label] (snake_case: reason=max_elapsed,
// state=half_open), the policy names of [resilient.RejectedBy], and the
// executor's and breaker's names made valid UTF-8.
//
// The meter's instrumentation scope is [ScopeName] at [Version].
//
// # Cardinality
//
// Attributes carry only the names a program gives its executors and
// breakers, never a URL, and a host only where the program chose one (a
// keyed set of breakers names each breaker after its key). The number of
// names is bounded all the same, executors and breakers apart (see
// [WithMaxNames]); events of names beyond the bound are recorded under
// [resilient.OverflowName], which records breaker transitions but no
// breaker state.
//
// Measurements are made with context.Background(): the executor's hooks
// carry no context, so exemplars are not linked to traces.
//
// # Errors
//
// An invalid option is a [*resilient.OptionError] that names it with this
// package's name, such as "resilient: otel.WithMaxNames: n must be >= 1,
// got 0" (Option "otel.WithMaxNames"), and matches
// [resilient.ErrInvalidOption]. [New] reports every invalid option,
// joined (errors.As finds the first).
package otel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	otelglobal "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/contrib/otel/internal/names"
)

// ScopeName is the instrumentation scope of the meter the instruments are
// made with.
const ScopeName = "github.com/resilient-go/resilient/contrib/otel"

// Attribute keys of the measurements: the label names of contrib/prometheus
// and [resilient.TextMetrics].
const (
	AttrExecutor    = attribute.Key("executor") // the executor's name ([resilient.WithName])
	AttrReason      = attribute.Key("reason")   // why a call ended: [resilient.Reason.Label]
	AttrOutcome     = attribute.Key("outcome")  // an attempt's outcome: [resilient.Outcome.Label]
	AttrDelaySource = attribute.Key("source")   // a retry's delay source: [resilient.DelaySource.Label]
	AttrPolicy      = attribute.Key("policy")   // the refusing policy: [resilient.RejectedBy]
	AttrBreaker     = attribute.Key("breaker")  // the breaker's name ([resilient.WithBreakerName])
	AttrState       = attribute.Key("state")    // a breaker state: [resilient.State.Label]
)

// defaultBuckets are the bucket boundaries, in seconds, of the duration
// histograms unless WithBuckets says otherwise: those the HTTP semantic
// conventions advise for request durations, 5ms to 10s. Unexported, so
// that no program can change another's default.
var defaultBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Metrics records the metrics of the executors and breakers it hooks into.
// It is safe for concurrent use; once a name has been seen, recording its
// events takes no lock of its own and makes no attribute set.
type Metrics struct {
	calls       metric.Int64Counter
	callDur     metric.Float64Histogram
	attempts    metric.Int64Counter
	attemptDur  metric.Float64Histogram
	retries     metric.Int64Counter
	rejections  metric.Int64Counter
	state       metric.Int64Gauge
	transitions metric.Int64Counter

	executors *names.Table[series]
	breakers  *names.Table[breakerSeries]
}

const (
	numReasons  = int(resilient.ReasonRejected) + 1
	numOutcomes = int(resilient.Ignore) + 1
)

// states are the breaker states recorded, in order.
var states = [...]resilient.State{
	resilient.StateClosed, resilient.StateOpen, resilient.StateHalfOpen,
	resilient.StateForcedOpen, resilient.StateDisabled,
}

// series holds the measurement options of one executor name, each with its
// attribute set made once.
type series struct {
	name     string // made valid UTF-8, as in every attribute set
	reasons  [numReasons]measure
	outcomes [numOutcomes]measure
	sources  [2]measure
}

// breakerSeries holds the measurement options of one breaker name.
type breakerSeries struct {
	mu     sync.Mutex // orders the state updates of concurrent transitions
	states [len(states)]measure
}

// measure is one attribute set as the options of each kind of measurement.
type measure struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newMeasure(kvs ...attribute.KeyValue) measure {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return measure{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

// Option configures [New].
type Option func(*config) error

// optionError is the error of an invalid option of this package: a
// *resilient.OptionError that names the option with the package's name,
// "otel.WithBuckets".
func optionError(option, format string, args ...any) error {
	return &resilient.OptionError{Option: "otel." + option, Err: fmt.Errorf(format, args...)}
}

type config struct {
	provider metric.MeterProvider
	buckets  []float64
	maxNames int
}

// WithMeterProvider sets where the instruments come from. Default: the
// global provider (go.opentelemetry.io/otel.GetMeterProvider) when [New]
// is called, as OpenTelemetry instrumentation does. nil is refused.
func WithMeterProvider(p metric.MeterProvider) Option {
	return func(c *config) error {
		if p == nil {
			return optionError("WithMeterProvider", "nil provider")
		}
		c.provider = p
		return nil
	}
}

// WithBuckets sets the bucket boundaries, in seconds, of the duration
// histograms: at least one, strictly increasing. Default: those the HTTP
// semantic conventions advise, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
// 0.5, 0.75, 1, 2.5, 5, 7.5 and 10. A view of the SDK can override them too.
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

// WithMaxNames bounds how many executor names, and how many breaker names,
// get attributes of their own: n >= 1. Events of further names are
// recorded under [resilient.OverflowName]. Default
// [resilient.DefaultMaxNames].
func WithMaxNames(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return optionError("WithMaxNames", "n must be >= 1, got %d", n)
		}
		c.maxNames = n
		return nil
	}
}

// New makes the instruments; give [Metrics.Hooks] to the executors to be
// measured and [Metrics.OnTransition] to the breakers. An invalid option
// is an error that names it, every one reported (see the package doc's
// Errors), and so is a provider that fails to make an instrument.
func New(opts ...Option) (*Metrics, error) {
	c := config{buckets: append([]float64(nil), defaultBuckets[:]...), maxNames: resilient.DefaultMaxNames}
	var invalid []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			invalid = append(invalid, optionError("New", "nil option"))
		} else if err := o(&c); err != nil {
			invalid = append(invalid, err)
		}
	}
	switch len(invalid) {
	case 0:
	case 1:
		return nil, invalid[0]
	default:
		return nil, errors.Join(invalid...)
	}
	if c.provider == nil {
		c.provider = otelglobal.GetMeterProvider()
	}
	meter := c.provider.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	m := new(Metrics)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		i, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		i, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(c.buckets...))
		errs = append(errs, err)
		return i
	}
	m.calls = counter("resilient.calls", "{call}", "Calls that ended, by executor and reason.")
	m.callDur = histogram("resilient.call.duration", "Duration of calls, attempts and waits together, by executor and reason.")
	m.attempts = counter("resilient.attempts", "{attempt}", "Attempts made, by executor and outcome.")
	m.attemptDur = histogram("resilient.attempt.duration", "Duration of attempts, by executor and outcome.")
	m.retries = counter("resilient.retries", "{retry}", "Retries scheduled, by executor and the source of their delay.")
	m.rejections = counter("resilient.rejections", "{rejection}", "Calls refused by a policy, by executor and policy.")
	m.transitions = counter("resilient.breaker.transitions", "{transition}", "State changes of each breaker, by the state entered.")
	var err error
	m.state, err = meter.Int64Gauge("resilient.breaker.state", metric.WithUnit("{state}"),
		metric.WithDescription("State of each breaker: 1 for the state it is in, 0 for the others."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("resilient: otel.New: %w", err)
	}
	m.executors = names.New(c.maxNames, resilient.OverflowName, newSeries)
	m.breakers = names.New(c.maxNames, resilient.OverflowName, newBreakerSeries)
	return m, nil
}

// MustNew is like [New] but panics on an error.
func MustNew(opts ...Option) *Metrics {
	m, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return m
}

func newSeries(name string) *series {
	s := &series{name: name} // clean: the table cleans names
	ex := AttrExecutor.String(name)
	for r := range numReasons {
		s.reasons[r] = newMeasure(ex, AttrReason.String(resilient.Reason(r).Label()))
	}
	for o := range numOutcomes {
		s.outcomes[o] = newMeasure(ex, AttrOutcome.String(resilient.Outcome(o).Label()))
	}
	for _, src := range []resilient.DelaySource{resilient.FromBackoff, resilient.FromHint} {
		s.sources[src] = newMeasure(ex, AttrDelaySource.String(src.Label()))
	}
	return s
}

func newBreakerSeries(name string) *breakerSeries {
	s := new(breakerSeries)
	br := AttrBreaker.String(name) // clean: the table cleans names
	for i, st := range states {
		s.states[i] = newMeasure(br, AttrState.String(st.Label()))
	}
	return s
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
			ms := &m.executors.Get(ev.Name).outcomes[o]
			ctx := context.Background()
			m.attempts.Add(ctx, 1, ms.add...)
			m.attemptDur.Record(ctx, ev.Duration.Seconds(), ms.record...)
		},
		OnRetry: func(ev resilient.RetryEvent) {
			src := 0
			if ev.Source == resilient.FromHint {
				src = 1
			}
			m.retries.Add(context.Background(), 1, m.executors.Get(ev.Name).sources[src].add...)
		},
		OnDone: func(ev resilient.DoneEvent) {
			r := int(ev.Reason)
			if r >= numReasons {
				return
			}
			s := m.executors.Get(ev.Name)
			ms := &s.reasons[r]
			ctx := context.Background()
			m.calls.Add(ctx, 1, ms.add...)
			m.callDur.Record(ctx, ev.Elapsed.Seconds(), ms.record...)
			if ev.Reason == resilient.ReasonRejected {
				if p := resilient.RejectedBy(ev.Err); p != "" {
					// Refusals are rare: their set is made each time.
					m.rejections.Add(ctx, 1, metric.WithAttributes(AttrExecutor.String(s.name), AttrPolicy.String(p)))
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
// so that its initial state is recorded at once.
func (m *Metrics) OnTransition(t resilient.Transition) {
	i := int(t.To)
	if i >= len(states) {
		return
	}
	s := m.breakers.Get(t.Name)
	ctx := context.Background()
	if t.From != t.To {
		m.transitions.Add(ctx, 1, s.states[i].add...)
	}
	if s == m.breakers.Overflow() {
		return // the overflow has no one state
	}
	// A breaker delivers its events one at a time, but two breakers of one
	// name (a program's mistake) could interleave: the lock keeps the
	// gauge at one state.
	s.mu.Lock()
	defer s.mu.Unlock()
	for j := range states {
		v := int64(0)
		if j == i {
			v = 1
		}
		m.state.Record(ctx, v, s.states[j].record...)
	}
}
