package resilient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a [Breaker] built without options.
const (
	// DefaultFailureRate: the breaker opens when half the calls in its
	// window fail.
	DefaultFailureRate = 0.5
	// DefaultCountWindow: the window is the last 100 calls.
	DefaultCountWindow = 100
	// DefaultMinCalls: no rate is judged on fewer than 20 calls (or the
	// whole count window, if it is smaller).
	DefaultMinCalls = 20
	// DefaultOpenDuration: an open breaker lets a probe through after 30s.
	DefaultOpenDuration = 30 * time.Second
	// DefaultHalfOpenProbes: one probe at a time in half-open.
	DefaultHalfOpenProbes = 1
	// DefaultHalfOpenMaxWait: a probe round that has not ended a minute
	// after its first probe sends the breaker back to open.
	DefaultHalfOpenMaxWait = time.Minute
)

// Limits of the breaker's options.
const (
	// MaxCountWindow is the largest count window, in calls.
	MaxCountWindow = 1 << 20
	// MaxTimeBuckets is the most buckets a time window may have.
	MaxTimeBuckets = 1000
	// MaxProbes bounds both the half-open probes and the successes needed.
	MaxProbes = 1<<16 - 1
)

// ErrOpen is what a [Breaker] refuses calls with while it is open, forced
// open, or half-open with every probe slot taken. The error returned is an
// [*OpenError] with the details; it matches ErrOpen with [errors.Is].
var ErrOpen = errors.New("resilient: breaker open")

// ErrProbeTimeout is the cause of a reopening when the probes of a
// half-open round did not all report back within the half-open max wait
// (see [WithHalfOpenMaxWait]).
var ErrProbeTimeout = errors.New("resilient: half-open probes did not report in time")

// State is a [Breaker]'s state.
type State uint8

const (
	// StateClosed lets every call through and measures them.
	StateClosed State = iota
	// StateOpen refuses every call until the open duration has passed.
	StateOpen
	// StateHalfOpen lets a bounded number of probes through; their results
	// close the breaker again or reopen it.
	StateHalfOpen
	// StateForcedOpen refuses every call until [Breaker.Reset].
	StateForcedOpen
	// StateDisabled lets every call through and measures them, but never
	// opens, until [Breaker.Reset].
	StateDisabled
	numStates
)

var stateNames = [...]string{
	StateClosed:     "closed",
	StateOpen:       "open",
	StateHalfOpen:   "half-open",
	StateForcedOpen: "forced-open",
	StateDisabled:   "disabled",
}

// String returns the state's lower-case name: "closed", "open",
// "half-open", "forced-open" or "disabled".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes the state as its name, so that a [Snapshot] reads
// well as JSON.
func (s State) MarshalText() ([]byte, error) {
	if s >= numStates {
		return nil, fmt.Errorf("resilient: unknown breaker state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state's name, as written by MarshalText.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("resilient: unknown breaker state %q", b)
}

// OpenError is the error a [Breaker] refuses a call with. It matches
// [ErrOpen] with [errors.Is].
//
// Decision: OpenError does not unwrap to Cause. A refused call did not fail
// with the error that tripped the breaker, and errors.Is(err, io.EOF) being
// true for a call that never ran would mislead the caller's own
// classification. Cause is there to be read, not matched.
//
// Decision: the time until a probe is allowed is kept as an absolute time,
// Until, and [OpenError.RetryAfter] computes what is left of it when asked.
// The breaker builds one OpenError per state change and hands the same
// value to every refused call, so a refusal costs a few nanoseconds and no
// allocation and no clock read; the error is immutable and stays truthful.
type OpenError struct {
	// Name is the breaker's name (see [WithBreakerName]).
	Name string
	// State is the breaker's state at the refusal: [StateOpen],
	// [StateForcedOpen] or [StateHalfOpen] (every probe slot taken).
	State State
	// Until is when the breaker lets a probe through, for [StateOpen];
	// the zero time otherwise (a forced-open breaker waits for a person, a
	// half-open one for its probes).
	Until time.Time
	// Cause is the error that opened the breaker: the failure that tripped
	// it, a failed probe's error, [ErrProbeTimeout], or nil when it was
	// opened by hand. A cause restored from a [Snapshot] keeps only its
	// message.
	Cause error
}

// Error reads, for example,
// `resilient: breaker "users": open, retry in 3s: connection refused`.
func (e *OpenError) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, "resilient: breaker"...)
	if e.Name != "" {
		b = append(b, ' ')
		b = strconv.AppendQuote(b, e.Name)
	}
	b = append(b, ": "...)
	b = append(b, e.State.String()...)
	switch e.State {
	case StateOpen:
		b = append(b, ", retry in "...)
		b = append(b, e.RetryAfter().String()...)
	case StateHalfOpen:
		b = append(b, ", probes in flight"...)
	}
	if e.Cause != nil {
		b = append(b, ": "...)
		b = append(b, e.Cause.Error()...)
	}
	return string(b)
}

// Is reports whether target is [ErrOpen].
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter returns the time left until the breaker lets a probe through
// (0 once it has passed, and for a forced-open or half-open breaker). It
// makes the refusal a hint for an outer executor (see [RetryAfter]): an
// outer retry loop waits for the breaker rather than knocking on it.
func (e *OpenError) RetryAfter() time.Duration {
	if e.Until.IsZero() {
		return 0
	}
	return max(time.Until(e.Until), 0)
}

