package resilient

import (
	"fmt"
	"math"
	"time"
)

// Backoff is a schedule of waits between attempts: a pure function of the
// retry number, with no state of its own, so one value can be shared by any
// number of executors and goroutines. Build one with [Constant] or
// [Exponential]; the randomness is added by a [Jitter] (see [WithJitter]).
//
// The zero Backoff is Constant(0): retry at once.
type Backoff struct {
	base, max time.Duration
	exp       bool
	err       error // set by a constructor given invalid arguments
}

// Constant waits d before every retry. d must be >= 0; 0 retries at once
// (no timer is created for a zero wait).
func Constant(d time.Duration) Backoff {
	b := Backoff{base: d, max: d}
	if d < 0 {
		b.err = fmt.Errorf("Constant: d must be >= 0, got %v", d)
	}
	return b
}

// Exponential waits base before the first retry and doubles the wait for
// each further retry, up to max: base, 2·base, 4·base, … max. base must be
// > 0 and max >= base. The doubling never overflows, whatever the retry
// number.
func Exponential(base, max time.Duration) Backoff {
	b := Backoff{base: base, max: max, exp: true}
	switch {
	case base <= 0:
		b.err = fmt.Errorf("Exponential: base must be > 0, got %v", base)
	case max < base:
		b.err = fmt.Errorf("Exponential: max must be >= base (%v), got %v", base, max)
	}
	return b
}

// Delay returns the wait before retry number retry (1 for the wait after
// the first attempt), before jitter: never negative, never above the
// schedule's max. A retry < 1 is treated as 1.
func (b Backoff) Delay(retry int) time.Duration {
	if !b.exp || retry <= 1 {
		return b.base
	}
	// base·2^(retry-1), computed in float64 so it cannot overflow; any
	// exponent large enough to pass max is max.
	if retry > 64 {
		return b.max
	}
	d := math.Ldexp(float64(b.base), retry-1)
	if d >= float64(b.max) {
		return b.max
	}
	return time.Duration(d)
}

// String describes the schedule, as in "exponential(100ms..5s)".
func (b Backoff) String() string {
	if b.exp {
		return fmt.Sprintf("exponential(%v..%v)", b.base, b.max)
	}
	return fmt.Sprintf("constant(%v)", b.base)
}

// Jitter spreads retries of many callers apart so that they do not hit a
// recovering upstream in lockstep. Use one of [NoJitter], [FullJitter],
// [EqualJitter], [DecorrelatedJitter] or [ProportionalJitter].
//
// Jitter draws from math/rand/v2's global generator, which is lock-free and
// safe for concurrent use; [WithRandom] replaces it for deterministic tests.
type Jitter struct {
	kind jitterKind
	frac float64
}

type jitterKind uint8

const (
	jitterNone jitterKind = iota
	jitterFull
	jitterEqual
	jitterDecorrelated
	jitterProportional
)

var (
	// NoJitter waits exactly the schedule's delay.
	NoJitter = Jitter{kind: jitterNone}
	// FullJitter waits a uniformly random time in [0, delay): the AWS
	// "full jitter", the best spread and the default.
	FullJitter = Jitter{kind: jitterFull}
	// EqualJitter waits delay/2 plus a uniformly random time in
	// [0, delay/2): never less than half the delay.
	EqualJitter = Jitter{kind: jitterEqual}
	// DecorrelatedJitter waits a uniformly random time in
	// [base, 3·previous wait), capped at the schedule's max: each wait
	// grows from the last one drawn rather than from the retry number (the
	// AWS "decorrelated jitter"). With a [Constant] schedule it is the
	// constant.
	DecorrelatedJitter = Jitter{kind: jitterDecorrelated}
)

// ProportionalJitter waits the delay scaled by a uniformly random factor in
// [1-frac, 1+frac) (gRPC's jitter is 0.2), capped at the schedule's max.
// frac must be in [0, 1]; [WithJitter] refuses anything else, NaN included.
func ProportionalJitter(frac float64) Jitter {
	return Jitter{kind: jitterProportional, frac: frac}
}

// String names the jitter, as in "full" or "proportional(0.2)".
func (j Jitter) String() string {
	switch j.kind {
	case jitterNone:
		return "none"
	case jitterFull:
		return "full"
	case jitterEqual:
		return "equal"
	case jitterDecorrelated:
		return "decorrelated"
	case jitterProportional:
		return fmt.Sprintf("proportional(%g)", j.frac)
	}
	return "unknown"
}

func (j Jitter) validate() error {
	if j.kind == jitterProportional && !(j.frac >= 0 && j.frac <= 1) {
		return fmt.Errorf("ProportionalJitter: frac must be in [0, 1], got %v", j.frac)
	}
	if j.kind > jitterProportional {
		return fmt.Errorf("unknown jitter kind %d", j.kind)
	}
	return nil
}

// next is the whole schedule: the wait before retry number retry, given the
// previous wait (for decorrelated jitter; 0 before the first retry) and a
// uniform random u in [0, 1). It is pure, never negative and never above
// b.max, for every retry up to math.MaxInt and every u, prev.
func next(b Backoff, j Jitter, retry int, prev time.Duration, u float64) time.Duration {
	if !(u >= 0 && u < 1) { // NaN or out of range from a user's source
		u = 0
	}
	var d float64
	switch j.kind {
	case jitterFull:
		d = float64(b.Delay(retry)) * u
	case jitterEqual:
		h := float64(b.Delay(retry)) / 2
		d = h + h*u
	case jitterDecorrelated:
		lo := float64(b.base)
		hi := 3 * float64(max(prev, b.base))
		d = lo + (hi-lo)*u
	case jitterProportional:
		d = float64(b.Delay(retry)) * (1 - j.frac + 2*j.frac*u)
	default:
		return b.Delay(retry)
	}
	switch {
	case d <= 0 || d != d:
		return 0
	case d >= float64(b.max):
		return b.max
	}
	return time.Duration(d)
}
