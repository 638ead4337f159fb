package resilient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync/atomic"
	"time"
)

// ErrRateLimited is the error a rate limit refuses an attempt with: the
// attempt could not get a token in time (at once, within the limiter's
// maximum wait, or before the context's deadline). The call it ends returns
// an [*Error] with [ReasonRejected] that matches it and [ErrRejected];
// [RejectedBy] names it [PolicyRateLimit].
var ErrRateLimited = errors.New("resilient: rate limited")

// Limiter is a rate limiter as [WithRateLimit] uses it. Both [*RateLimiter]
// and golang.org/x/time/rate's *Limiter satisfy it, so either plugs in
// directly; the core does not import x/time.
//
// Allow reports whether an event may happen now, and takes a token if so.
// Wait blocks until an event may happen, and takes a token; it returns an
// error, at once, if the wait would end after ctx's deadline (both
// implementations do), and ctx's error if ctx ends the wait.
type Limiter interface {
	Allow() bool
	Wait(ctx context.Context) error
}

// MaxRate is the highest rate a [RateLimiter] accepts: one event per
// nanosecond, the resolution of its clock.
const MaxRate = 1e9

// RateLimiter spaces events to a rate: in any stretch of time d it allows
// at most rate·d events, plus a burst. It is a token bucket that holds
// burst tokens, starts full and is refilled at rate tokens per second; each
// event takes a token.
//
// It has two modes, set by the burst ([WithBurst]). With a burst of 1, the
// default, it is smooth (a leaky bucket): events are evenly spaced, one
// every 1/rate, and callers that come together are let through one by one
// at that pace. With a larger burst it is bursty: after a quiet spell up to
// burst events go at once, then the pace is the rate again.
//
// Allow takes a token if one is there now, and otherwise reports false.
// Wait takes the next token, waiting for it if need be; most callers should
// use Wait, or give the limiter to executors with [WithRateLimit].
// Waiters are served in the order they asked, and a caller of Allow never
// takes a token a waiter is waiting for: nobody starves. A wait that would
// end after the context's deadline, or last longer than the limiter's
// maximum wait ([WithMaxWait]), is refused at once with [ErrRateLimited],
// and takes no token.
//
// Decision: the limiter is kept as one number, the time at which the bucket
// would be full again (the "theoretical arrival time" of the generic cell
// rate algorithm), updated by compare-and-swap. Each caller that waits is
// given its own slot in time when it asks, so the order of service is the
// order of asking, and a slot taken is never taken from its waiter. A waiter
// whose context ends gives its slot back if nobody asked after it; otherwise
// the slot is lost (the limiter errs on the side of the rate).
//
// The zero value refuses every event; build one with [NewRateLimiter]. A
// RateLimiter is safe for concurrent use and is meant to be shared by every
// caller of the rate it guards ([Keyed] keeps one per host). An event that
// need not wait reads the monotonic clock once and takes no lock and no
// allocation; a wait allocates its timer.
type RateLimiter struct {
	// tat is when the bucket would be full again, in ns since epoch. An
	// event at now is allowed at once when tat-now <= tolerance, and moves
	// tat to max(tat, now)+interval. Invariant: tat never decreases but by
	// the slot a cancelled waiter gives back while it is the last one.
	tat       atomic.Int64
	interval  int64         // ns between events at the rate; 0: not built
	tolerance int64         // (burst-1)·interval: how far ahead of the rate events may go
	maxWait   time.Duration // < 0: no bound but the context's deadline
	burst     int
	epoch     time.Time
}

// RateLimiterOption configures a [RateLimiter] built by [NewRateLimiter].
type RateLimiterOption func(*RateLimiter) error

// WithBurst sets how many events may go at once after a quiet spell: n must
// be >= 1. The default, 1, is the smooth mode: events evenly spaced at the
// rate. A larger n is the bursty mode (a token bucket of n tokens).
func WithBurst(n int) RateLimiterOption {
	return func(l *RateLimiter) error {
		if n < 1 {
			return optionError("WithBurst", "n must be >= 1, got %d", n)
		}
		l.burst = n
		return nil
	}
}