// Breaker is a circuit breaker: it guards one upstream, watching the
// outcomes of calls to it, and refuses calls for a while once the upstream
// is failing, so that callers fail fast and the upstream can recover.
//
// # Model
//
// Closed, it lets every call through and records its outcome in a sliding
// window: the last N calls ([WithCountWindow], default 100) or the last d
// of time ([WithTimeWindow]). Once the window holds at least
// [WithMinCalls] calls (default 20), it opens when the failure rate
// reaches [WithFailureRate] (default 0.5), or the slow-call rate reaches
// its threshold ([WithSlowCalls], off by default); it also opens after n
// failures in a row ([WithConsecutiveFailures], off by default).
//
// The rates are judged when a failure or a slow call is recorded, when a
// success brings a count window to its minimum number of calls, and at each
// tick of a time window (see [WithTimeWindow]); no other success can raise
// a rate, so the success path stays a few atomic operations.
//
// Open, it refuses every call with an [*OpenError] (matching [ErrOpen])
// for [WithOpenDuration] (default 30s), which can grow with each failed
// probe round ([WithOpenBackoff]) or follow a server's hint
// ([WithOpenFromHint]). Then it becomes half-open on its own, by a timer:
// [Breaker.State] is always truthful, even with no calls arriving.
//
// Half-open, it lets at most [WithHalfOpenProbes] calls (default 1) be in
// flight at once, closes after [WithHalfOpenSuccesses] of them succeeded
// (default: as many as the probes) and reopens at the first failure. A
// round whose probes do not all report back within [WithHalfOpenMaxWait]
// (default 1m, from its first probe) reopens it too, and the late results
// are ignored.
//
// By hand: [Breaker.ForceOpen], [Breaker.Disable] (always closed, still
// measuring) and [Breaker.Reset] (closed, with a fresh window; it also
// ends a force-open or disable).
//
// # Use
//
// Give it to executors with [WithBreaker]: it counts every attempt, a
// refusal ends the call at once (never retried), and the executor's
// classification decides what counts: [Success] is a success, [Retry] and
// [Fail] are failures, [Ignore] (the caller's own cancellation) counts
// neither way. An upstream asking for less traffic (an error marked
// [Throttled], or carrying a [RetryAfter] hint: HTTP 429, or 503 with
// Retry-After) is not failing, and counts neither way either, unless
// [WithOpenFromHint] is set. Code that cannot wrap a function uses [Breaker.Allow] and
// [Breaker.Record] instead.
//
// Each state change makes a new generation; a result from an older
// generation (a call admitted before the change) is ignored, so late
// results never pollute the current window or probe round.
//
// # Cost
//
// A Breaker is safe for concurrent use and meant to be shared by every call
// to one upstream. In the closed state a successful call takes no lock,
// reads no clock and allocates nothing; once a count window is full of
// successes, it writes nothing at all. A refusal costs a few nanoseconds and
// no allocation. Locks are taken on state changes only. A closed, idle
// breaker holds no timer. [WithTotals] adds one atomic add per call and per
// refusal, on a counter of its own cache line, one of several, so that it
// scales with cores.
//
// The zero Breaker is not usable: build one with [NewBreaker].
type Breaker struct {
	// word is the state machine, in one atomic word (see the word*
	// constants): state, half-open probes in flight, half-open successes,
	// whether the round's max-wait timer is armed, and the generation.
	// Its state and generation change only under mu; the probe counts
	// change by compare-and-swap, which also checks the generation.
	word atomic.Uint64
	// win is the window of the current closed (or disabled) period; it is
	// replaced, never cleared, on entering closed, so a late writer can
	// only touch a window nobody reads. It carries the generation whose
	// results it counts (see window.gen).
	win atomic.Pointer[window]
	// refusal is the error handed to refused calls in the current state.
	refusal atomic.Pointer[OpenError]
	// change, when set, is closed at the next change of state (see
	// changed); made only when a waiting call asks for it.
	change atomic.Pointer[chan struct{}]

	cfg *breakerConfig

	totals *totals // since the breaker was built, with WithTotals; else nil

	mu          sync.Mutex
	timer       *time.Timer // open → half-open, or the half-open max wait
	maxWaitID   uint64      // the armed max-wait timer's (see armMaxWait); 0: none
	armings     uint64      // max-wait timers armed so far
	since       time.Time   // when the current state began
	until       time.Time   // open: when half-open begins
	rounds      int         // failed probe rounds since last closed
	prevOpen    time.Duration
	cause       error
	pending     []pendingEvent
	dispatching bool
}

// The layout of Breaker.word.
const (
	wordStateMask  = 1<<3 - 1
	wordProbeShift = 3
	wordProbeOne   = 1 << wordProbeShift
	wordSuccShift  = 19
	wordSuccOne    = 1 << wordSuccShift
	wordCountMask  = 1<<16 - 1
	wordArmed      = 1 << 35
	wordGenShift   = 36
	// Generations wrap after 2^28 state changes; a result is taken for
	// current only if it comes from exactly the current generation.
	wordGenMask = 1<<28 - 1
)

func wordState(w uint64) State { return State(w & wordStateMask) }
func wordGen(w uint64) uint64  { return w >> wordGenShift }
func wordProbes(w uint64) int  { return int(w>>wordProbeShift) & wordCountMask }
func wordSuccs(w uint64) int   { return int(w>>wordSuccShift) & wordCountMask }

// Tokens: the generation, shifted, and the probe bit.
const tokenProbe = 1

// anyGen, given to transition, matches every generation (manual changes).
const anyGen = ^uint64(0)

// BreakerOption configures a [Breaker] built by [NewBreaker] (or a set
// built by [NewBreakers]).
type BreakerOption interface {
	applyBreaker(*breakerConfig) error
}

type breakerOptionFunc func(*breakerConfig) error

func (f breakerOptionFunc) applyBreaker(c *breakerConfig) error { return f(c) }

type breakerConfig struct {
	name          string
	failureRate   float64
	slowThreshold time.Duration // 0: slow calls not counted
	slowRate      float64
	consecutive   int64 // 0: off
	countN        int   // count window; 0 when timed
	timeD         time.Duration
	buckets       int
	minCalls      int // 0: default
	openDur       time.Duration
	backoffMax    time.Duration // 0: no backoff
	backoffJitter Jitter
	hintMax       time.Duration // 0: hints not used
	probes        int
	successes     int // 0: = probes
	maxWait       time.Duration
	listeners     []func(Transition)
	store         Store
	totals        bool
}

