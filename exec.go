package resilient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"time"
)

// Unlimited, given to [WithAttempts], retries until the call succeeds, fails
// permanently, is rejected by a policy, or runs out of time.
const Unlimited = -1

// Defaults of an executor built with no options, and of [Do] without
// options.
const (
	DefaultAttempts = 3
	DefaultMaxDelay = time.Minute
)

// DefaultBackoff is the schedule of an executor built without
// [WithBackoff]: 100ms, 200ms, 400ms, … up to 5s, with [FullJitter].
var DefaultBackoff = Exponential(100*time.Millisecond, 5*time.Second)

// ErrPanicked is the error a [Policy] is told about when an attempt
// panicked. The panic itself goes on, in the caller's goroutine.
var ErrPanicked = errors.New("resilient: attempt panicked")

// ErrBadRandom is the [Error.Cause] of a call ended because the source of
// jitter given to [WithRandom] returned a value outside [0, 1), or NaN.
var ErrBadRandom = errors.New("resilient: WithRandom: the source returned a value outside [0, 1)")

// ErrAbandoned is the cause (see context.Cause) of a context the library
// cancels because nobody wants the result of the work running on it any
// more: a hedged attempt once another attempt of its round has won, or its
// round or call has ended (see [WithHedge]), and a [Group]'s shared
// execution once every caller waiting for it has left.
//
// Decision: such an attempt is [Ignore] for every policy and hook, whatever
// it returns. It did not fail: its result was not wanted. Code that keeps
// its own books per attempt (a breaker per host inside the function) checks
// errors.Is(context.Cause(ctx), ErrAbandoned) to do the same. A per-attempt
// timeout is not an abandonment: its cause is context.DeadlineExceeded, and
// it is an ordinary, retryable failure.
var ErrAbandoned = errors.New("resilient: abandoned: the result is no longer wanted")

// Executor runs functions with retries, backoff and the policies it was
// built with. It is immutable and safe for concurrent use: build one per
// upstream with [New] and share it by every call to that upstream. Its
// stateful parts (a breaker, a budget) are shared by every copy derived
// from it.
//
// An *Executor is itself an [Option]: Do(ctx, fn, ex) runs fn with ex's
// policy at no cost (no allocation), and options after it derive a copy.
type Executor struct {
	name           string
	attempts       int // >= 1; math.MaxInt for Unlimited
	backoff        Backoff
	jitter         Jitter
	maxDelay       time.Duration // 0: not set; resolved at build
	maxElapsed     time.Duration // 0: no limit
	attemptTimeout time.Duration // 0: none
	classifier     Classifier
	check          func(any) error
	discard        func(any)
	random         func() float64
	hooks          Hooks
	policies       []Policy
	gates          []RetryGate
	watch          []watcher // the gates that can tell when their answer may change
	hedge          *hedge
	rejects        *rejectCache // this executor's own, never a base's
	fallback       any          // a func(context.Context, error) (T, error); see WithFallback

	timed bool // read the clock per attempt: hooks or a DurationPolicy
	fast  bool // run makes the first attempt itself (see run)
	// breaker is the executor's only policy when that is a *Breaker and
	// the executor is fast: run then reads its state directly.
	breaker *Breaker
}

// Option configures an [Executor]. Options are applied in order; an
// *Executor given as an option replaces every setting made before it.
type Option interface {
	apply(*Executor) error
}

type optionFunc func(*Executor) error

// ErrInvalidOption is matched (with [errors.Is]) by every [*OptionError].
var ErrInvalidOption = errors.New("resilient: invalid option")

// OptionError is the error of an invalid option, or of an invalid argument
// of a constructor, as returned by [New], [NewBreaker] and the other
// constructors of the package (and by [Do] given invalid options). It
// names the option and says what is wrong with it, for example
// "resilient: WithAttempts: n must be >= 1 or Unlimited, got 0". It matches
// [ErrInvalidOption]. A constructor given several invalid options reports
// every one, joined with [errors.Join]; errors.As finds the first.
type OptionError struct {
	// Option is the option's name, such as "WithAttempts", or the
	// constructor's (such as "New" for a nil option).
	Option string
	// Err says what is wrong.
	Err error
}

func (e *OptionError) Error() string { return "resilient: " + e.Option + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *OptionError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidOption].
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOption }

func optionError(option, format string, args ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, args...)}
}

// joinErrors returns nil, the one error of errs, or all of them joined.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func (f optionFunc) apply(e *Executor) error { return f(e) }

func (e *Executor) apply(dst *Executor) error {
	if e == nil {
		return optionError("New", "nil *Executor given as an option")
	}
	*dst = *e
	// Later options append to these: never into the shared arrays.
	dst.policies = dst.policies[:len(dst.policies):len(dst.policies)]
	dst.gates = dst.gates[:len(dst.gates):len(dst.gates)]
	return nil
}

// defaultExecutor serves Do without options. It is immutable.
var defaultExecutor = MustNew()

