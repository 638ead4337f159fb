package resilient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBudgetExhausted is the error a [Budget] refuses a retry with. The call
// it ends returns an [*Error] with [ReasonRejected] that matches it, matches
// [ErrRejected], and wraps the last attempt's error.
var ErrBudgetExhausted = errors.New("resilient: retry budget exhausted")

// Defaults of a [Budget] built without options.
const (
	// DefaultRetryRatio: retries may add at most 10% to the requests sent.
	DefaultRetryRatio = 0.1
	// DefaultRetryBurst: a budget holds at most 10 retries, and starts full.
	DefaultRetryBurst = 10
	// DefaultMinRetryRate: one retry per second is always allowed.
	DefaultMinRetryRate = 1.0
)

// tokenUnit is one retry's worth of budget, in the fixed-point units the
// balance is kept in (a millionth of a retry is the finest ratio step).
const tokenUnit = 1_000_000

// Budget is a retry budget: it keeps the retries of every call that shares
// it to a fraction of the requests those calls make, so that when an
// upstream fails, retries add a bounded load to it (about 1 + ratio attempts
// per call) instead of multiplying it by the number of attempts allowed.
//
// The model is a token bucket, in the style of Finagle's and Envoy's retry
// budgets. Every call's first attempt that reaches the upstream deposits
// ratio of a token ([WithRetryRatio]); every retry withdraws one whole
// token; the bucket holds at most burst tokens ([WithRetryBurst]) and starts
// full. When the bucket holds less than one token, a retry is still allowed
// while a floor of min retries per second ([WithMinRetryRate]) has room, so
// that a client with little traffic can still retry at all. Otherwise the
// retry is refused with [ErrBudgetExhausted], and the call ends at once with
// the last attempt's result, rather than after a wasted wait.
//
// First attempts are never refused: a budget limits retries, not calls (see
// [Throttle] for that). Hedged attempts count as retries.
//
// Decision: deposits are made per request (first attempt), not per success
// as in gRPC's retry throttling. gRPC's bucket stops all retries once half
// of it is spent on failures, so in an outage its callers make one attempt
// each; ours keeps a trickle of ratio retries per request, which is what
// lets a recovering upstream be found by retries, while the total load stays
// bounded by 1 + ratio times the request rate (plus the floor).
//
// Decision: the bucket's cap stands in for a sliding time window. Deposits
// do not expire by time, so the success path reads no clock; the cap bounds
// how many retries a long quiet past can fund, to burst. Only the floor,
// which is consulted when the bucket is empty, reads the clock.
//
// A Budget is a [Policy] and a [RetryGate]: give it to executors with
// [WithBudget]. It is safe for concurrent use and is meant to be shared by
// every executor that calls one upstream. On the success path it takes no
// lock, reads no clock and allocates nothing: one atomic load (and a
// compare-and-swap while the bucket is not full).
type Budget struct {
	// balance is the bucket, in tokenUnits: 0 <= balance <= burst.
	balance atomic.Int64
	deposit int64 // per request, in tokenUnits
	burst   int64 // in tokenUnits

	// The floor: a token bucket refilled with time, consulted only when
	// balance cannot pay for a retry. rate == 0 disables it.
	rate  float64 // retries per second
	mu    sync.Mutex
	floor float64       // tokens; guarded by mu
	last  time.Duration // since epoch, when floor was last refilled; guarded by mu
	epoch time.Time
}

// BudgetOption configures a [Budget] built by [NewBudget].
type BudgetOption func(*Budget) error

// WithRetryRatio sets the share of requests that may be retried: each
// call's first attempt deposits r of a retry. r must be in [1e-6, 1]; the
// default is [DefaultRetryRatio] (0.1: retries add at most 10% to the
// load). To never retry, use WithAttempts(1) on the executor instead.
func WithRetryRatio(r float64) BudgetOption {
	return func(b *Budget) error {
		if !(r > 0 && r <= 1) { // also refuses NaN
			return fmt.Errorf("resilient: WithRetryRatio: r must be in (0, 1], got %v", r)
		}
		b.deposit = int64(math.Round(r * tokenUnit))
		if b.deposit == 0 {
			return fmt.Errorf("resilient: WithRetryRatio: r must be at least 1e-06, got %v", r)
		}
		return nil
	}
}

// WithRetryBurst sets how many retries the budget can hold, and holds when
// it is built: after a healthy spell, up to n retries can happen at once
// beyond the ratio. n must be >= 1; the default is [DefaultRetryBurst].
func WithRetryBurst(n int) BudgetOption {
	return func(b *Budget) error {
		if n < 1 || n > math.MaxInt64/tokenUnit {
			return fmt.Errorf("resilient: WithRetryBurst: n must be >= 1, got %d", n)
		}
		b.burst = int64(n) * tokenUnit
		return nil
	}
}