func newBreakerConfig(opts []BreakerOption) (*breakerConfig, error) {
	c := &breakerConfig{
		failureRate: DefaultFailureRate,
		countN:      DefaultCountWindow,
		openDur:     DefaultOpenDuration,
		probes:      DefaultHalfOpenProbes,
		maxWait:     DefaultHalfOpenMaxWait,
	}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewBreaker", "nil option"))
		} else if err := o.applyBreaker(c); err != nil {
			errs = append(errs, err)
		}
	}
	// Options are also checked against each other, with the values the
	// valid ones set, and every problem is reported together.
	if c.minCalls == 0 {
		c.minCalls = DefaultMinCalls
		if c.countN > 0 {
			c.minCalls = min(c.minCalls, c.countN)
		}
	} else if c.countN > 0 && c.minCalls > c.countN {
		errs = append(errs, optionError("WithMinCalls", "n must not exceed the count window (%d), got %d", c.countN, c.minCalls))
	}
	if c.backoffMax > 0 && c.backoffMax < c.openDur {
		errs = append(errs, optionError("WithOpenBackoff", "max must be >= the open duration (%v), got %v", c.openDur, c.backoffMax))
	}
	if c.successes == 0 {
		c.successes = c.probes
	}
	if c.store != nil && c.name == "" {
		errs = append(errs, optionError("WithStore", "the breaker needs a name (WithBreakerName) to be stored under"))
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	c.listeners = c.listeners[:len(c.listeners):len(c.listeners)]
	return c, nil
}

// WithBreakerName names the breaker in its errors, events and store key
// (an upstream's name, such as "users-api"). Default "".
func WithBreakerName(name string) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		c.name = name
		return nil
	})
}

func validRate(opt, what string, r float64) error {
	if !(r > 0 && r <= 1) {
		return optionError(opt, "%s must be in (0, 1], got %v", what, r)
	}
	return nil
}

// WithFailureRate sets the failure rate, over the window, at which the
// closed breaker opens: rate in (0, 1]; 1 opens only when every call in
// the window failed. Default [DefaultFailureRate] (0.5). 0, negative
// values, values above 1 and NaN are refused.
func WithFailureRate(rate float64) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if err := validRate("WithFailureRate", "rate", rate); err != nil {
			return err
		}
		c.failureRate = rate
		return nil
	})
}

// WithSlowCalls counts calls that run threshold or longer as slow, whatever
// their result, and opens the closed breaker when the slow-call rate over
// the window reaches rate; a slow probe in half-open counts as a failed
// probe. threshold must be > 0 and rate in (0, 1]. Default: off (no clock
// is read for the breaker). The executor measures each attempt for it; the
// two-step API needs [Breaker.Done] with a Duration.
func WithSlowCalls(threshold time.Duration, rate float64) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if threshold <= 0 {
			return optionError("WithSlowCalls", "threshold must be > 0, got %v", threshold)
		}
		if err := validRate("WithSlowCalls", "rate", rate); err != nil {
			return err
		}
		c.slowThreshold, c.slowRate = threshold, rate
		return nil
	})
}

// WithConsecutiveFailures also opens the closed breaker after n failures
// in a row, whatever the window holds (no minimum number of calls). n must
// be >= 1. Default: off.
func WithConsecutiveFailures(n int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if n < 1 {
			return optionError("WithConsecutiveFailures", "n must be >= 1, got %d", n)
		}
		c.consecutive = int64(n)
		return nil
	})
}

// WithCountWindow makes the window the last n calls: n in [1,
// [MaxCountWindow]]. This is the default, with [DefaultCountWindow] (100).
// It replaces a [WithTimeWindow] given before it.
func WithCountWindow(n int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if n < 1 || n > MaxCountWindow {
			return optionError("WithCountWindow", "n must be in [1, %d], got %d", MaxCountWindow, n)
		}
		c.countN, c.timeD, c.buckets = n, 0, 0
		return nil
	})
}

// WithTimeWindow makes the window the calls of the last d, kept in buckets
// of d/buckets each: a call counts for between d-d/buckets and d after it
// ends. d must be > 0, buckets in [1, [MaxTimeBuckets]], and d/buckets at
// least a millisecond. It replaces a [WithCountWindow] given before it.
//
// Decision: the window does not read the clock per call. A timer moves it
// on by one bucket every d/buckets, and only while it holds calls; an idle
// window holds no timer. A success costs one atomic add on one of several
// counters, each on its own cache line, so that parallel callers seldom
// share one; a failure, one add on the current bucket.
func WithTimeWindow(d time.Duration, buckets int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		switch {
		case d <= 0:
			return optionError("WithTimeWindow", "d must be > 0, got %v", d)
		case buckets < 1 || buckets > MaxTimeBuckets:
			return optionError("WithTimeWindow", "buckets must be in [1, %d], got %d", MaxTimeBuckets, buckets)
		case d/time.Duration(buckets) < time.Millisecond:
			return optionError("WithTimeWindow", "a bucket (d/buckets) must be at least 1ms, got %v", d/time.Duration(buckets))
		}
		c.countN, c.timeD, c.buckets = 0, d, buckets
		return nil
	})
}

// WithMinCalls sets how many calls the window must hold before a rate is
// judged: n >= 1, and no larger than a count window. Default
// [DefaultMinCalls] (20), or the count window's size if smaller. 0 and
// negative values are refused.
func WithMinCalls(n int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if n < 1 {
			return optionError("WithMinCalls", "n must be >= 1, got %d", n)
		}
		c.minCalls = n
		return nil
	})
}