// New builds an executor. With no options it makes up to [DefaultAttempts]
// attempts, waits [DefaultBackoff] with [FullJitter] between them, retries
// every error but [Permanent] ones and the caller's own cancellation, and
// never waits longer than [DefaultMaxDelay]. An invalid option is an error
// that names it; nothing is built.
func New(opts ...Option) (*Executor, error) {
	// The executor and its refusal cache, in one allocation.
	a := &struct {
		Executor
		rejects rejectCache
	}{Executor: Executor{
		attempts: DefaultAttempts,
		backoff:  DefaultBackoff,
		jitter:   FullJitter,
	}}
	e := &a.Executor
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("New", "nil option"))
		} else if err := o.apply(e); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	if e.maxDelay == 0 {
		e.maxDelay = max(DefaultMaxDelay, e.backoff.max)
	}
	e.timed = e.hooks.OnAttempt != nil || e.hooks.OnRetry != nil || e.hooks.OnDone != nil
	e.gates, e.watch = e.gates[:0:0], nil
	for _, p := range e.policies {
		if d, ok := p.(DurationPolicy); ok && d.NeedsDuration() {
			e.timed = true
		}
		if g, ok := p.(RetryGate); ok {
			e.gates = append(e.gates, g)
			if w, ok := g.(watcher); ok {
				e.watch = append(e.watch, w)
			}
		}
	}
	e.rejects = &a.rejects // this executor's own, not a base's
	e.fast = !e.timed && e.maxElapsed == 0 && e.attemptTimeout == 0 && e.check == nil &&
		e.hedge == nil && len(e.policies) <= maxFastPolicies
	e.breaker = nil
	if e.fast && len(e.policies) == 1 {
		e.breaker, _ = e.policies[0].(*Breaker)
	}
	return e, nil
}

// MustNew is like [New] but panics on an invalid option. It serves
// package-level variables, like regexp.MustCompile.
func MustNew(opts ...Option) *Executor {
	e, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return e
}

// Name returns the executor's name (see [WithName]).
func (e *Executor) Name() string { return e.name }

// Policies returns the executor's policies, in the order they run.
func (e *Executor) Policies() []Policy {
	return append([]Policy(nil), e.policies...)
}

// WithName names the executor in errors and events (an upstream's name,
// such as "users-api"). Default "".
func WithName(name string) Option {
	return optionFunc(func(e *Executor) error {
		e.name = name
		return nil
	})
}

// WithAttempts sets how many times the function may be called in all,
// counting the first call: n >= 1, or [Unlimited]. Default 3. WithAttempts(1)
// never retries; 0 and other negative values are invalid.
func WithAttempts(n int) Option {
	return optionFunc(func(e *Executor) error {
		switch {
		case n == Unlimited:
			e.attempts = math.MaxInt
		case n >= 1:
			e.attempts = n
		default:
			return optionError("WithAttempts", "n must be >= 1 or Unlimited, got %d", n)
		}
		return nil
	})
}

// WithBackoff sets the schedule of waits between attempts, such as
// Exponential(100*time.Millisecond, 5*time.Second) (the default) or
// Constant(0). A schedule from a constructor given invalid arguments is
// refused, with the constructor's message.
func WithBackoff(b Backoff) Option {
	return optionFunc(func(e *Executor) error {
		if b.err != nil {
			return &OptionError{Option: "WithBackoff", Err: b.err}
		}
		e.backoff = b
		return nil
	})
}

// WithJitter sets how waits are randomised: [NoJitter], [FullJitter] (the
// default), [EqualJitter], [DecorrelatedJitter] or [ProportionalJitter]. A
// ProportionalJitter fraction outside [0, 1], or NaN, is refused.
func WithJitter(j Jitter) Option {
	return optionFunc(func(e *Executor) error {
		if err := j.validate(); err != nil {
			return &OptionError{Option: "WithJitter", Err: err}
		}
		e.jitter = j
		return nil
	})
}

// WithMaxDelay sets the longest single wait between attempts: computed
// waits are capped at d, and a server's hint ([RetryAfter]) longer than d
// ends the call at once with the last result and [ErrHintTooLong] (the
// executor never sleeps for hours, and never retries sooner than the
// upstream asked). d must be > 0. Default: the larger of [DefaultMaxDelay]
// and the backoff's max.
func WithMaxDelay(d time.Duration) Option {
	return optionFunc(func(e *Executor) error {
		if d <= 0 {
			return optionError("WithMaxDelay", "d must be > 0, got %v", d)
		}
		e.maxDelay = d
		return nil
	})
}

// WithMaxElapsed bounds the whole call, attempts and waits together, to d
// from its start: a running attempt is cancelled when d passes, and no wait
// starts that would end after it. The call then ends with
// [ErrMaxElapsed]. d must be > 0. Default: no limit but the context's.
// Setting it costs one context and one clock read per call.
func WithMaxElapsed(d time.Duration) Option {
	return optionFunc(func(e *Executor) error {
		if d <= 0 {
			return optionError("WithMaxElapsed", "d must be > 0, got %v", d)
		}
		e.maxElapsed = d
		return nil
	})
}

// WithAttemptTimeout bounds each attempt to d: the function gets a context
// that is cancelled after d, or when the attempt ends. An attempt that times
// out while the caller's context is alive is an ordinary retryable failure.
// d must be > 0. Default: none (the attempt runs on the caller's context,
// which keeps the success path free of allocations).
func WithAttemptTimeout(d time.Duration) Option {
	return optionFunc(func(e *Executor) error {
		if d <= 0 {
			return optionError("WithAttemptTimeout", "d must be > 0, got %v", d)
		}
		e.attemptTimeout = d
		return nil
	})
}

// WithClassifier sets how errors are classified (see [Classifier]). Nil
// restores the default: every error is retried but [Permanent] ones and the
// caller's own cancellation. Use [Classifiers] to chain several.
func WithClassifier(c Classifier) Option {
	return optionFunc(func(e *Executor) error {
		e.classifier = c
		return nil
	})
}

