package resilient

import (
	"context"
	"errors"
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
	// DefaultRetryRatio: retries may add at most 10% to the requests sent
	// ([NewBudget]).
	DefaultRetryRatio = 0.1
	// DefaultEarnRatio: each first attempt that succeeds earns half a retry
	// ([NewAdaptiveBudget]), so retries that fail may waste at most one
	// request for every two that succeed at once.
	DefaultEarnRatio = 0.5
	// DefaultRetryBurst: a budget holds at most 10 retries, and starts full.
	DefaultRetryBurst = 10
	// DefaultMinRetryRate: one retry per second is always allowed.
	DefaultMinRetryRate = 1.0
)

// tokenUnit is one retry's worth of budget, in the fixed-point units the
// balance is kept in (a millionth of a retry is the finest ratio step).
const tokenUnit = 1_000_000

// maxRetryBurst is the largest burst a balance in tokenUnits can hold.
const maxRetryBurst = math.MaxInt64 / tokenUnit

// Budget is a retry budget: it bounds the retries of every call that
// shares it, so that when an upstream fails, retries add a bounded load to
// it instead of multiplying it by the number of attempts allowed. A budget
// keeps its balance of retries in a token bucket, and comes in two models,
// chosen by its constructor.
//
// [NewAdaptiveBudget], which most callers should use, earns retries with
// successes and spends them on retries that fail, so it tells a brownout
// (retries succeed: they go on) from an outage (retries fail: they stop).
// Every first attempt that succeeds earns ratio of a retry
// ([WithRetryRatio], default [DefaultEarnRatio]); a retry is allowed while
// the balance holds a whole retry; a retry that fails (is classified
// [Retry]) costs one, and a retry that succeeds costs nothing: it earned its
// keep. So, over any stretch of time, the retries that fail number at most
// ratio times the calls that succeeded at once, plus the bucket's burst, the
// floor's retries, and the retries under way when the balance ran out. In a total outage nothing is earned: after the burst, calls make one
// attempt each, plus the floor. In a brownout the balance stays full while
// the share of attempts that fail stays below about 40% (with 4 attempts
// and the default ratio), and every retry a call needs is allowed.
//
// [NewBudget] is a fixed-ratio budget, in the style of Finagle's and
// Envoy's: every first attempt that reaches the upstream deposits ratio of
// a retry ([WithRetryRatio], default [DefaultRetryRatio]), whatever its
// outcome; every retry withdraws one whole retry when it is allowed. It
// keeps retries to ratio of the requests in any weather: about 1 + ratio
// attempts per call in an outage, and a brownout that needs more retries
// than that loses calls.
//
// In both models the bucket holds at most burst retries ([WithRetryBurst])
// and starts full. When the balance cannot pay for a retry, the retry is
// still allowed while a floor of min retries per second
// ([WithMinRetryRate]) has room, so that a client with little traffic can
// retry at all and a recovering upstream is found. Otherwise the retry is
// refused with [ErrBudgetExhausted], and the call ends at once with the last
// attempt's result, rather than after a wasted wait. First attempts are
// never refused: a budget limits retries, not calls (see [Throttle] and
// [ConcurrencyLimiter] for that). Hedged attempts count as retries.
//
// Decision (fixed ratio): deposits are made per request (first attempt),
// not per success as in gRPC's retry throttling. gRPC's bucket stops all
// retries once half of it is spent on failures, so in an outage its callers
// make one attempt each; ours keeps a trickle of ratio retries per request,
// which is what lets a recovering upstream be found by retries, while the
// total load stays bounded by 1 + ratio times the request rate (plus the
// floor). The adaptive model earns per success instead, and lets the first
// attempts find the recovery: each success it sees earns retries back.
//
// Decision (adaptive): the cost of a retry is settled when its outcome is
// known, not reserved when it is allowed. A reservation would be held
// through the backoff wait and the attempt, so that at a few hundred retries
// a second a brownout whose retries all succeed would run the bucket dry
// with tokens that were about to come back. The price is that the retries
// allowed while the balance still held a retry, before the failures of
// those already under way were counted, all go out: when an outage begins,
// about one backoff wait's worth of calls retry. Their cost is kept as a
// debt, never forgiven, which successes pay back before retries resume. A
// retry the floor paid for is not charged again when it fails. A retry that
// never ran (a later policy refused it, the call's context ended during the
// wait) costs nothing; nor does a retry that ends the call with a permanent
// error ([Fail]: the upstream answered), or a hedge that lost its race
// ([Ignore]).
//
// Decision: the bucket's cap stands in for a sliding time window. Deposits
// do not expire by time, so the success path reads no clock; the cap bounds
// how many retries a long quiet past can fund, to burst. Only the floor,
// which is consulted when the bucket is empty, reads the clock.
//
// A Budget is a [Policy] and a [RetryGate]: give it to executors with
// [WithBudget]. The zero value is not usable; build one with a
// constructor. A Budget is safe for concurrent use and is meant to be
// shared by every executor that calls one upstream ([Keyed] keeps one per
// host). On the success path it takes no lock, reads no clock and allocates
// nothing: one atomic load (and a compare-and-swap while the bucket is not
// full).
type Budget struct {
	// balance is the bucket, in tokenUnits: 0 <= balance <= burst; when
	// adaptive, balance <= burst, and below 0 by at most the retries that
	// were allowed while it held one and failed after it ran out.
	balance  atomic.Int64
	deposit  int64 // per request (per success when adaptive), in tokenUnits
	burst    int64 // in tokenUnits
	adaptive bool  // built by NewAdaptiveBudget
	// floorPaid counts the retries the floor allowed whose outcome an
	// adaptive budget has not yet settled: they are not charged to the
	// balance. Retries are settled in any order, so this is an attribution
	// by count, exact in total.
	floorPaid atomic.Int64

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

// WithRetryRatio sets what a budget earns. For [NewBudget] it is the share
// of requests that may be retried: each call's first attempt deposits r of a
// retry; the default is [DefaultRetryRatio] (0.1: retries add at most 10%
// to the load). For [NewAdaptiveBudget] each first attempt that succeeds
// earns r of a retry, which retries that fail then spend; the default is
// [DefaultEarnRatio] (0.5). r must be in [1e-6, 1]. To never retry, use
// WithAttempts(1) on the executor instead.
func WithRetryRatio(r float64) BudgetOption {
	return func(b *Budget) error {
		if !(r > 0 && r <= 1) { // also refuses NaN
			return optionError("WithRetryRatio", "r must be in (0, 1], got %v", r)
		}
		b.deposit = int64(math.Round(r * tokenUnit))
		if b.deposit == 0 {
			return optionError("WithRetryRatio", "r must be at least 1e-06, got %v", r)
		}
		return nil
	}
}

// WithRetryBurst sets how many retries the budget can hold, and holds when
// it is built: after a healthy spell, up to n retries can happen at once
// beyond the ratio. n must be >= 1 (and below about 9.2e12, which would
// overflow the balance); the default is [DefaultRetryBurst].
func WithRetryBurst(n int) BudgetOption {
	return func(b *Budget) error {
		switch {
		case n < 1:
			return optionError("WithRetryBurst", "n must be >= 1, got %d", n)
		case int64(n) > maxRetryBurst:
			return optionError("WithRetryBurst", "n must be at most %d, got %d", int64(maxRetryBurst), n)
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
			return optionError("WithMinRetryRate", "perSecond must be >= 0 and finite, got %v", perSecond)
		}
		b.rate = perSecond
		return nil
	}
}

// NewBudget builds a fixed-ratio retry budget; see [Budget] for the model.
// Without options it allows retries of 10% of requests, a burst of 10 and a
// floor of 1 retry per second. An invalid option is an error that names it.
//
// The floor's clock starts when the budget is built: in testing/synctest
// bubbles, build the budget inside the bubble.
func NewBudget(opts ...BudgetOption) (*Budget, error) {
	return newBudget("NewBudget", false, DefaultRetryRatio, opts)
}

// NewAdaptiveBudget builds a retry budget that earns retries with successes
// and spends them on retries that fail; see [Budget] for the model. Without
// options each success earns half a retry, the bucket holds 10 and the
// floor allows 1 retry per second: retries go on through a brownout and
// stop in an outage, with no tuning. An invalid option is an error that
// names it.
//
// The floor's clock starts when the budget is built: in testing/synctest
// bubbles, build the budget inside the bubble.
func NewAdaptiveBudget(opts ...BudgetOption) (*Budget, error) {
	return newBudget("NewAdaptiveBudget", true, DefaultEarnRatio, opts)
}

func newBudget(fn string, adaptive bool, ratio float64, opts []BudgetOption) (*Budget, error) {
	b := &Budget{
		deposit:  int64(ratio * tokenUnit),
		burst:    DefaultRetryBurst * tokenUnit,
		adaptive: adaptive,
		rate:     DefaultMinRetryRate,
		epoch:    time.Now(),
	}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError(fn, "nil option"))
		} else if err := o(b); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
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