// WithMaxWait bounds how long [RateLimiter.Wait] waits for a token: a wait
// that would last longer than d is refused at once with [ErrRateLimited].
// d must be >= 0; 0 never waits (Wait then behaves as Allow). Default: no
// bound but the context's deadline.
func WithMaxWait(d time.Duration) RateLimiterOption {
	return func(l *RateLimiter) error {
		if d < 0 {
			return optionError("WithMaxWait", "d must be >= 0, got %v", d)
		}
		l.maxWait = d
		return nil
	}
}

// NewRateLimiter builds a rate limiter that allows perSecond events a
// second; see [RateLimiter] for the model. perSecond must be > 0 and at
// most [MaxRate]; the interval between events is kept to the nanosecond.
// Without options it is smooth (a burst of 1) and waits as long as the
// context allows. An invalid argument or option is an error that names it.
//
// The limiter's clock starts when it is built: in testing/synctest bubbles,
// build it inside the bubble.
func NewRateLimiter(perSecond float64, opts ...RateLimiterOption) (*RateLimiter, error) {
	// Every invalid argument and option is reported, not only the first.
	var errs []error
	if !(perSecond > 0 && perSecond <= MaxRate) { // also refuses NaN
		errs = append(errs, optionError("NewRateLimiter", "perSecond must be in (0, %g], got %v", float64(MaxRate), perSecond))
	}
	l := &RateLimiter{
		maxWait: -1,
		burst:   1,
		epoch:   time.Now(),
	}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewRateLimiter", "nil option"))
		} else if err := o(l); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	l.interval = max(1, int64(math.Round(float64(time.Second)/perSecond)))
	if int64(l.burst-1) > math.MaxInt64/4/l.interval {
		return nil, optionError("WithBurst", "n is too large for the rate, got %d", l.burst)
	}
	l.tolerance = int64(l.burst-1) * l.interval
	return l, nil
}

// MustNewRateLimiter is like [NewRateLimiter] but panics on an invalid
// argument or option. It serves package-level variables.
func MustNewRateLimiter(perSecond float64, opts ...RateLimiterOption) *RateLimiter {
	l, err := NewRateLimiter(perSecond, opts...)
	if err != nil {
		panic(err)
	}
	return l
}

// Rate returns the limiter's rate, in events per second (0 for the zero
// value).
func (l *RateLimiter) Rate() float64 {
	if l.interval == 0 {
		return 0
	}
	return float64(time.Second) / float64(l.interval)
}

// Burst returns how many events may go at once after a quiet spell.
func (l *RateLimiter) Burst() int { return l.burst }

// Allow reports whether an event may happen now, and takes its token if
// so. It never waits.
func (l *RateLimiter) Allow() bool {
	if l.interval == 0 {
		return false
	}
	now := int64(time.Since(l.epoch))
	for {
		tat := l.tat.Load()
		start := max(tat, now)
		if start-now > l.tolerance {
			return false
		}
		if l.tat.CompareAndSwap(tat, start+l.interval) {
			return true
		}
	}
}

// Wait takes the next token, waiting until it is due. It returns nil once
// the event may happen (at once, without looking at ctx, when a token is
// there); [ErrRateLimited], at once and without taking a token, when the
// wait would end at or after ctx's deadline or last longer than the
// limiter's maximum wait; or ctx's error when ctx ends the wait.
func (l *RateLimiter) Wait(ctx context.Context) error {
	if l.interval == 0 {
		return ErrRateLimited
	}
	now := int64(time.Since(l.epoch))
	bound := int64(math.MaxInt64) // the longest wait allowed
	if l.maxWait >= 0 {
		bound = int64(l.maxWait)
	}
	deadline := false // bound includes the context's deadline
	var wait, slot int64
	for {
		tat := l.tat.Load()
		start := max(tat, now)
		wait = start - l.tolerance - now
		if wait > 0 && !deadline {
			// Read only when a wait is needed: the path without one reads
			// the clock once.
			deadline = true
			if dl, ok := ctx.Deadline(); ok {
				// Decision: a wait that would end at or after the deadline
				// is refused now; the attempt it guards could not run
				// anyway.
				bound = min(bound, int64(time.Until(dl))-1)
			}
		}
		if wait > bound && wait > 0 {
			return ErrRateLimited
		}
		slot = start + l.interval
		if l.tat.CompareAndSwap(tat, slot) {
			break
		}
	}
	if wait <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		l.giveBack(slot)
		return err
	}
	timer := time.NewTimer(time.Duration(wait))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		l.giveBack(slot)
		return ctx.Err()
	}
}