// CheckValue classifies values: check is called with every value returned
// with a nil error, and a non-nil result is treated as that attempt's error
// (wrap it in [Permanent] or [RetryAfter] as needed) while the value is kept.
// When the call ends on such an attempt, the caller gets its value together
// with an error that wraps check's. This is how an HTTP 503 response is
// retried without being lost.
//
// T must be the type of the calls the executor runs; a call of another type
// fails permanently with an error that says so. Nil removes the check. With
// a check set, each value is converted to an interface, which allocates for
// values that are not pointer-shaped.
func CheckValue[T any](check func(T) error) Option {
	return optionFunc(func(e *Executor) error {
		if check == nil {
			e.check = nil
			return nil
		}
		e.check = func(v any) error {
			t, ok := v.(T)
			if !ok {
				return Permanent(fmt.Errorf("resilient: CheckValue: check for %T given a %T", t, v))
			}
			return check(t)
		}
		return nil
	})
}

// OnDiscard sets the release hook for values the caller never sees: the
// value of every attempt that is followed by another one (an HTTP response
// whose body must be closed), and of a hedged attempt that lost. Each value
// is either returned to the caller or released, exactly once. It runs on the
// caller's goroutine, and may receive zero values.
//
// A value is held through the wait before the next attempt and released
// once that attempt has run: if the attempt is refused instead (a breaker
// that opened during the wait), the call returns the held value (see [Do]).
// If the context ends the call during the wait, the value is released and
// the call returns the zero value. T must be the type of the calls the
// executor runs; values of other types are not passed to it. Nil removes
// the hook.
func OnDiscard[T any](release func(T)) Option {
	return optionFunc(func(e *Executor) error {
		if release == nil {
			e.discard = nil
			return nil
		}
		e.discard = func(v any) {
			if t, ok := v.(T); ok {
				release(t)
			}
		}
		return nil
	})
}

// WithRandom replaces the source of jitter: random must return uniformly
// distributed values in [0, 1) and be safe for concurrent use. It serves
// deterministic tests and simulations; nil restores the default,
// math/rand/v2's lock-free global generator. A value outside [0, 1), or NaN,
// ends the call that drew it with [ErrBadRandom] (and [ReasonPermanent]).
func WithRandom(random func() float64) Option {
	return optionFunc(func(e *Executor) error {
		e.random = random
		return nil
	})
}

// WithPolicy adds policies that guard every attempt, after those already
// added (see [Policy] for the order). Nil policies are refused.
func WithPolicy(ps ...Policy) Option {
	return optionFunc(func(e *Executor) error {
		for _, p := range ps {
			if p == nil {
				return optionError("WithPolicy", "nil policy")
			}
		}
		e.policies = append(e.policies[:len(e.policies):len(e.policies)], ps...)
		return nil
	})
}

// resolve returns the executor for a call's options without allocating in
// the two common cases: no options, and one prebuilt executor.
func resolve(opts []Option) (*Executor, error) {
	if len(opts) == 1 {
		if e, ok := opts[0].(*Executor); ok && e != nil {
			return e, nil
		}
	}
	return build(opts)
}

// build is resolve's slow path: every case but one prebuilt executor. It is
// kept out of line, so that run, which resolves for Do, stays lean.
//
//go:noinline
func build(opts []Option) (*Executor, error) {
	if len(opts) == 0 {
		return defaultExecutor, nil
	}
	return New(opts...)
}

// Do calls fn until it succeeds, fails permanently, or the executor's
// policy says stop, and returns its last value and error.
//
// Without options it uses [New]'s defaults: 3 attempts, exponential backoff
// with full jitter. Pass a prebuilt [*Executor] to use its policy (no
// allocation), or options to configure this call alone; invalid options are
// returned as an error without calling fn, and so are a nil ctx or fn.
//
// fn receives the context to use for the attempt: ctx itself, or a context
// derived from it when a per-attempt timeout or a time limit is set.
//
// On success Do returns fn's value and nil (or, for an error a classifier
// called [Success], that error as it is). Otherwise the error is an
// [*Error]: it wraps the last attempt's error and tells how many attempts
// were made and why the call stopped; the value is the last attempt's
// value, also when a retry is refused (by a [RetryGate] before the wait, or
// by a policy or the function's [Reject] after it), except when the context
// ended the call between attempts (during a wait, or while a policy held
// the next attempt back): that value is then released (see [OnDiscard]) and
// Do returns the zero value. A panic in fn goes on in the caller's goroutine,
// after every policy has been told.
//
// Do refuses an executor built [WithHedge] with [ErrHedgeNeedsDoHedged];
// hedged calls go through [DoHedged].
func Do[T any](ctx context.Context, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	return run(ctx, nil, opts, fn, nil) // small enough to inline: one call frame to the attempt
}

// DoResult is [Do] returning the whole story: value, error, attempts, the
// reason it stopped, elapsed time and a record per attempt. It reads the
// clock around every attempt, and hedges as [DoHedged] does.
func DoResult[T any](ctx context.Context, fn func(context.Context) (T, error), opts ...Option) Result[T] {
	ex, err := resolve(opts)
	if err != nil {
		return Result[T]{Err: err, Reason: ReasonRejected}
	}
	var r Result[T]
	if ex.hedge != nil && ctx != nil && fn != nil {
		r.Value, r.Err = slowHedged(ctx, ex, &r, fn)
		return r
	}
	r.Value, r.Err = run(ctx, ex, nil, fn, &r)
	return r
}

// Run calls fn with the executor's policy, as [Do] does, for calls that
// return no value.
func (e *Executor) Run(ctx context.Context, fn func(context.Context) error) error {
	if e == nil {
		return errors.New("resilient: Run: nil *Executor")
	}
	if fn == nil {
		return ErrNilFunc
	}
	_, err := run(ctx, e, nil, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, nil)
	return err
}

