package resilient

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrThrottled is the error a [Throttle] refuses an attempt with. The call
// it ends returns an [*Error] with [ReasonRejected] that matches it and
// [ErrRejected].
var ErrThrottled = errors.New("resilient: throttled: upstream is rejecting requests")

// Defaults of a [Throttle] built without options.
const (
	// DefaultAcceptMultiplier is K: requests may reach twice the accepts
	// before the throttle starts to refuse.
	DefaultAcceptMultiplier = 2.0
	// DefaultThrottleWindow is how much history the throttle weighs.
	DefaultThrottleWindow = 2 * time.Minute
)

const (
	// throttleBuckets is the number of time buckets a window is cut into:
	// history leaves the window a tenth of it at a time.
	throttleBuckets = 10
	// throttleBatch is how many accepted attempts are counted before they
	// are stamped with the time: the success path reads no clock.
	throttleBatch = 32
)

// Throttle is adaptive client-side throttling, as in the Google SRE book
// ("Handling Overload"): when an upstream rejects much of what it is sent,
// the client refuses part of its own attempts locally, at once, instead of
// adding them to the upstream's load. Over a sliding window it counts
// requests (attempts that went to the upstream, and attempts it refused
// itself) and accepts (attempts the upstream answered), and refuses each
// attempt with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// with K set by [WithAcceptMultiplier] (default 2). While the upstream
// accepts at least 1/K of the requests, nothing is refused; as it accepts
// fewer, more are refused, and a trickle always gets through to notice the
// upstream's recovery. Refused attempts end their call at once with
// [ErrThrottled]. Refusals count as requests, as the SRE book has it, so
// after a total outage the throttle lets traffic back in gradually: at a
// steady call rate it stops refusing a few windows after the upstream
// recovers (a shorter window recovers sooner, and reacts to noise more).
//
// Decision: an attempt counts as accepted when it is classified [Success]
// or [Fail]: the upstream answered it, even when the answer was a permanent
// error (a 404). Only [Retry] outcomes, the transient failures an
// overloaded upstream produces (503, 429, timeouts), and answers that ask
// for less traffic ([Throttled]) whatever their outcome, count against
// it, and [Ignore] outcomes (the caller's own cancellation, or another
// policy's refusal) do not count at all.
//
// Decision: the window is cut into ten time buckets, and the success path
// reads no clock: accepted attempts are counted in batches of up to 32 and
// stamped with the time the batch is counted, which happens at the 32nd
// accept, at any failure or refusal, and on every attempt while the
// throttle is refusing. So successes may count up to 31 attempts late,
// which delays the start of throttling by at most that many failures.
//
// A Throttle is a [Policy]: give it to executors with [WithThrottle]. It is
// safe for concurrent use and meant to be shared by every executor that
// calls one upstream. While it refuses nothing, an attempt costs two atomic
// operations, no lock, no clock read and no allocation.
type Throttle struct {
	// p is the refusal probability as float64 bits; 0 while healthy, which
	// is all the success path reads.
	p atomic.Uint64
	// Counts not yet in a bucket. Invariant: added to the newest bucket by
	// refresh, under mu.
	pendingAccepts  atomic.Int64 // requests that were accepted
	pendingRequests atomic.Int64 // requests that were not

	k      float64
	width  time.Duration // of a bucket
	random func() float64
	epoch  time.Time

	mu      sync.Mutex
	head    int64                           // newest bucket's index, in widths since epoch; guarded by mu
	buckets [throttleBuckets]throttleBucket // ring, by index mod len; guarded by mu
}

type throttleBucket struct{ requests, accepts int64 }

// ThrottleOption configures a [Throttle] built by [NewThrottle].
type ThrottleOption func(*Throttle) error

// WithAcceptMultiplier sets K, how many requests per accept the upstream is
// allowed before the throttle refuses any: k must be >= 1 and finite; the
// default is [DefaultAcceptMultiplier] (2). A smaller K throttles sooner
// (1: as soon as anything is rejected); a larger one later.
func WithAcceptMultiplier(k float64) ThrottleOption {
	return func(t *Throttle) error {
		if !(k >= 1) || math.IsInf(k, 1) {
			return optionError("WithAcceptMultiplier", "k must be >= 1 and finite, got %v", k)
		}
		t.k = k
		return nil
	}
}

// WithThrottleWindow sets how much history the throttle weighs: d must be
// at least 10ns (the window is ten buckets); the default is
// [DefaultThrottleWindow] (2 minutes). History leaves the window a tenth of
// it at a time.
func WithThrottleWindow(d time.Duration) ThrottleOption {
	return func(t *Throttle) error {
		if d < throttleBuckets {
			return optionError("WithThrottleWindow", "d must be >= 10ns, got %v", d)
		}
		t.width = d / throttleBuckets
		return nil
	}
}