// MustNewAdaptiveBudget is like [NewAdaptiveBudget] but panics on an
// invalid option. It serves package-level variables.
func MustNewAdaptiveBudget(opts ...BudgetOption) *Budget {
	b, err := NewAdaptiveBudget(opts...)
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
			return optionError("WithBudget", "nil budget")
		}
		return WithPolicy(b).apply(e)
	})
}

// Available returns how many retries the budget would allow now from its
// balance, not counting the floor: a number in [0, burst]. An adaptive
// budget's balance may be negative: a debt of failed retries that successes
// pay back before retries resume.
func (b *Budget) Available() float64 {
	return float64(b.balance.Load()) / tokenUnit
}

// Adaptive reports whether the budget was built by [NewAdaptiveBudget].
func (b *Budget) Adaptive() bool { return b.adaptive }

// Admit admits every attempt: a budget never refuses a call, only retries
// (see [Budget.AllowRetry]).
func (b *Budget) Admit(context.Context, int) (Permit, error) {
	return Permit{}, nil
}

// Done settles the attempt with the budget. A fixed-ratio budget deposits
// its ratio for each first attempt that reached the upstream, whatever its
// outcome. An adaptive budget deposits its ratio for each first attempt that
// succeeded, and withdraws one retry for each retry that failed ([Retry]).
// An attempt that was refused by another policy or ended by the caller's own
// cancellation ([Ignore]) counts for nothing.
func (b *Budget) Done(_ Permit, r Report) {
	if r.Outcome == Ignore {
		return
	}
	if !b.adaptive {
		// Decision: deposit per request that reached the upstream, not per
		// success (see Budget): an outage then still funds ratio retries.
		if r.Attempt == 1 {
			b.earn()
		}
		return
	}
	switch {
	case r.Attempt == 1:
		if r.Outcome == Success {
			b.earn()
		}
	case b.settleFloor():
		// The floor paid for this retry, whatever its outcome.
	case r.Outcome == Retry:
		// Decision: a retry's cost is settled here, by its outcome, not
		// reserved in AllowRetry (see Budget). Debt is never forgiven.
		b.balance.Add(-tokenUnit)
	}
}