// call is the state of one call that does not depend on its value type.
type call struct {
	ex      *Executor
	parent  context.Context // the caller's
	ctx     context.Context // parent, or bounded by maxElapsed
	start   time.Time       // set when timed
	timed   bool
	n       int           // attempts made
	prev    time.Duration // last wait, for decorrelated jitter
	timer   *time.Timer
	mark    time.Time // the last clock reading, when timed
	fresh   bool      // nothing has happened since mark was read
	history *[]Attempt
	last    error         // last attempt's error, markers removed
	hint    time.Duration // the hint that last's error carried
	// rec is the attempt after plans for: its number, duration and whether
	// it was a hedge. Its record is made once its wait is known.
	rec pending
	// charges are what the budgets took for the retry allowRetry last
	// allowed, until it is made; given back if it never is.
	charges charges
}

// charges are what the budgets among an executor's gates took to allow
// one retry (see Budget.refund): bit i of balance (of floor) is set when
// gate i, a *Budget, took the retry from its balance (from its floor).
// Four bytes, so that the call's state, zeroed on every slow call, stays
// small; gates after the 16th are not recorded.
type charges struct{ balance, floor uint16 }

// refund gives every charge back to the gates it was taken from, once.
func (cs *charges) refund(gates []RetryGate) {
	for m := cs.balance | cs.floor; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(m)
		ch := chargeBalance
		if cs.floor&(1<<i) != 0 {
			ch = chargeFloor
		}
		gates[i].(*Budget).refund(ch)
	}
	*cs = charges{}
}

// take hands the charges over to the attempt that will be made with them.
func (cs *charges) take() charges {
	out := *cs
	*cs = charges{}
	return out
}

// pending is what after needs, besides the error and outcome, to record
// an attempt.
type pending struct {
	n      int
	d      time.Duration
	hedged bool
	done   bool // already recorded
}

// first is a first attempt already made by run, which slow goes on from.
type first[T any] struct {
	v   T
	err error
	o   Outcome
}

// run is every call, in one story: the executor is resolved (Do resolves
// here, so that it stays small enough to inline), the arguments checked,
// and the first attempt of a fast executor made here: one with no time
// limit, value check or hooks, the common case, which needs no allocation,
// no lock and no clock. When that attempt settles the call, run returns at
// once; otherwise slow goes on from it, attempt by attempt, as it does from
// the start for every other executor.
//
// The first attempt is written out here rather than made by attempt, which
// every later attempt goes through: attempt needs the call's whole state,
// and building it cost a fast executor with policies 5 to 10ns a call.
// admit and releaseAll are shared.
func run[T any](ctx context.Context, ex *Executor, opts []Option, fn func(context.Context) (T, error), res *Result[T]) (T, error) {
	var zero T
	if ex == nil { // resolve, written out: one prebuilt executor costs nothing
		if len(opts) == 1 {
			ex, _ = opts[0].(*Executor)
		}
		if ex == nil {
			var err error
			if ex, err = build(opts); err != nil {
				return zero, err
			}
		}
	}
	switch {
	case ctx == nil:
		return zero, ErrNilContext
	case fn == nil:
		return zero, ErrNilFunc
	case ex.hedge != nil:
		return zero, ErrHedgeNeedsDoHedged
	case !ex.fast || res != nil || ctx.Err() != nil:
		return slow(ctx, ex, res, nil, fn)
	}
	var (
		v   T
		err error
	)
	if len(ex.policies) == 0 { // nothing admits it or is told of it
		if v, err = fn(ctx); err == nil {
			return v, nil
		}
		return slow(ctx, ex, nil, &first[T]{v: v, err: err, o: ex.classify(ctx, err)}, fn)
	}
	var (
		buf      [maxFastPolicies]Permit
		permits  []Permit
		lone     *Breaker
		rejected error
	)
	if br := ex.breaker; br != nil {
		// A lone breaker is read here, without a call (admit does the
		// same, out of line): closed is one load, and an open breaker
		// hands back its cached refusal. Decision: this pays for itself:
		// BenchmarkBreakerDo 11.3 to 9.4ns, BenchmarkBreakerDoRefused 9.4
		// to 5.8ns (the shared 2-core machine, 2026-12-03).
		w := br.word.Load()
		switch wordState(w) {
		case StateClosed:
			buf[0] = Permit{Token: wordGen(w) << 1}
			permits, lone = buf[:1], br
		case StateOpen, StateForcedOpen:
			if e := ex.rejects.last.Load(); e != nil && ex.fallback == nil && e.Cause == error(br.refusal.Load()) {
				br.totals.reject()
				return v, e
			}
		}
	}
	if permits == nil {
		permits, lone, rejected = admit(ex, ctx, 1, &buf)
	}
	if rejected != nil {
		// A policy that waits (a bulkhead, a limiter) may have been ended by
		// the context: say so. A lone breaker never waits.
		if ex.breaker == nil && ctx.Err() != nil {
			return slow(ctx, ex, nil, nil, fn)
		}
		if ex.fallback == nil { // the refusal, cached: no allocation
			return v, ex.rejection(rejected)
		}
		return finish(ctx, ex, v, error(ex.rejection(rejected)))
	}
	finished := false
	defer func() {
		if !finished { // fn panicked: see attempt
			releaseAll(ex.policies, permits, Report{Attempt: 1, Outcome: Fail, Err: ErrPanicked})
		}
	}()
	v, err = fn(ctx)
	finished = true
	o := Success
	if err != nil {
		o = ex.classify(ctx, err)
	} else if lone != nil {
		if lone.win.Load().calm() { // nothing to write: see closedSuccess
			lone.totals.call(false)
		} else {
			lone.closedSuccess(permits[0].Token)
		}
		return v, nil
	}
	releaseAll(ex.policies, permits, Report{Attempt: 1, Outcome: o, Err: err})
	if o == Success {
		return v, stripMarkers(err)
	}
	return slow(ctx, ex, nil, &first[T]{v: v, err: err, o: o}, fn)
}

