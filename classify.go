package resilient

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Outcome is what an attempt's result means to the executor.
//
// A [Classifier] returns [Unclassified] to leave the decision to the next
// classifier in a chain, or to the default rule when none is left.
type Outcome uint8

const (
	// Unclassified means "no opinion": the next classifier, or the default
	// rule, decides. The executor never acts on Unclassified itself.
	Unclassified Outcome = iota
	// Success ends the call and counts as a success for every policy (a
	// breaker records it as healthy). An error classified as Success is still
	// returned to the caller.
	Success
	// Retry marks a transient failure: the call is retried if attempts, time
	// and policies allow.
	Retry
	// Fail marks a permanent failure: the call ends at once and the failure
	// is recorded against the upstream.
	Fail
	// Ignore ends the call without counting it for or against the upstream;
	// it is what the caller's own cancellation is.
	Ignore
)

// String returns the outcome's lower-case name.
func (o Outcome) String() string {
	switch o {
	case Unclassified:
		return "unclassified"
	case Success:
		return "success"
	case Retry:
		return "retry"
	case Fail:
		return "fail"
	case Ignore:
		return "ignore"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// A Classifier decides what a non-nil error returned by an attempt means.
// It is only called while the caller's context is alive (a done context is
// always [Ignore]) and never for errors marked with [Permanent] (always
// [Fail]). Return [Unclassified] to defer to the default rule, which retries.
//
// Classifiers must be safe for concurrent use; they run on every failed
// attempt.
type Classifier func(err error) Outcome

// Classifiers chains classifiers: the first one that returns anything but
// [Unclassified] decides. Nil entries are skipped.
func Classifiers(cs ...Classifier) Classifier {
	chain := make([]Classifier, 0, len(cs))
	for _, c := range cs {
		if c != nil {
			chain = append(chain, c)
		}
	}
	return func(err error) Outcome {
		for _, c := range chain {
			if o := c(err); o != Unclassified {
				return o
			}
		}
		return Unclassified
	}
}

// RetryOn returns a classifier that marks errors matching any of targets
// (by [errors.Is]) as [Retry] and leaves every other error unclassified.
func RetryOn(targets ...error) Classifier {
	return matching(Retry, targets)
}

// FailOn returns a classifier that marks errors matching any of targets (by
// [errors.Is]) as [Fail] and leaves every other error unclassified.
func FailOn(targets ...error) Classifier {
	return matching(Fail, targets)
}

func matching(o Outcome, targets []error) Classifier {
	targets = append([]error(nil), targets...)
	return func(err error) Outcome {
		for _, t := range targets {
			if errors.Is(err, t) {
				return o
			}
		}
		return Unclassified
	}
}

// Permanent marks err as not worth retrying: the executor stops at once and
// the caller gets err back (the returned error wraps err itself, not the
// marker, so [errors.Is] and [errors.As] see the original). Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Reject marks err as a refusal of the attempt before anything was sent:
// the function's own guard said no (a breaker per host that the executor
// cannot see, a local limit). The executor treats it exactly as a refusal
// by one of its policies ([Policy.Admit]): the attempt does not count
// ([Error.Attempts] and [Result.Attempts] leave it out, and it has no
// record in [Result.History] and no [AttemptEvent]), every policy that
// admitted it is told [Ignore], and the call ends at once, without a wait,
// with [ReasonRejected] and err as [Error.Cause]. So errors.Is(err,
// [ErrOpen]) holds for a breaker's refusal, and [RejectedBy] names the kind
// of guard. When an earlier attempt ran, the caller gets that attempt's
// value and error back (see [Do]). In a hedged round, a refused hedge
// never ends the round while another attempt is in flight.
//
// Return the zero value with it: a value returned with a refusal is
// released through [OnDiscard]. Reject(nil) is nil.
func Reject(err error) error {
	if err == nil {
		return nil
	}
	return &rejectError{err: err}
}

type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

// refusal returns the error given to [Reject] in err's chain, or nil.
func refusal(err error) error {
	if r, ok := find[*rejectError](err); ok {
		return r.err
	}
	return nil
}

// Throttled marks err as the upstream asking for less traffic rather than
// failing: an HTTP 429, a gRPC RESOURCE_EXHAUSTED with pushback. It stays
// retryable like any error (a [RetryAfter] hint it carries is honoured as
// usual), and the caller gets err back without the marker.
//
// Decision: a throttled attempt is not a failure of the upstream. A
// [Breaker] counts it neither way (see [Breaker.Done]): an upstream that
// sheds load is working as designed, and opening a breaker on it would
// refuse the requests it is still willing to serve. It is still the signal
// a [Throttle] acts on. An error carrying a hint (a 503 with Retry-After)
// is taken the same way, marked or not. Throttled(nil) is nil.
func Throttled(err error) error {
	if err == nil {
		return nil
	}
	return &throttledError{err: err}
}

type throttledError struct{ err error }

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// throttled reports whether err is the upstream asking for less traffic:
// marked [Throttled], or carrying a hint (see [RetryAfter]).
func throttled(err error) bool {
	if hintOf(err) > 0 {
		return true
	}
	_, ok := find[*throttledError](err)
	return ok
}

// RetryAfter marks err as retryable no sooner than d from now: a server's
// hint, such as HTTP's Retry-After. The hint is a floor for the next delay:
// jitter never takes the delay below it, but spreads callers over up to a
// fifth of the hint above it (unless [NoJitter]). It is never clamped: a
// hint beyond [WithMaxDelay] or past the context's deadline ends the call at
// once with err. A d <= 0 adds no hint: RetryAfter returns err as it is,
// so that a hint further down err's chain still holds. RetryAfter(nil, d)
// is nil.
//
// Any error in the chain that has a method RetryAfter() time.Duration gives
// a hint the same way, so errors of other packages can carry one too.
func RetryAfter(err error, d time.Duration) error {
	if err == nil || d <= 0 {
		return err
	}
	return &hintError{err: err, after: d}
}

type hintError struct {
	err   error
	after time.Duration
}

func (e *hintError) Error() string             { return e.err.Error() }
func (e *hintError) Unwrap() error             { return e.err }
func (e *hintError) RetryAfter() time.Duration { return e.after }

// unmark is implemented by the package's own markers (Permanent,
// RetryAfter, Reject, Throttled).
func (e *hintError) unmark() error      { return e.err }
func (e *permanentError) unmark() error { return e.err }
func (e *rejectError) unmark() error    { return e.err }
func (e *throttledError) unmark() error { return e.err }

type hinter interface{ RetryAfter() time.Duration }

// hintOf returns the first server hint found in err's chain, or 0.
func hintOf(err error) time.Duration {
	if h, ok := findHinter(err); ok {
		if d := h.RetryAfter(); d > 0 {
			return d
		}
	}
	return 0
}

// findHinter is find[hinter], written out. In generic code a type
// assertion to an interface misses the runtime's per-site cache and looks
// the pair up in the global itab table, once per error in the chain: with
// hintOf run by the retry and by a breaker's report, that lookup was a
// quarter of a failed attempt through a breaker
// (BenchmarkRetryBreakerFlaky). Here the assertion is cached.
func findHinter(err error) (hinter, bool) {
	for err != nil {
		if h, ok := err.(hinter); ok {
			return h, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if h, ok := findHinter(inner); ok {
					return h, true
				}
			}
			return nil, false
		default:
			return nil, false
		}
	}
	return nil, false
}

// find is errors.As for the package's own use: it walks err's chain
// (depth-first, as errors.As does) for the first error of type E, without
// allocating, since the failure path runs it on every attempt.
func find[E any](err error) (E, bool) {
	for err != nil {
		if e, ok := err.(E); ok {
			return e, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if e, ok := find[E](inner); ok {
					return e, true
				}
			}
			return *new(E), false
		default:
			return *new(E), false
		}
	}
	return *new(E), false
}