// WithOpenDuration sets how long the breaker stays open before it lets a
// probe through: d > 0. Default [DefaultOpenDuration] (30s). It is the
// first step of [WithOpenBackoff], when that is set.
func WithOpenDuration(d time.Duration) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if d <= 0 {
			return optionError("WithOpenDuration", "d must be > 0, got %v", d)
		}
		c.openDur = d
		return nil
	})
}

// WithOpenBackoff makes the open duration grow with each failed probe
// round: the open duration, then twice it, four times, … up to max,
// randomised by j so that a fleet of breakers does not probe in lockstep
// ([ProportionalJitter](0.2) suits; [FullJitter] may reopen almost at
// once). A successful round resets it. max must be >= the open duration;
// an invalid jitter is refused. Default: no growth.
func WithOpenBackoff(max time.Duration, j Jitter) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if max <= 0 {
			return optionError("WithOpenBackoff", "max must be > 0, got %v", max)
		}
		if err := j.validate(); err != nil {
			return &OptionError{Option: "WithOpenBackoff", Err: err}
		}
		c.backoffMax, c.backoffJitter = max, j
		return nil
	})
}

// WithOpenFromHint makes a server's hint hold the breaker open: an error
// that carries one (see [RetryAfter]; any error with a RetryAfter()
// time.Duration method) counts as a failure, which by default it does not
// (see [Throttled]), and when such an error opens the breaker (or reopens
// it, answering a probe), the breaker stays open for the hint, capped at
// max, instead of the computed duration. max must be > 0. Default: hinted
// errors count neither way, and open durations do not follow hints.
//
// Decision: the hint replaces the computed duration rather than being a
// floor for it. The server knows when it expects to be back; staying open
// longer wastes that, and probing sooner is what it asked us not to do.
func WithOpenFromHint(max time.Duration) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if max <= 0 {
			return optionError("WithOpenFromHint", "max must be > 0, got %v", max)
		}
		c.hintMax = max
		return nil
	})
}

// WithHalfOpenProbes sets how many probes may be in flight at once in
// half-open: n in [1, [MaxProbes]]. Default [DefaultHalfOpenProbes] (1).
// Calls beyond it are refused with [ErrOpen].
func WithHalfOpenProbes(n int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if n < 1 || n > MaxProbes {
			return optionError("WithHalfOpenProbes", "n must be in [1, %d], got %d", MaxProbes, n)
		}
		c.probes = n
		return nil
	})
}

// WithHalfOpenSuccesses sets how many successful probes close the breaker:
// m in [1, [MaxProbes]]; it may exceed the probes in flight at once, which
// are then let through as earlier ones succeed. Default: the number of
// probes ([WithHalfOpenProbes]).
func WithHalfOpenSuccesses(m int) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if m < 1 || m > MaxProbes {
			return optionError("WithHalfOpenSuccesses", "m must be in [1, %d], got %d", MaxProbes, m)
		}
		c.successes = m
		return nil
	})
}

// WithHalfOpenMaxWait bounds a half-open probe round to d from its first
// probe: if it has not closed or reopened the breaker by then (a probe hung,
// or its permit was never reported), the breaker reopens with cause
// [ErrProbeTimeout] and the late results are ignored. d must be > 0.
// Default [DefaultHalfOpenMaxWait] (1m). A half-open breaker that no call
// reaches waits for one without a timer.
func WithHalfOpenMaxWait(d time.Duration) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if d <= 0 {
			return optionError("WithHalfOpenMaxWait", "d must be > 0, got %v", d)
		}
		c.maxWait = d
		return nil
	})
}

// WithTotals makes the breaker count, since it was built, every call and
// failure it is told of and every call it refuses, for rates over any
// interval (see the Total fields of [BreakerMetrics]). Default: off, and
// the totals read zero.
//
// Decision: totals are an option because counting costs the hot path: one
// atomic add per call, about 6ns on a 2-core machine (BenchmarkBreaker,
// 2026-12-03), where a call in a calm window otherwise writes nothing and
// a refusal otherwise reads two words. An executor's hooks (TextMetrics,
// contrib/prometheus, contrib/otel) count calls, attempts and rejections
// already; these totals serve a breaker used on its own.
func WithTotals() BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		c.totals = true
		return nil
	})
}

// WithStateListener adds a function called with every state change, and
// once with the initial state when the breaker is built (From == To), so
// that a gauge starts truthful. Listeners run in the order added, one event
// at a time and in the order of the changes, outside the breaker's locks:
// they may call the breaker's methods, [Breaker.State] and
// [Breaker.Metrics] included. A change made by a listener is delivered
// after the current event. They run on the goroutine that made the change
// (a caller's, or the breaker's timer's) and should be quick. nil is
// refused.
func WithStateListener(fn func(Transition)) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if fn == nil {
			return optionError("WithStateListener", "nil listener")
		}
		c.listeners = append(c.listeners[:len(c.listeners):len(c.listeners)], fn)
		return nil
	})
}

// WithBreaker guards every attempt of the executor with br: shorthand for
// WithPolicy(br). A nil br is refused.
func WithBreaker(br *Breaker) Option {
	return optionFunc(func(e *Executor) error {
		if br == nil {
			return optionError("WithBreaker", "nil breaker")
		}
		return WithPolicy(br).apply(e)
	})
}

// Transition tells of a [Breaker]'s change of state, or of its initial
// state (From == To) when a listener is first given it.
type Transition struct {
	// Name is the breaker's name.
	Name string
	// From and To are the states before and after.
	From, To State
	// Metrics are the breaker's measures at the moment of the change, in
	// the state it leaves: why it tripped.
	Metrics BreakerMetrics
	// Cause is the error that opened the breaker (see [OpenError.Cause]);
	// nil for other changes.
	Cause error
	// At is when the change happened.
	At time.Time
}