// finish applies the executor's fallback to a call that ends with an
// error: the last step of every call.
func finish[T any](ctx context.Context, ex *Executor, v T, err error) (T, error) {
	if err != nil && ex.fallback != nil {
		return fallback(ctx, ex, v, err)
	}
	return v, err
}

// rejectCache keeps the error of the last refusal of a first attempt, so
// that a policy refusing every call with the same error value (an open
// breaker's prebuilt *OpenError, a bulkhead's sentinel) costs no allocation
// per refused call. Such an *Error is shared by the calls it is returned to.
type rejectCache struct{ last atomic.Pointer[Error] }

func (ex *Executor) rejection(cause error) *Error {
	if e := ex.rejects.last.Load(); e != nil && sameError(e.Cause, cause) {
		return e
	}
	e := &Error{Name: ex.name, Reason: ReasonRejected, Cause: cause}
	ex.rejects.last.Store(e)
	return e
}

// sameError reports whether a and b are the same error value; errors of
// incomparable types are never the same.
func sameError(a, b error) bool {
	if x, ok := a.(*OpenError); ok { // an open breaker's refusal, the common case
		y, ok := b.(*OpenError)
		return ok && x == y
	}
	return equalErrors(a, b)
}

func equalErrors(a, b error) (same bool) {
	defer func() { _ = recover() }()
	return a == b
}

// maxFastPolicies bounds the policies of a fast executor (see run), and
// the permits admit keeps without allocating.
const maxFastPolicies = 4

// slow runs a call from its start or, given f, on from the first attempt
// run made. (slowHedged is its twin for hedged rounds: the loop is kept
// free of function values so that the call's state stays on the stack.)
func slow[T any](ctx context.Context, ex *Executor, res *Result[T], f *first[T], fn func(context.Context) (T, error)) (T, error) {
	var c call
	if cancel := c.init(ctx, ex, res != nil); cancel != nil {
		defer cancel()
	}
	defer c.stopTimer()
	if res != nil {
		c.history = &res.History
	}
	var h held[T]
	for {
		var (
			v        T
			err      error
			o        Outcome
			rejected error
		)
		switch {
		case f != nil:
			c.n, v, err, o = 1, f.v, f.err, f.o
			f = nil
			if o == Ignore {
				if r := refusal(err); r != nil { // see Reject
					c.n, rejected = 0, r
					release(c.ex, v)
					v, err = *new(T), nil
				}
			}
			c.rec = pending{n: c.n}
		case c.ctx.Err() != nil:
			c.charges.refund(c.ex.gates)
			r, cause := c.ctxReason()
			h.drop(ex)
			return done(&c, res, v, c.fail(r, cause), r)
		default:
			v, err, o, rejected = attempt(&c, fn)
			if rejected != nil {
				c.charges.refund(c.ex.gates) // refused: the retry was not made
			}
			c.charges = charges{}
		}
		v = h.next(ex, v, rejected)
		v, r, stop, err := after(&c, v, err, o, rejected)
		if stop {
			return done(&c, res, v, err, r)
		}
		h.v, h.ok = v, true
	}
}

// held is the value of an attempt that a wait follows, held until the next
// attempt has been made or refused.
//
// Decision: the value of an attempt followed by a wait is held through the
// wait, and released only once a later attempt has really run. When the
// next attempt is refused instead (by a policy, such as a breaker that
// opened during the wait, or by the function's own [Reject]), the call ends
// with that value and its error, as it would have had the refusal come
// before the wait: the caller keeps the last real response, never an empty
// refusal in its place. Releasing it before the wait would free what it
// holds sooner (an HTTP response's connection) but lose it to any refusal
// the wait gives time for; a value that must not be held through a wait is
// for the function to detach from its resources before returning it.
type held[T any] struct {
	v  T
	ok bool
}

// next returns the value the call goes on with once the next attempt has
// been made (v, and the held value is released) or refused (the held
// value, which the call ends with, or which after releases if the context
// ended it).
func (h *held[T]) next(ex *Executor, v T, rejected error) T {
	if !h.ok {
		return v
	}
	h.ok = false
	if rejected != nil {
		return h.v
	}
	release(ex, h.v)
	return v
}

// drop releases the held value of a call that its context ended before the
// next attempt.
func (h *held[T]) drop(ex *Executor) {
	if h.ok {
		h.ok = false
		release(ex, h.v)
	}
}

// init prepares a call; the returned cancel, if not nil, must be called at
// its end.
func (c *call) init(ctx context.Context, ex *Executor, recorded bool) context.CancelFunc {
	// Fields are set one by one: a composite literal here is built in a
	// temporary and copied, which stalls the store buffer.
	c.ex, c.parent, c.ctx, c.timed = ex, ctx, ctx, ex.timed || recorded
	if c.timed || ex.maxElapsed > 0 {
		c.start = time.Now()
		c.mark, c.fresh = c.start, true
	}
	if ex.maxElapsed > 0 {
		var cancel context.CancelFunc
		c.ctx, cancel = context.WithDeadlineCause(ctx, c.start.Add(ex.maxElapsed), ErrMaxElapsed)
		return cancel
	}
	return nil
}