// stripMarkers removes the package's markers at the top of err's chain, so
// the caller receives its own error back.
func stripMarkers(err error) error {
	for {
		m, ok := err.(interface{ unmark() error })
		if !ok {
			return err
		}
		err = m.unmark()
	}
}

// classify decides what an attempt's error means. callCtx is the context of
// the whole call: once it is done nothing is retried, and the attempt is
// ignored only when the caller's own context (parent) ended it.
//
// Decision (DESIGN 9): the caller's cancellation is never retried and never
// counts against the upstream. It is told apart by the caller's context, not
// by the error: a per-attempt timeout returns context.DeadlineExceeded too,
// but leaves the caller's context alive, so it is an ordinary Retry.
//
// A refusal ([Reject]) is Ignore: no attempt was made, so no policy counts
// it; the executor then ends the call as a policy's refusal would.
func (ex *Executor) classify(parent context.Context, err error) Outcome {
	if err == nil {
		return Success
	}
	if _, ok := find[*rejectError](err); ok {
		return Ignore
	}
	if parent.Err() != nil {
		return Ignore
	}
	if _, ok := find[*permanentError](err); ok {
		return Fail
	}
	if ex.classifier != nil {
		if o := ex.classifier(err); o != Unclassified {
			return o
		}
	}
	return Retry
}
