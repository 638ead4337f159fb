package grpc

import (
	"context"
	"errors"

	"github.com/resilient-go/resilient"
)

// keyedBreaker is a [resilient.Policy] that guards attempts with the
// breaker of one key (a target, a method) from a set, and counts them by
// the failure codes (see [FailureCode]) rather than by the executor's
// retry decision.
//
// The breaker is taken from the set at each attempt (lock-free, no
// allocation), so that a breaker the set forgot and built anew is the one
// used, as for every other user of the set.
type keyedBreaker struct {
	set   *resilient.Breakers
	key   string
	table *table
}

// permit carries the breaker an attempt was admitted by, so that its
// outcome goes to that breaker even if the set has replaced it since.
// Decision: the Permit has room for one token only, so the breaker is
// found again in Done; should the set have forgotten it meanwhile, the
// outcome goes to the new breaker, whose generation check drops it.
func (k *keyedBreaker) Admit(context.Context, int) (resilient.Permit, error) {
	return k.set.Get(k.key).Allow()
}

func (k *keyedBreaker) Done(p resilient.Permit, r resilient.Report) {
	k.set.Get(k.key).Done(p, resilient.Report{
		Attempt:  r.Attempt,
		Outcome:  k.outcome(r),
		Err:      r.Err,
		Duration: r.Duration,
	})
}

// outcome is what the attempt means for the upstream's health: a failure
// code is a failure, any other answer a success; what the executor ignores
// (the caller's cancellation, a hedge that lost, another policy's refusal)
// stays ignored.
func (k *keyedBreaker) outcome(r resilient.Report) resilient.Outcome {
	switch {
	case r.Outcome == resilient.Ignore || r.Outcome == resilient.Unclassified:
		return r.Outcome
	case r.Err == nil:
		return resilient.Success
	case errors.Is(r.Err, resilient.ErrPanicked):
		return resilient.Fail
	}
	if c, _ := codeOf(r.Err); k.table.failure.has(c) {
		return resilient.Fail
	}
	return resilient.Success
}

// NeedsDuration implements [resilient.DurationPolicy] for sets that count
// slow calls.
func (k *keyedBreaker) NeedsDuration() bool { return k.set.Get(k.key).NeedsDuration() }

// AllowRetry implements [resilient.RetryGate]: while the key's breaker is
// open, a retry is refused before its wait, and the caller keeps the last
// attempt's status.
func (k *keyedBreaker) AllowRetry(n int) error { return k.set.Get(k.key).AllowRetry(n) }