// done ends a call: it fills in the result, if one is kept, tells the
// hooks, and applies the fallback (after the hooks: they see the call's
// own error).
func done[T any](c *call, res *Result[T], v T, err error, reason Reason) (T, error) {
	if res == nil && c.ex.hooks.OnDone == nil {
		return finish(c.parent, c.ex, v, err)
	}
	elapsed := c.elapsed()
	if res != nil {
		res.Attempts, res.Reason, res.Elapsed = c.n, reason, elapsed
	}
	if h := c.ex.hooks.OnDone; h != nil {
		h(DoneEvent{Name: c.ex.name, Attempts: c.n, Reason: reason, Err: err, Elapsed: elapsed})
	}
	return finish(c.parent, c.ex, v, err)
}

// after decides what follows an attempt: the end of the call (stop, with
// what to return and why), or another attempt, after the wait it has
// already made.
func after[T any](c *call, v T, err error, o Outcome, rejected error) (T, Reason, bool, error) {
	var zero T
	ex := c.ex
	if rejected != nil {
		// v is the value of attempt c.n, held through the wait (see held),
		// or the zero value when no attempt was made.
		if c.ctx.Err() != nil { // a policy's wait (a bulkhead, a limiter) ended with the call's context
			if c.n > 0 {
				release(ex, v)
			}
			r, cause := c.ctxReason()
			return zero, r, true, c.fail(r, cause)
		}
		if c.n == 0 {
			return zero, ReasonRejected, true, ex.rejection(rejected)
		}
		return v, ReasonRejected, true, c.fail(ReasonRejected, rejected)
	}
	c.last = stripMarkers(err)
	if err != nil {
		c.hint = hintOf(err) // once: finding it asserts interfaces, tens of ns
	}
	switch o {
	case Success:
		c.observe(err, o, 0, FromBackoff)
		return v, ReasonSuccess, true, c.last
	case Fail:
		c.observe(err, o, 0, FromBackoff)
		return v, ReasonPermanent, true, c.fail(ReasonPermanent, nil)
	case Ignore:
		c.observe(err, o, 0, FromBackoff)
		r, cause := c.ctxReason()
		return v, r, true, c.fail(r, cause)
	}
	if c.n >= ex.attempts {
		c.observe(err, o, 0, FromBackoff)
		return v, ReasonExhausted, true, c.fail(ReasonExhausted, nil)
	}
	if c.ctx.Err() != nil { // our own time limit ended the attempt
		c.observe(err, o, 0, FromBackoff)
		r, cause := c.ctxReason()
		return v, r, true, c.fail(r, cause)
	}
	delay, src, r, cause := c.plan()
	if r != ReasonSuccess {
		c.observe(err, o, 0, FromBackoff)
		return v, r, true, c.fail(r, cause)
	}
	// Gates are asked last, once the wait is settled, so that a budget's
	// token is only taken for a retry that will really be waited for.
	if gerr := c.allowRetry(); gerr != nil {
		c.observe(err, o, 0, FromBackoff)
		return v, ReasonRejected, true, c.fail(ReasonRejected, gerr)
	}
	// The attempt is told of with the wait that follows it.
	c.observe(err, o, delay, src)
	if h := ex.hooks.OnRetry; h != nil {
		h(RetryEvent{Name: ex.name, Attempt: c.n, Err: c.last, Delay: delay, Source: src})
	}
	refused, ok := c.wait(delay)
	if refused != nil || !ok {
		c.charges.refund(c.ex.gates) // the retry will not be made
	}
	switch {
	case refused != nil:
		// A breaker opened during the wait: the retry would be refused,
		// so the call ends now, with the result it has, rather than at
		// the end of a wait that can no longer lead anywhere.
		return v, ReasonRejected, true, c.fail(ReasonRejected, refused)
	case !ok && c.parent.Err() == nil:
		// Decision: our own time limit (WithMaxElapsed) ended the wait,
		// which plan only lets happen when the timer fires late. The
		// caller's context is alive and wants an answer: it gets the
		// result it would have had, had the wait been refused up front.
		r, cause := c.ctxReason()
		return v, r, true, c.fail(r, cause)
	case !ok:
		release(ex, v)
		r, cause := c.ctxReason()
		return zero, r, true, c.fail(r, cause)
	}
	return v, ReasonSuccess, false, nil // v is held through the wait: see held
}

// attempt makes attempt c.n+1 of a call: admission by every policy, the
// function on its context (with a per-attempt timeout, its own), the
// value check, classification, and the reports to the policies. rejected
// is a refusal (a policy's, or the function's own Reject), in which case
// the attempt does not count.
func attempt[T any](c *call, fn func(context.Context) (T, error)) (v T, err error, o Outcome, rejected error) {
	ex := c.ex
	c.n++
	n := c.n
	var buf [maxFastPolicies]Permit
	permits, lone, rejected := admit(ex, c.ctx, n, &buf)
	if rejected != nil {
		c.n--
		return v, nil, Ignore, rejected
	}
	actx := c.ctx
	if ex.attemptTimeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(actx, ex.attemptTimeout)
		defer cancel()
	}
	var t0 time.Time
	if c.timed {
		t0 = c.clock(len(permits) == 0)
	}
	if len(permits) > 0 {
		// Decision (DESIGN 5): a panic is not recovered. Policies learn of
		// it here, then it goes on, in the caller's goroutine, untouched.
		finished := false
		defer func() {
			if !finished {
				releaseAll(ex.policies, permits, Report{Attempt: n, Outcome: Fail, Err: ErrPanicked, Duration: c.since(t0)})
			}
		}()
		v, err = fn(actx)
		finished = true
	} else {
		v, err = fn(actx)
	}
	if err == nil && lone != nil {
		lone.closedSuccess(permits[0].Token)
		c.rec = pending{n: n}
		return v, nil, Success, nil
	}
	if err == nil && ex.check != nil {
		err = ex.check(v)
	}
	o = ex.classify(c.parent, err)
	var d time.Duration
	if c.timed {
		d = c.clock(false).Sub(t0)
	}
	releaseAll(ex.policies, permits, Report{Attempt: n, Outcome: o, Err: err, Duration: d})
	if o == Ignore {
		if r := refusal(err); r != nil { // see Reject
			c.n--
			release(ex, v)
			return *new(T), nil, Ignore, r
		}
	}
	c.rec = pending{n: n, d: d}
	return v, err, o, nil
}