// BreakerMetrics is what a [Breaker] knows at one moment.
type BreakerMetrics struct {
	// State is the breaker's state.
	State State
	// Calls, Failures and SlowCalls count the window: the calls of the
	// current closed (or disabled) period, or of the last one while open
	// or half-open (those that tripped it).
	Calls, Failures, SlowCalls int
	// FailureRate and SlowCallRate are Failures/Calls and SlowCalls/Calls
	// (0 with no calls).
	FailureRate, SlowCallRate float64
	// ConsecutiveFailures counts the failures since the last success.
	ConsecutiveFailures int
	// Probes is the number of half-open probes in flight, and
	// ProbeSuccesses how many succeeded in this round.
	Probes, ProbeSuccesses int
	// Since is when the current state began, and InState how long ago.
	Since   time.Time
	InState time.Duration
	// TotalCalls, TotalFailures and TotalRejections count since the
	// breaker was built, for rates over any interval (a dashboard's):
	// every result reported to it that counted as a success or a failure
	// (not those counted neither way, such as the caller's cancellation or
	// a throttled answer), probes and results of earlier states included;
	// the failures among them; and the calls and retries it refused. They
	// are counted only with [WithTotals] (otherwise zero), and only grow. Each is a sum of per-core-ish counters read one after the
	// other, so under concurrent calls they may disagree by the calls in
	// flight.
	TotalCalls, TotalFailures, TotalRejections uint64
}

type pendingEvent struct {
	ev   Transition
	snap Snapshot
	save bool
}

// NewBreaker builds a breaker. With no options it opens when half of the
// last 100 calls fail (with at least 20 calls), stays open 30s, then lets
// one probe through, which closes it or reopens it. An invalid option is an
// error that names it; nothing is built.
//
// With [WithStore], the breaker's saved state is loaded now: an open
// breaker stays open only for what is left of its open duration. A store
// that cannot load makes NewBreaker fail.
func NewBreaker(opts ...BreakerOption) (*Breaker, error) {
	c, err := newBreakerConfig(opts)
	if err != nil {
		return nil, err
	}
	var snap *Snapshot
	if c.store != nil {
		s, ok, err := c.store.Load(context.Background(), c.name)
		if err != nil {
			return nil, fmt.Errorf("resilient: WithStore: load %q: %w", c.name, err)
		}
		if ok {
			snap = &s
		}
	}
	return newBreaker(c, snap)
}

// MustNewBreaker is like [NewBreaker] but panics on an invalid option. It
// serves package-level variables, like regexp.MustCompile.
func MustNewBreaker(opts ...BreakerOption) *Breaker {
	b, err := NewBreaker(opts...)
	if err != nil {
		panic(err)
	}
	return b
}

func newBreaker(c *breakerConfig, snap *Snapshot) (*Breaker, error) {
	b, err := buildBreaker(c, snap)
	if err != nil {
		return nil, err
	}
	b.dispatch()
	return b, nil
}

// buildBreaker builds a breaker whose initial event is queued, not yet
// delivered (see dispatch).
func buildBreaker(c *breakerConfig, snap *Snapshot) (*Breaker, error) {
	b := &Breaker{cfg: c}
	if c.totals {
		b.totals = new(totals)
	}
	// Generation 1: the zero Permit is never current.
	b.word.Store(1 << wordGenShift)
	b.win.Store(newWindow(b, 1))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.since = time.Now()
	b.refusal.Store(b.refusalLocked(StateOpen))
	state := StateClosed
	if snap != nil {
		if err := b.restoreLocked(*snap, false); err != nil {
			return nil, err
		}
		state = wordState(b.word.Load())
	}
	b.pending = append(b.pending, pendingEvent{ev: Transition{
		Name: c.name, From: state, To: state, Metrics: b.metricsLocked(b.since), At: b.since,
	}})
	return b, nil
}

// stop stops the breaker's timer, for a breaker built but never used.
func (b *Breaker) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

// Name returns the breaker's name (see [WithBreakerName]).
func (b *Breaker) Name() string { return b.cfg.name }

// State returns the breaker's state now. An open breaker turns half-open by
// a timer, so the state is truthful even with no calls arriving.
func (b *Breaker) State() State { return wordState(b.word.Load()) }

// Allow asks for a permit to make one call: a nil error admits it, and the
// permit must then be given back exactly once, to [Breaker.Record] or
// [Breaker.Done]. A refusal is an [*OpenError] matching [ErrOpen]. It is
// the first half of the two-step API, for code that cannot wrap a
// function:
//
//	p, err := br.Allow()
//	if err != nil {
//		return err // the breaker is open
//	}
//	resp, err := client.Do(req)
//	br.Record(p, err)
func (b *Breaker) Allow() (Permit, error) {
	w := b.word.Load()
	switch wordState(w) {
	case StateClosed, StateDisabled:
		return Permit{Token: wordGen(w) << 1}, nil
	case StateOpen, StateForcedOpen:
		// The refusal is stored before the state that uses it.
		b.totals.reject()
		return Permit{}, b.refusal.Load()
	}
	return b.allowSlow(w)
}

func (b *Breaker) allowSlow(w uint64) (Permit, error) {
	for {
		switch wordState(w) {
		case StateClosed, StateDisabled:
			return Permit{Token: wordGen(w) << 1}, nil
		case StateHalfOpen:
			if wordProbes(w) >= b.cfg.probes {
				b.totals.reject()
				return Permit{}, b.refusal.Load()
			}
			nw := w + wordProbeOne
			first := w&wordArmed == 0
			if first {
				nw |= wordArmed
			}
			if b.word.CompareAndSwap(w, nw) {
				if first {
					b.armMaxWait(wordGen(w))
				}
				return Permit{Token: wordGen(w)<<1 | tokenProbe}, nil
			}
			w = b.word.Load()
		default:
			b.totals.reject()
			return Permit{}, b.refusal.Load()
		}
	}
}

// Admit implements [Policy]: it is [Breaker.Allow].
func (b *Breaker) Admit(context.Context, int) (Permit, error) { return b.Allow() }