// settleFloor settles one retry paid for by the floor, if one is unsettled.
func (b *Budget) settleFloor() bool {
	for {
		n := b.floorPaid.Load()
		if n == 0 { // the common case: one load
			return false
		}
		if b.floorPaid.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// earn deposits the budget's ratio, up to the burst.
func (b *Budget) earn() {
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

// AllowRetry allows attempt number attempt, or returns
// [ErrBudgetExhausted]. Attempt 1 is always allowed. A fixed-ratio budget
// withdraws one retry from its balance, or from the floor when the ratio's
// share is spent. An adaptive budget allows the retry while its balance
// holds a whole retry, withdrawing nothing (a retry that fails pays in
// [Budget.Done]), or else spends one of the floor. The executor calls it
// before each wait for a retry, and before each hedged attempt; a retry it
// allowed that is then not made (another gate refuses it, a breaker opens
// during its wait, a policy refuses its admission, the caller's context
// ends) is given back.
func (b *Budget) AllowRetry(attempt int) error {
	_, err := b.allowRetry(attempt)
	return err
}

// retryCharge says what a budget took to allow a retry, so that a retry
// that is then never made can be given back (see Budget.refund).
type retryCharge uint8

const (
	chargeNone    retryCharge = iota // nothing: attempt 1, or an adaptive budget's balance (it charges in Done)
	chargeBalance                    // one retry from a fixed budget's balance
	chargeFloor                      // one retry from the floor
)

// allowRetry is AllowRetry, saying what it took.
func (b *Budget) allowRetry(attempt int) (retryCharge, error) {
	if attempt <= 1 {
		return chargeNone, nil
	}
	if b.adaptive {
		if b.balance.Load() >= tokenUnit {
			return chargeNone, nil
		}
	} else {
		for {
			old := b.balance.Load()
			if old < tokenUnit {
				break
			}
			if b.balance.CompareAndSwap(old, old-tokenUnit) {
				return chargeBalance, nil
			}
		}
	}
	if b.rate > 0 && b.takeFloor() {
		if b.adaptive {
			b.floorPaid.Add(1)
		}
		return chargeFloor, nil
	}
	return chargeNone, ErrBudgetExhausted
}

// refund gives back what allowRetry took for a retry that was never made:
// another gate refused it, a breaker opened during its wait, a policy
// refused its admission, or the caller's context ended first.
//
// Decision: a retry that is never made costs the budget nothing, whatever
// the order of the executor's policies; a budget that paid for retries a
// breaker then refused would be drained by an outage the breaker already
// stopped, and be empty for the recovery.
func (b *Budget) refund(c retryCharge) {
	switch c {
	case chargeBalance:
		for {
			old := b.balance.Load()
			if old >= b.burst || b.balance.CompareAndSwap(old, min(old+tokenUnit, b.burst)) {
				return
			}
		}
	case chargeFloor:
		b.mu.Lock()
		b.floor = min(b.floor+1, b.floorCap())
		b.mu.Unlock()
		if b.adaptive {
			b.settleFloor() // the retry it counted in floorPaid will never settle
		}
	}
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