// admit asks the executor's policies, in order, to admit attempt n, and
// returns their permits (in buf, unless there are more than it holds), or
// the first refusal, once the permits already given have been released.
// An executor whose only policy is a Breaker has it read directly, not
// through the Policy interface: closed, the permit is the generation, lone
// is the breaker, and the caller tells a success with closedSuccess (see
// there for what this coupling buys); in any other state (a refusal, a
// probe, a disabled breaker) admit asks Allow, and the report goes through
// Done as any policy's does.
func admit(ex *Executor, ctx context.Context, n int, buf *[maxFastPolicies]Permit) (permits []Permit, lone *Breaker, rejected error) {
	if lone = ex.breaker; lone != nil {
		w := lone.word.Load()
		switch wordState(w) {
		case StateClosed:
			buf[0] = Permit{Token: wordGen(w) << 1}
			return buf[:1], lone, nil
		case StateOpen, StateForcedOpen: // as Allow refuses
			lone.totals.reject()
			return nil, nil, lone.refusal.Load()
		}
		p, err := lone.Allow() // a probe, a disabled breaker
		if err != nil {
			return nil, nil, err
		}
		buf[0] = p
		return buf[:1], nil, nil
	}
	if np := len(ex.policies); np <= len(buf) {
		permits = buf[:np]
	} else {
		permits = make([]Permit, np) // an executor that is not fast
	}
	for i, p := range ex.policies {
		pm, err := p.Admit(ctx, n)
		if err != nil {
			releaseAll(ex.policies, permits[:i], Report{Attempt: n, Outcome: Ignore})
			return nil, nil, err
		}
		permits[i] = pm
	}
	return permits, nil, nil
}

// observe records the attempt c.rec, which ended with err and o and is
// followed by a wait of delay, in the call's history and tells the hooks.
// Attempts that were refused never ran and are not recorded.
func (c *call) observe(err error, o Outcome, delay time.Duration, src DelaySource) {
	c.record(c.rec, err, o, delay, src)
}

// record is observe for any attempt.
func (c *call) record(p pending, err error, o Outcome, delay time.Duration, src DelaySource) {
	h := c.ex.hooks.OnAttempt
	if (c.history == nil && h == nil) || p.done {
		return
	}
	a := Attempt{Number: p.n, Duration: p.d, Err: stripMarkers(err), Outcome: o, Hedged: p.hedged,
		Delay: delay, Source: src, Hint: hintOf(err)}
	if c.history != nil {
		*c.history = append(*c.history, a)
	}
	if h != nil {
		h(AttemptEvent{Name: c.ex.name, Attempt: a})
	}
}

// allowRetry asks every retry gate whether attempt c.n+1 may happen.
//
// What budgets take is kept in c.charges until the retry is made, and given
// back when it is not: here, when a later gate refuses it.
func (c *call) allowRetry() error {
	if len(c.ex.gates) == 0 { // small enough to inline: no call without gates
		return nil
	}
	return c.askGates()
}

func (c *call) askGates() error {
	c.charges = charges{}
	for i, g := range c.ex.gates {
		var err error
		if b, ok := g.(*Budget); ok && i < 16 {
			var ch retryCharge
			switch ch, err = b.allowRetry(c.n + 1); ch {
			case chargeBalance:
				c.charges.balance |= 1 << i
			case chargeFloor:
				c.charges.floor |= 1 << i
			}
		} else {
			err = g.AllowRetry(c.n + 1)
		}
		if err != nil {
			c.charges.refund(c.ex.gates)
			return err
		}
	}
	return nil
}

// clock returns the time now: the last reading, when reuse is allowed and
// nothing has happened since it was taken (the start of the call, the end of
// an attempt), or a new one. Reading the clock costs tens of nanoseconds,
// so a call with hooks reads it twice when its first attempt succeeds, not
// four times.
func (c *call) clock(reuse bool) time.Time {
	if reuse && c.fresh {
		return c.mark
	}
	c.mark, c.fresh = time.Now(), true
	return c.mark
}

// elapsed is the call's duration so far.
func (c *call) elapsed() time.Duration {
	if !c.timed {
		return time.Since(c.start)
	}
	return c.clock(true).Sub(c.start)
}

// since is the time since t0, when the call is timed; 0 otherwise.
func (c *call) since(t0 time.Time) time.Duration {
	if !c.timed {
		return 0
	}
	return time.Since(t0)
}

// release hands a value the caller will not get to the OnDiscard hook. It
// is generic so that no value is boxed without a hook.
func release[T any](ex *Executor, v T) {
	if ex.discard != nil {
		ex.discard(v)
	}
}