// AllowRetry implements [RetryGate]: while the breaker is open or forced
// open it refuses a retry before the executor waits for it, so the call
// ends at once with its last attempt's result (an HTTP response is kept,
// not released for a retry that the breaker would refuse), and no hedge is
// started.
func (b *Breaker) AllowRetry(int) error {
	switch wordState(b.word.Load()) {
	case StateOpen, StateForcedOpen:
		b.totals.reject()
		return b.refusal.Load()
	}
	return nil
}

// changed returns a channel closed at the breaker's next change of state,
// so that an executor waiting to retry through this breaker learns at once
// that it opened (see watcher). The channel is made on demand, once per
// change, and shared by every waiting call.
func (b *Breaker) changed() <-chan struct{} {
	for {
		if ch := b.change.Load(); ch != nil {
			return *ch
		}
		ch := make(chan struct{})
		if b.change.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// NeedsDuration implements [DurationPolicy]: the executor measures
// attempts for the breaker only when slow calls are counted
// ([WithSlowCalls]).
func (b *Breaker) NeedsDuration() bool { return b.cfg.slowThreshold > 0 }

// Record reports the end of a call admitted by [Breaker.Allow]: a nil err
// is a success, any other a failure, except [context.Canceled] and the
// upstream asking for less traffic (see [Breaker.Done]), which count
// neither way. For finer control (a duration for slow calls, an error that
// is not the upstream's fault) use [Breaker.Done].
//
// Decision: context.Canceled is the caller giving up, not the upstream
// failing, so it is ignored; context.DeadlineExceeded is a timeout, which
// is what a slow or stuck upstream looks like, so it is a failure.
func (b *Breaker) Record(p Permit, err error) {
	o := Success
	if err != nil {
		o = Fail
		if errors.Is(err, context.Canceled) {
			o = Ignore
		}
	}
	b.Done(p, Report{Outcome: o, Err: err})
}

// Done implements [Policy]: it reports the end of a call admitted by
// [Breaker.Allow] or Admit. [Success] counts as a success, [Retry] and
// [Fail] as failures, [Ignore] and [Unclassified] neither way (a probe is
// then released without effect). So does a failure whose error is the
// upstream asking for less traffic: marked [Throttled], or carrying a hint
// ([RetryAfter]; an HTTP 503 with Retry-After), unless [WithOpenFromHint]
// is set, which counts a hinted error as a failure. Duration decides
// slowness when slow calls are counted. A permit from an older generation
// is ignored. Report each permit exactly once: a probe's permit reported
// twice would free another probe's slot (a report that finds no probe in
// flight is ignored).
func (b *Breaker) Done(p Permit, r Report) {
	var fail bool
	switch r.Outcome {
	case Success:
	case Retry, Fail:
		if r.Outcome = b.counts(r); r.Outcome == Ignore { // the upstream asking for less
			if p.Token&tokenProbe != 0 {
				b.probeDone(p.Token>>1, r)
			}
			return
		}
		fail = true
	default:
		if p.Token&tokenProbe != 0 {
			b.probeDone(p.Token>>1, r)
		}
		return
	}
	b.totals.call(fail)
	if p.Token&tokenProbe != 0 {
		b.probeDone(p.Token>>1, r)
		return
	}
	// Decision: a result counts only in the window of its own generation.
	// The window is loaded first and its generation checked, not the
	// breaker's word: a Reset between a check of the word and the load of
	// the window would let a result of the old period into the new one.
	gen := p.Token >> 1
	win := b.win.Load()
	if win.gen.Load() != gen {
		return
	}
	slow := b.cfg.slowThreshold > 0 && r.Duration >= b.cfg.slowThreshold
	if !fail && !slow {
		if win.success(b.cfg.minCalls) {
			b.judge(win, gen, failure{})
		}
		return
	}
	f := failure{}
	if fail {
		f = failure{err: stripMarkers(r.Err), hint: hintOf(r.Err)}
	}
	win.record(fail, slow, f, b.cfg.minCalls)
	b.judge(win, gen, f)
}

// closedSuccess is Done for a success with a non-probe permit tok, for an
// executor whose only policy is this breaker: it reads the breaker's state
// word itself to admit an attempt (see admit) and tells a success here,
// without an interface call or a Report. A success in a calm count window
// (see window.calm) is not recorded at all, whatever generation admitted
// it; a time window counts it on the caller's stripe.
//
// Decision: this coupling of the executor to the breaker's internals stays
// because it pays for itself: BenchmarkBreakerDo, against
// BenchmarkBreakerDoAsPolicy with the same breaker behind the Policy
// interface, measured 16.3ns against 30.2ns a call (medians of ten,
// 2026-12-03, the shared 2-core machine).
func (b *Breaker) closedSuccess(tok uint64) {
	win := b.win.Load()
	if win.calm() {
		b.totals.call(false)
		return
	}
	if win.ring == nil && win.gen.Load() == tok>>1 && win.consec.Load() == 0 {
		b.totals.call(false)
		win.pending[stripeOf()].n.Add(1)
		if !win.ticking.Load() {
			win.startTicking()
		}
		return
	}
	b.Done(Permit{Token: tok}, Report{Attempt: 1, Outcome: Success})
}

// judge opens the closed breaker of generation gen if its window's rates
// (or failure run) have reached their thresholds. f is the failure just
// recorded; without one, the window's last kept failure is the cause.
//
// Decision: rates are judged when a failure or a slow call is recorded,
// and also when a success brings a count window to its minimum number of
// calls (three failures then two successes, with a minimum of five, is 60%
// failed), and at every tick of a time window, whose calls can come back
// up to the minimum through successes alone. Any other success only lowers
// a rate, so the success path stays a few loads.
func (b *Breaker) judge(win *window, gen uint64, f failure) {
	w := b.word.Load()
	if wordState(w) != StateClosed || wordGen(w) != gen || !b.shouldTrip(win) {
		return
	}
	if f.err == nil {
		if last := win.lastFail.Load(); last != nil {
			f = *last
		}
	}
	b.transition(gen, StateClosed, StateOpen, f.err, f.hint)
}

// counts returns how the breaker takes a failure's outcome (Retry or
// Fail): as it is, or Ignore when it is the upstream asking for less
// traffic.
//
// Decision (see Throttled): a throttled attempt counts neither way, in the
// window, the failure run and a probe round alike (a probe answered with a
// 429 frees its slot and leaves the round as it was). With
// WithOpenFromHint, a hinted error counts as a failure again, and when it
// opens the breaker its hint sets the open duration: that option is the
// program saying that the upstream's hint should hold back every caller.
// A throttled error without a hint has no duration to give, so it stays
// neutral even then.
func (b *Breaker) counts(r Report) Outcome {
	if r.Err == nil {
		return r.Outcome
	}
	if hintOf(r.Err) > 0 {
		if b.cfg.hintMax > 0 {
			return r.Outcome
		}
		return Ignore
	}
	if _, ok := find[*throttledError](r.Err); ok {
		return Ignore
	}
	return r.Outcome
}

func (b *Breaker) shouldTrip(win *window) bool {
	c := b.cfg
	if c.consecutive > 0 && win.consec.Load() >= c.consecutive {
		return true
	}
	calls, fails, slows := win.counts()
	if calls < int64(c.minCalls) {
		return false
	}
	if float64(fails) >= c.failureRate*float64(calls) {
		return true
	}
	return c.slowThreshold > 0 && float64(slows) >= c.slowRate*float64(calls)
}

func (b *Breaker) probeDone(gen uint64, r Report) {
	var fail bool
	switch r.Outcome {
	case Success:
		fail = b.cfg.slowThreshold > 0 && r.Duration >= b.cfg.slowThreshold
	case Retry, Fail:
		fail = true
	}
	for {
		w := b.word.Load()
		if wordGen(w) != gen || wordState(w) != StateHalfOpen || wordProbes(w) == 0 {
			return
		}
		if fail {
			b.transition(gen, StateHalfOpen, StateOpen, stripMarkers(r.Err), hintOf(r.Err))
			return
		}
		nw := w - wordProbeOne
		success := r.Outcome == Success
		// Decision: the success count saturates at the number that closes
		// the breaker. Successes that land between the one that reaches it
		// and the transition it makes would otherwise carry out of their
		// field into the generation.
		if success && wordSuccs(w) < b.cfg.successes {
			nw += wordSuccOne
		}
		if b.word.CompareAndSwap(w, nw) {
			switch {
			case success && wordSuccs(nw) >= b.cfg.successes:
				b.transition(gen, StateHalfOpen, StateClosed, nil, 0)
			case !success && wordProbes(nw) == 0 && wordSuccs(nw) == 0:
				b.disarm(gen)
			}
			return
		}
	}
}

// disarm stops the max-wait timer of a probe round in generation gen once
// its last probe in flight has been released with no effect (the caller
// cancelled it, or the upstream asked for less traffic) and no probe has
// succeeded: the round is back to where it was before its first probe,
// and the next probe starts it again, timer included.
//
// Decision: a probe that reported, whatever it reported, has not hung, and
// the max wait exists for probes that hang. Leaving the timer armed would
// reopen the breaker with ErrProbeTimeout, and a longer open time, for a
// round in which nothing went wrong.
func (b *Breaker) disarm(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		w := b.word.Load()
		if wordGen(w) != gen || wordState(w) != StateHalfOpen || wordProbes(w) != 0 || wordSuccs(w) != 0 || w&wordArmed == 0 {
			return // a probe came in meanwhile, or the round is over
		}
		// A probe admitted from here on arms a new timer, after we unlock.
		if b.word.CompareAndSwap(w, w&^wordArmed) {
			break
		}
	}
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.maxWaitID = 0
}

// ForceOpen opens the breaker until [Breaker.Reset]: every call is refused
// with [ErrOpen], and no probe is let through.
func (b *Breaker) ForceOpen() { b.transition(anyGen, numStates, StateForcedOpen, nil, 0) }

// Disable keeps the breaker closed until [Breaker.Reset], whatever happens:
// every call is let through and measured (see [Breaker.Metrics]), but the
// breaker never opens.
func (b *Breaker) Disable() { b.transition(anyGen, numStates, StateDisabled, nil, 0) }

// Reset closes the breaker with a fresh window, from any state: it ends a
// [Breaker.ForceOpen] or [Breaker.Disable], and forgets failed probe
// rounds.
func (b *Breaker) Reset() { b.transition(anyGen, numStates, StateClosed, nil, 0) }

// transition moves the breaker from state from (numStates: any) in
// generation gen (anyGen: any) to state to, and delivers the event. It does
// nothing if the breaker has moved on since.
func (b *Breaker) transition(gen uint64, from, to State, cause error, hint time.Duration) {
	b.mu.Lock()
	b.transitionLocked(gen, from, to, cause, hint)
	b.mu.Unlock()
	b.dispatch()
}

// transitionLocked is transition, with b.mu held and the event queued, not
// delivered.
func (b *Breaker) transitionLocked(gen uint64, from, to State, cause error, hint time.Duration) {
	w := b.word.Load()
	if (gen != anyGen && wordGen(w) != gen) || (from != numStates && wordState(w) != from) {
		return
	}
	open := time.Duration(0)
	if to == StateOpen {
		if wordState(w) == StateHalfOpen {
			b.rounds++
		}
		open = b.openDurationLocked(hint)
	}
	b.enterLocked(to, cause, time.Now(), open, true)
}

// openDurationLocked is how long to stay open now.
func (b *Breaker) openDurationLocked(hint time.Duration) time.Duration {
	c := b.cfg
	if hint > 0 && c.hintMax > 0 {
		return min(hint, c.hintMax)
	}
	if c.backoffMax == 0 {
		return c.openDur
	}
	d := next(Exponential(c.openDur, c.backoffMax), c.backoffJitter, b.rounds+1, b.prevOpen, rand.Float64())
	b.prevOpen = d
	return max(d, time.Millisecond)
}

// enterLocked makes to the current state, in a new generation, and queues
// the event. open is the open duration, for StateOpen. b.mu is held.
func (b *Breaker) enterLocked(to State, cause error, now time.Time, open time.Duration, save bool) {
	w := b.word.Load()
	from := wordState(w)
	ev := Transition{Name: b.cfg.name, From: from, To: to, Cause: cause, At: now,
		Metrics: b.metricsLocked(now)}
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.maxWaitID = 0
	gen := (wordGen(w) + 1) & wordGenMask
	b.since, b.until = now, time.Time{}
	switch to {
	case StateClosed:
		// Closed always starts with a fresh window: out of open, half-open
		// or forced open, and also on a Reset of a closed or disabled one.
		b.rounds, b.prevOpen, b.cause = 0, 0, nil
		b.freshWindowLocked(gen)
	case StateDisabled:
		b.cause = nil
		if from != StateClosed && from != StateDisabled {
			b.freshWindowLocked(gen)
		} else {
			// Disabling a closed breaker goes on measuring in its window,
			// which now counts the new generation's results.
			b.win.Load().gen.Store(gen)
		}
	case StateOpen:
		b.cause = cause
		b.until = now.Add(open)
		b.timer = time.AfterFunc(open, func() {
			b.transition(gen, StateOpen, StateHalfOpen, nil, 0)
		})
		b.win.Load().retire()
	case StateForcedOpen:
		b.cause = cause
		b.win.Load().retire()
	case StateHalfOpen:
		// b.cause stays: the half-open refusal tells what opened it.
		b.win.Load().retire()
	}
	// The refusal is published before the state, so a caller that sees
	// the new state gets a refusal at least as new.
	if to == StateOpen || to == StateForcedOpen || to == StateHalfOpen {
		b.refusal.Store(b.refusalLocked(to))
	}
	for {
		if b.word.CompareAndSwap(w, gen<<wordGenShift|uint64(to)) {
			break
		}
		w = b.word.Load() // only probe counts change outside b.mu
	}
	// Once the new state is visible: a call woken here reads it.
	if ch := b.change.Swap(nil); ch != nil {
		close(*ch) // wakes the calls waiting to retry (see changed)
	}
	b.pending = append(b.pending, pendingEvent{ev: ev, snap: b.snapshotLocked(), save: save && b.cfg.store != nil})
}

// freshWindowLocked replaces the window with one for generation gen. The
// old one is retired, never cleared: a late writer can only touch a window
// that nobody reads. The new window is published before the generation, so
// whoever holds a permit of gen finds it.
func (b *Breaker) freshWindowLocked(gen uint64) {
	b.win.Load().retire()
	b.win.Store(newWindow(b, gen))
}

func (b *Breaker) refusalLocked(s State) *OpenError {
	return &OpenError{Name: b.cfg.name, State: s, Until: b.until, Cause: b.cause}
}

// armMaxWait starts the half-open round's max-wait timer; the first probe
// of a round calls it.
func (b *Breaker) armMaxWait(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if wordGen(b.word.Load()) != gen || b.timer != nil {
		return
	}
	b.armings++
	id := b.armings
	b.maxWaitID = id
	b.timer = time.AfterFunc(b.cfg.maxWait, func() {
		// A timer disarmed (see disarm) as it fired finds its id gone.
		b.mu.Lock()
		if b.maxWaitID == id {
			b.transitionLocked(gen, StateHalfOpen, StateOpen, ErrProbeTimeout, 0)
		}
		b.mu.Unlock()
		b.dispatch()
	})
}

// dispatch delivers queued events, outside b.mu, one at a time and in
// order. Whoever finds nobody delivering delivers everything queued,
// including events queued meanwhile by other goroutines or by listeners.
func (b *Breaker) dispatch() {
	b.mu.Lock()
	if b.dispatching {
		b.mu.Unlock()
		return
	}
	b.dispatching = true
	finished := false
	defer func() {
		// A panicking listener must not stop later deliveries.
		if !finished {
			b.mu.Lock()
			b.dispatching = false
			b.mu.Unlock()
		}
	}()
	for len(b.pending) > 0 {
		p := b.pending[0]
		b.pending[0] = pendingEvent{}
		b.pending = b.pending[1:]
		b.mu.Unlock()
		if p.save {
			// Save errors are the store's to report (see Store).
			_ = b.cfg.store.Save(context.Background(), b.cfg.name, p.snap)
		}
		for _, l := range b.cfg.listeners {
			l(p.ev)
		}
		b.mu.Lock()
	}
	b.pending = nil
	b.dispatching = false
	finished = true
	b.mu.Unlock()
}

// Metrics returns the breaker's measures now.
func (b *Breaker) Metrics() BreakerMetrics {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.metricsLocked(now)
}

func (b *Breaker) metricsLocked(now time.Time) BreakerMetrics {
	w := b.word.Load()
	win := b.win.Load()
	calls, fails, slows := win.counts()
	tc, tf, tr := b.totals.sum()
	m := BreakerMetrics{
		TotalCalls:          tc,
		TotalFailures:       tf,
		TotalRejections:     tr,
		State:               wordState(w),
		Calls:               int(calls),
		Failures:            int(fails),
		SlowCalls:           int(slows),
		ConsecutiveFailures: int(win.consec.Load()),
		Since:               b.since,
		InState:             now.Sub(b.since),
	}
	if calls > 0 {
		m.FailureRate = float64(fails) / float64(calls)
		m.SlowCallRate = float64(slows) / float64(calls)
	}
	if m.State == StateHalfOpen {
		m.Probes, m.ProbeSuccesses = wordProbes(w), wordSuccs(w)
	}
	return m
}
