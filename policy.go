package resilient

import (
	"context"
	"time"
)

// A Policy guards every attempt of the executors it is given to (see
// [WithPolicy]): it may admit or refuse each attempt, and it learns each
// admitted attempt's outcome. The circuit [Breaker] is a Policy; so can be a
// rate limiter that waits before each attempt, a concurrency limit, or an
// outcome recorder.
//
// Policies run in the order given: Admit in that order before the attempt,
// Done in the reverse order after it. A Policy is shared by every call of
// every executor holding it, so it must be safe for concurrent use; on the
// success path it should neither allocate nor lock.
type Policy interface {
	// Admit is called before attempt number attempt (from 1) of a call. A
	// nil error admits it; the Permit is handed back to Done unchanged. A
	// non-nil error refuses it: the call ends at once with
	// [ReasonRejected] and an error that wraps this one (it is not retried).
	// Admit may block (a rate limiter), but must return when ctx is done.
	Admit(ctx context.Context, attempt int) (Permit, error)

	// Done reports the end of an admitted attempt. It is called exactly once
	// per admitted attempt, also when the attempt panicked (Outcome [Fail],
	// Err [ErrPanicked]) or was never run because a later policy refused it
	// (Outcome [Ignore]).
	Done(Permit, Report)
}

// Permit is what [Policy.Admit] hands back to [Policy.Done]: the policy's
// own bookkeeping for one attempt (a breaker keeps its generation in it).
type Permit struct {
	Token uint64
}

// Report is the end of one attempt, as a [Policy] learns it.
type Report struct {
	// Attempt counts from 1.
	Attempt int
	// Outcome is the attempt's classification.
	Outcome Outcome
	// Err is the attempt's error (nil on success), markers included so that
	// a policy can read a [RetryAfter] hint.
	Err error
	// Duration is how long the attempt ran. It is measured only when some
	// policy of the executor implements [DurationPolicy] and asks for it,
	// or when hooks are set; otherwise it is 0, and the success path reads
	// no clock.
	Duration time.Duration
}

// DurationPolicy is implemented by policies that need [Report.Duration]
// (a breaker that counts slow calls). The executor asks once, when it is
// built.
type DurationPolicy interface {
	Policy
	NeedsDuration() bool
}

// RetryGate is implemented by policies that decide whether a retry may
// happen at all, such as a retry budget. The executor asks every gate
// before it waits for a retry, so a refused retry ends the call at once
// rather than after a wasted wait; a non-nil error ends the call with
// [ReasonRejected], wrapping it and the last attempt's error. First attempts
// are never gated.
type RetryGate interface {
	AllowRetry(attempt int) error
}

// watcher is implemented by retry gates whose answer can change while a
// call waits to retry: a [Breaker], which may open. changed returns a
// channel closed at the gate's next change of state; the executor's wait
// then asks the gate again, and ends at once if it now refuses.
type watcher interface {
	RetryGate
	changed() <-chan struct{}
}