// giveBack returns the slot that moved tat to slot, if no later caller has
// moved it since: a waiter that gives up makes room for the next caller.
func (l *RateLimiter) giveBack(slot int64) {
	l.tat.CompareAndSwap(slot, slot-l.interval)
}

// WithRateLimit makes every attempt of the executor take a token from l
// first: a [*RateLimiter], or golang.org/x/time/rate's *Limiter, or any
// [Limiter]. It adds a [Policy], after those already added; put it after a
// breaker, so that a refused call takes no token. A nil l is refused.
//
// By default an attempt waits for its token with l.Wait, on the attempt's
// context. A wait that would end after the context's deadline fails at once
// (see [Limiter]), and so does one longer than a [RateLimiter]'s
// [WithMaxWait]: the call ends with [ReasonRejected] and an error matching
// [ErrRateLimited] (wrapping the limiter's own error, if it is another),
// which [RejectedBy] names [PolicyRateLimit] and metrics count as a
// rejection. A wait ended by the context ends the call with the context's
// reason, as any wait does. With [RateLimitNoWait] an attempt that finds no
// token is refused at once instead.
//
// Decision: retries and hedges take a token, like first attempts, because
// a limit on what the upstream is sent (an API's quota) counts every
// request; a retry that waits for its token waits in the attempt's policy,
// after its backoff. [RateLimitFirstAttempts] exempts them, for a limit on
// the calls a program starts.
func WithRateLimit(l Limiter, opts ...RateLimitOption) Option {
	return optionFunc(func(e *Executor) error {
		var errs []error
		if isNil(l) {
			errs = append(errs, optionError("WithRateLimit", "nil limiter"))
		}
		p := &rateLimit{l: l}
		for _, o := range opts {
			if o == nil {
				errs = append(errs, optionError("WithRateLimit", "nil option"))
			} else {
				o(p)
			}
		}
		if errs != nil {
			return joinErrors(errs)
		}
		return WithPolicy(p).apply(e)
	})
}

// RateLimitOption configures the policy [WithRateLimit] adds.
type RateLimitOption func(*rateLimit)

// RateLimitNoWait refuses an attempt that finds no token at once, with
// [ErrRateLimited], using the limiter's Allow: for shedding load rather than
// pacing it.
func RateLimitNoWait() RateLimitOption {
	return func(p *rateLimit) { p.noWait = true }
}

// RateLimitFirstAttempts exempts retries and hedges from the limit: only
// each call's first attempt takes a token.
func RateLimitFirstAttempts() RateLimitOption {
	return func(p *rateLimit) { p.firstOnly = true }
}

// rateLimit is the Policy that WithRateLimit adds.
type rateLimit struct {
	l         Limiter
	noWait    bool
	firstOnly bool
}

func (p *rateLimit) Admit(ctx context.Context, attempt int) (Permit, error) {
	if attempt > 1 && p.firstOnly {
		return Permit{}, nil
	}
	if p.noWait {
		if p.l.Allow() {
			return Permit{}, nil
		}
		return Permit{}, ErrRateLimited
	}
	err := p.l.Wait(ctx)
	switch {
	case err == nil:
		return Permit{}, nil
	case ctx.Err() != nil: // the executor reports the context's reason
		return Permit{}, ctx.Err()
	case errors.Is(err, ErrRateLimited):
		return Permit{}, err
	default: // another limiter's refusal, such as x/time/rate's deadline error
		return Permit{}, fmt.Errorf("%w: %w", ErrRateLimited, err)
	}
}

func (p *rateLimit) Done(Permit, Report) {}

// isNil reports whether v is nil or holds a nil pointer, map, func, chan,
// slice or interface, whose methods would panic when called.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch r := reflect.ValueOf(v); r.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return r.IsNil()
	}
	return false
}