// releaseAll tells policies[:len(permits)], in reverse order, how the attempt
// ended.
func releaseAll(policies []Policy, permits []Permit, r Report) {
	for i := len(permits); i > 0; {
		i--
		policies[i].Done(permits[i], r)
	}
}

// plan computes the wait before the next attempt (after the attempt whose
// hint is c.hint), or the reason to stop now instead of waiting.
func (c *call) plan() (time.Duration, DelaySource, Reason, error) {
	ex := c.ex
	u := 0.0
	if ex.jitter.kind != jitterNone {
		if ex.random != nil {
			u = ex.random()
			if !(u >= 0 && u < 1) {
				// Decision: a broken source is an error that says so, not
				// waits of zero that would retry at once in a burst.
				return 0, FromBackoff, ReasonPermanent, fmt.Errorf("%w: got %v", ErrBadRandom, u)
			}
		} else {
			u = rand.Float64()
		}
	}
	delay := min(next(ex.backoff, ex.jitter, c.n, c.prev, u), ex.maxDelay)
	c.prev = delay
	src := FromBackoff
	// Decision (DESIGN 1, 2): a server's hint is a floor that jitter never
	// lowers; a hint beyond the cap ends the call rather than being clamped
	// into a retry the upstream asked us not to make.
	if hint := c.hint; hint > 0 {
		if hint > ex.maxDelay {
			return 0, FromHint, ReasonHintTooLong, nil
		}
		if hint > delay {
			// Many callers handed the same hint (an HTTP-date has a
			// resolution of one second) would come back in one burst: unless
			// jitter is off, spread them over up to a fifth of the hint
			// above it, never below it.
			// hint <= maxDelay, so the sum saturates at the cap, never
			// overflowing past it (a cap of MaxInt64 is allowed).
			delay, src = ex.maxDelay, FromHint
			if spread := time.Duration(u * float64(hint/5)); spread < ex.maxDelay-hint {
				delay = hint + spread
			}
		}
	}
	// Decision (DESIGN 8): never sleep into a wait the next attempt could
	// not start after; return the last result now.
	if dl, ok := c.parent.Deadline(); ok && time.Until(dl) <= delay {
		return 0, src, ReasonDeadline, nil
	}
	if ex.maxElapsed > 0 && delay >= ex.maxElapsed-time.Since(c.start) { // no sum to overflow
		return 0, src, ReasonMaxElapsed, nil
	}
	return delay, src, ReasonSuccess, nil
}

// wait waits d before the next attempt. It returns ok false when the
// call's context ended first, and the refusal when a watched gate (see
// watcher: a breaker that opened meanwhile) would refuse the retry, so
// that the call need not sit out a wait that can only end in a refusal.
func (c *call) wait(d time.Duration) (refused error, ok bool) {
	c.fresh = false
	if d <= 0 {
		return nil, c.ctx.Err() == nil
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	if len(c.ex.watch) > 2 {
		return c.waitMany()
	}
	for {
		// The channels are taken before the gates are asked, so that a
		// change between the two still wakes the wait.
		var changed [2]<-chan struct{}
		for i, w := range c.ex.watch {
			changed[i] = w.changed()
			if err := w.AllowRetry(c.n + 1); err != nil {
				return err, true
			}
		}
		select {
		case <-c.timer.C:
			return nil, true
		case <-c.ctx.Done():
			return nil, false
		case <-changed[0]:
		case <-changed[1]:
		}
	}
}

// waitMany is wait's loop for an executor that watches more than two
// gates (three breakers or more): a select over as many channels as there
// are gates, built with reflect. It allocates, which only such executors
// pay, and only when they wait.
func (c *call) waitMany() (refused error, ok bool) {
	cases := make([]reflect.SelectCase, 2+len(c.ex.watch))
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.timer.C)}
	cases[1] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.ctx.Done())}
	for {
		for i, w := range c.ex.watch {
			cases[2+i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w.changed())}
			if err := w.AllowRetry(c.n + 1); err != nil {
				return err, true
			}
		}
		switch chosen, _, _ := reflect.Select(cases); chosen {
		case 0:
			return nil, true
		case 1:
			return nil, false
		}
	}
}

func (c *call) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

// ctxReason tells why the call's context is done: the caller's cancellation
// or deadline, or the executor's own time limit. A classifier's Ignore while
// every context is alive ends the call as a permanent failure would, unless
// the caller's deadline has passed.
func (c *call) ctxReason() (Reason, error) {
	if c.ctx.Err() == nil {
		// An Ignore in the instant after the caller's deadline, before its
		// context's timer has run (a transport that reported the deadline
		// first): the deadline it is.
		if dl, ok := c.parent.Deadline(); ok && !time.Now().Before(dl) {
			return ReasonDeadline, context.DeadlineExceeded
		}
		return ReasonPermanent, nil
	}
	if err := c.parent.Err(); err != nil {
		cause := context.Cause(c.parent)
		if errors.Is(err, context.DeadlineExceeded) {
			return ReasonDeadline, joinCause(err, cause)
		}
		return ReasonCanceled, joinCause(err, cause)
	}
	return ReasonMaxElapsed, nil
}

// joinCause keeps both the context's error and a custom cause matchable.
func joinCause(err, cause error) error {
	if cause == nil || cause == err {
		return err
	}
	return fmt.Errorf("%w: %w", err, cause)
}

func (c *call) fail(r Reason, cause error) error {
	return &Error{Name: c.ex.name, Attempts: c.n, Reason: r, Last: c.last, Cause: cause, Hint: c.hint}
}