// WithMinRetryRate sets a floor of retries per second that are allowed even
// when the ratio's share is spent, so that a client with little traffic can
// still retry. perSecond must be >= 0 and finite; 0 removes the floor. The
// default is [DefaultMinRetryRate]. The floor holds at most one second's
// worth (and at least one retry).
func WithMinRetryRate(perSecond float64) BudgetOption {
	return func(b *Budget) error {
		if !(perSecond >= 0) || math.IsInf(perSecond, 1) {
			return fmt.Errorf("resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got %v", perSecond)
		}
		b.rate = perSecond
		return nil
	}
}

// NewBudget builds a retry budget; see [Budget] for the model. Without
// options it allows retries of 10% of requests, a burst of 10 and a floor
// of 1 retry per second. An invalid option is an error that names it.
//
// The floor's clock starts when the budget is built: in testing/synctest
// bubbles, build the budget inside the bubble.
func NewBudget(opts ...BudgetOption) (*Budget, error) {
	b := &Budget{
		deposit: int64(DefaultRetryRatio * tokenUnit),
		burst:   DefaultRetryBurst * tokenUnit,
		rate:    DefaultMinRetryRate,
		epoch:   time.Now(),
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("resilient: NewBudget: nil option")
		}
		if err := o(b); err != nil {
			return nil, err
		}
	}
	b.balance.Store(b.burst)
	b.floor = b.floorCap()
	return b, nil
}

// MustNewBudget is like [NewBudget] but panics on an invalid option. It
// serves package-level variables.
func MustNewBudget(opts ...BudgetOption) *Budget {
	b, err := NewBudget(opts...)
	if err != nil {
		panic(err)
	}
	return b
}

// WithBudget guards an executor's retries with b (see [Budget]); one budget
// may be shared by any number of executors. It adds b as a [Policy], after
// those already added. A nil budget is refused.
func WithBudget(b *Budget) Option {
	return optionFunc(func(e *Executor) error {
		if b == nil {
			return errors.New("resilient: WithBudget: nil budget")
		}
		return WithPolicy(b).apply(e)
	})
}

// Available returns how many retries the budget would allow now from its
// ratio share, not counting the floor: a number in [0, burst].
func (b *Budget) Available() float64 {
	return float64(b.balance.Load()) / tokenUnit
}

// Admit admits every attempt: a budget never refuses a call, only retries
// (see [Budget.AllowRetry]).
func (b *Budget) Admit(context.Context, int) (Permit, error) {
	return Permit{}, nil
}

// Done deposits the budget's ratio for each first attempt that reached the
// upstream, whatever its outcome; an attempt that was refused by another
// policy or ended by the caller's own cancellation ([Ignore]) deposits
// nothing.
func (b *Budget) Done(_ Permit, r Report) {
	// Decision: deposit per request that reached the upstream, not per
	// success (see Budget): an outage then still funds ratio retries.
	if r.Attempt != 1 || r.Outcome == Ignore {
		return
	}
	for {
		old := b.balance.Load()
		if old >= b.burst { // full: the common, healthy case is one load
			return
		}
		if b.balance.CompareAndSwap(old, min(old+b.deposit, b.burst)) {
			return
		}
	}
}

// AllowRetry withdraws one retry from the budget, or from the floor when
// the ratio's share is spent, and returns [ErrBudgetExhausted] when
// neither can pay. Attempt 1 is always allowed. The executor calls it
// before each wait for a retry, and before each hedged attempt.
func (b *Budget) AllowRetry(attempt int) error {
	if attempt <= 1 {
		return nil
	}
	for {
		old := b.balance.Load()
		if old < tokenUnit {
			break
		}
		if b.balance.CompareAndSwap(old, old-tokenUnit) {
			return nil
		}
	}
	if b.rate > 0 && b.takeFloor() {
		return nil
	}
	return ErrBudgetExhausted
}

func (b *Budget) floorCap() float64 { return max(b.rate, 1) }

// takeFloor spends one retry of the floor, refilled at rate per second.
// It runs only when the ratio's share is spent, so its lock and clock read
// stay off the success path.
func (b *Budget) takeFloor() bool {
	now := time.Since(b.epoch)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.floor = min(b.floor+(now-b.last).Seconds()*b.rate, b.floorCap())
	b.last = now
	if b.floor < 1 {
		return false
	}
	b.floor--
	return true
}