// WithThrottleRandom replaces the throttle's source of randomness: random
// must return uniformly distributed values in [0, 1) and be safe for
// concurrent use. It serves deterministic tests and simulations; nil
// restores the default, math/rand/v2's lock-free global generator.
func WithThrottleRandom(random func() float64) ThrottleOption {
	return func(t *Throttle) error {
		t.random = random
		return nil
	}
}

// NewThrottle builds an adaptive throttle; see [Throttle] for the model.
// Without options K is 2 and the window 2 minutes. An invalid option is an
// error that names it.
//
// The window's clock starts when the throttle is built: in testing/synctest
// bubbles, build it inside the bubble.
func NewThrottle(opts ...ThrottleOption) (*Throttle, error) {
	t := &Throttle{
		k:     DefaultAcceptMultiplier,
		width: DefaultThrottleWindow / throttleBuckets,
		epoch: time.Now(),
	}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewThrottle", "nil option"))
		} else if err := o(t); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	if t.random == nil {
		t.random = rand.Float64
	}
	return t, nil
}

// MustNewThrottle is like [NewThrottle] but panics on an invalid option. It
// serves package-level variables.
func MustNewThrottle(opts ...ThrottleOption) *Throttle {
	t, err := NewThrottle(opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// WithThrottle guards an executor's attempts with t (see [Throttle]); one
// throttle may be shared by any number of executors. It adds t as a
// [Policy], after those already added. A nil throttle is refused.
func WithThrottle(t *Throttle) Option {
	return optionFunc(func(e *Executor) error {
		if t == nil {
			return optionError("WithThrottle", "nil throttle")
		}
		return WithPolicy(t).apply(e)
	})
}

// Probability returns the probability with which the throttle refuses an
// attempt now, in [0, 1), after counting everything reported so far.
func (t *Throttle) Probability() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refreshLocked()
}

// Admit refuses the attempt with [ErrThrottled] with the throttle's
// current probability. While that is 0 it reads nothing but one atomic.
func (t *Throttle) Admit(context.Context, int) (Permit, error) {
	p := math.Float64frombits(t.p.Load())
	if p == 0 {
		return Permit{}, nil
	}
	// Degraded: bring the probability up to date, unless another attempt
	// is doing so right now (then its result is as good as ours).
	if t.mu.TryLock() {
		p = t.refreshLocked()
		t.mu.Unlock()
	}
	if p > 0 && t.random() < p {
		t.pendingRequests.Add(1)
		return Permit{}, ErrThrottled
	}
	return Permit{}, nil
}

// Done counts the attempt: a request, accepted when its outcome is
// [Success] or [Fail], unless its error is the upstream asking for less
// traffic ([Throttled], or a [RetryAfter] hint), which is never an accept;
// an [Ignore] outcome is not counted.
func (t *Throttle) Done(_ Permit, r Report) {
	// Decision: a permanent failure was answered by the upstream, so it is
	// an accept; only transient failures count against it (see Throttle).
	// A throttled answer is the very signal the throttle follows, whatever
	// the executor made of it (a 429 to a request that may not be retried
	// is classified Fail).
	switch r.Outcome {
	case Ignore, Unclassified:
		return
	case Success, Fail:
		if r.Err != nil && throttled(r.Err) {
			t.pendingRequests.Add(1)
			break
		}
		if t.pendingAccepts.Add(1) < throttleBatch {
			return
		}
	default:
		t.pendingRequests.Add(1)
	}
	if t.mu.TryLock() {
		t.refreshLocked()
		t.mu.Unlock()
	}
}

// refreshLocked moves the window to now, counts the pending attempts in
// its newest bucket, and stores and returns the refusal probability.
func (t *Throttle) refreshLocked() float64 {
	idx := int64(time.Since(t.epoch) / t.width)
	if gap := idx - t.head; gap > 0 {
		for i := range min(gap, throttleBuckets) {
			t.buckets[(t.head+1+i)%throttleBuckets] = throttleBucket{}
		}
		t.head = idx
	}
	acc := t.pendingAccepts.Swap(0)
	rej := t.pendingRequests.Swap(0)
	b := &t.buckets[t.head%throttleBuckets]
	b.accepts += acc
	b.requests += acc + rej
	var requests, accepts int64
	for _, b := range t.buckets {
		requests += b.requests
		accepts += b.accepts
	}
	p := max(0, (float64(requests)-t.k*float64(accepts))/float64(requests+1))
	t.p.Store(math.Float64bits(p))
	return p
}
