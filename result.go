package resilient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reason says why a call ended.
type Reason uint8

const (
	// ReasonSuccess: an attempt succeeded (or was classified [Success]).
	ReasonSuccess Reason = iota
	// ReasonExhausted: every allowed attempt was made and the last one failed.
	ReasonExhausted
	// ReasonPermanent: an attempt failed in a way classified [Fail], or
	// the executor could not go on (its [WithRandom] source returned a
	// value outside [0, 1): [ErrBadRandom]).
	ReasonPermanent
	// ReasonCanceled: the caller's context was cancelled.
	ReasonCanceled
	// ReasonDeadline: the caller's deadline passed, or the next attempt could
	// not start before it.
	ReasonDeadline
	// ReasonMaxElapsed: the call's own time limit ([WithMaxElapsed]) passed,
	// or the next attempt could not start before it.
	ReasonMaxElapsed
	// ReasonHintTooLong: the upstream asked for a wait ([RetryAfter]) longer
	// than [WithMaxDelay] allows.
	ReasonHintTooLong
	// ReasonRejected: a policy (a breaker, a budget, …) refused an attempt.
	ReasonRejected
)

var reasonNames = [...]string{
	ReasonSuccess:     "success",
	ReasonExhausted:   "exhausted",
	ReasonPermanent:   "permanent",
	ReasonCanceled:    "canceled",
	ReasonDeadline:    "deadline",
	ReasonMaxElapsed:  "max elapsed",
	ReasonHintTooLong: "retry-after too long",
	ReasonRejected:    "rejected",
}

// String returns the reason's lower-case name.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Sentinels that the error returned by a failed call matches with
// [errors.Is], one per [Reason]. A call ended by the caller's context also
// matches the context's error and cause; a call rejected by a policy matches
// the policy's own error (such as [ErrOpen]).
var (
	ErrExhausted   = errors.New("resilient: attempts exhausted")
	ErrPermanent   = errors.New("resilient: permanent failure")
	ErrMaxElapsed  = errors.New("resilient: max elapsed time reached")
	ErrHintTooLong = errors.New("resilient: retry-after hint exceeds max delay")
	ErrRejected    = errors.New("resilient: attempt rejected by a policy")
	// ErrDeadline: the next attempt could not have started before the
	// caller's deadline. It also matches context.DeadlineExceeded.
	ErrDeadline error = deadlineError{}
	// ErrNilContext and ErrNilFunc are returned, without calling anything,
	// when Do is given a nil context or a nil function.
	ErrNilContext = errors.New("resilient: nil context")
	ErrNilFunc    = errors.New("resilient: nil function")
)

type deadlineError struct{}

func (deadlineError) Error() string {
	return "resilient: next attempt cannot start before the deadline"
}
func (deadlineError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// Error is the error a call returns when it does not succeed. It wraps the
// last attempt's error, so [errors.Is] and [errors.As] see it, and it matches
// the sentinel of its [Reason] (and, for a rejection or a done context, the
// policy's or the context's error). Treat it as read-only: the Error of a
// call refused before its first attempt may be shared by other calls
// refused the same way, which keeps refusals free of allocations.
type Error struct {
	// Name is the executor's name (see [WithName]), or "".
	Name string
	// Attempts is how many attempts were made: the calls of the function,
	// less those it refused itself ([Reject]); 0 when the call was refused
	// before its first attempt.
	Attempts int
	// Reason says why the call ended.
	Reason Reason
	// Last is the last attempt's error, with the package's markers
	// ([Permanent], [RetryAfter], [Throttled]) removed; nil when no attempt
	// ran, or when the last attempt returned a value and no error.
	Last error
	// Cause is what stopped the call when that is not Last itself: the
	// context's cause, or a policy's rejection. Nil otherwise.
	Cause error
	// Hint is the wait the upstream asked for with Last (see [RetryAfter]),
	// 0 if none. With [ReasonHintTooLong] it is the hint that ended the
	// call, which a caller may pass on (as its own Retry-After).
	Hint time.Duration
}

func (e *Error) sentinel() error {
	switch e.Reason {
	case ReasonExhausted:
		return ErrExhausted
	case ReasonPermanent:
		return ErrPermanent
	case ReasonDeadline:
		return ErrDeadline
	case ReasonMaxElapsed:
		return ErrMaxElapsed
	case ReasonHintTooLong:
		return ErrHintTooLong
	case ReasonRejected:
		return ErrRejected
	}
	return nil
}

// Error reads, for example,
// "resilient: users: gave up after 3 attempts (exhausted): connection reset".
//
// Decision: the text says each thing once. The cause and the last error
// often tell the same story (a deadline that ended an attempt is both; an
// open breaker's refusal ends with the failure that opened it, often the
// last attempt's own): when the text of one already ends with the other's,
// or the cause wraps the last error, only the one that says more is
// written. Both stay in the fields, and errors.Is and errors.As see both.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("resilient: ")
	if e.Name != "" {
		b.WriteString(e.Name)
		b.WriteString(": ")
	}
	switch e.Attempts {
	case 0:
		b.WriteString("no attempt made")
	case 1:
		b.WriteString("stopped after 1 attempt")
	default:
		fmt.Fprintf(&b, "gave up after %d attempts", e.Attempts)
	}
	b.WriteString(" (")
	b.WriteString(e.Reason.String())
	if e.Reason == ReasonHintTooLong && e.Hint > 0 {
		b.WriteString(": ")
		b.WriteString(e.Hint.String())
	}
	b.WriteByte(')')
	var cause, last string
	if e.Cause != nil {
		cause = e.Cause.Error()
	}
	if e.Last != nil {
		last = e.Last.Error()
	}
	if e.Cause != nil && e.Last != nil {
		switch {
		case says(cause, last) || errors.Is(e.Cause, e.Last):
			last = ""
		case says(last, cause):
			cause = ""
		}
	}
	for _, s := range [...]string{cause, last} {
		if s != "" {
			b.WriteString(": ")
			b.WriteString(s)
		}
	}
	return b.String()
}

// says reports whether the text s already says t: it is t, or ends with it
// as the last element of a chain of messages.
func says(s, t string) bool {
	return s == t || strings.HasSuffix(s, ": "+t)
}

// Unwrap returns the reason's sentinel, the cause and the last error, those
// that are set, for [errors.Is] and [errors.As].
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 3)
	for _, err := range [...]error{e.sentinel(), e.Cause, e.Last} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// DelaySource says where a wait between attempts came from.
type DelaySource uint8

const (
	// FromBackoff: the executor's backoff schedule and jitter.
	FromBackoff DelaySource = iota
	// FromHint: a server's hint ([RetryAfter]) longer than the backoff.
	FromHint
)

// String returns "backoff" or "hint".
func (s DelaySource) String() string {
	if s == FromHint {
		return "hint"
	}
	return "backoff"
}

// Attempt records one attempt of a call.
type Attempt struct {
	// Number counts from 1.
	Number int
	// Duration is how long the function ran.
	Duration time.Duration
	// Err is what the attempt returned (after a value check, see
	// [CheckValue]), markers removed; nil on success.
	Err error
	// Outcome is how the attempt was classified.
	Outcome Outcome
	// Hedged is true for an attempt started as a hedge, while an earlier
	// one was still running (see [WithHedge]).
	Hedged bool
	// Delay is the wait planned after this attempt (0 for the last one) and
	// Source where it came from.
	Delay  time.Duration
	Source DelaySource
	// Hint is the wait the upstream asked for with Err (see [RetryAfter]),
	// 0 if none; it is kept also when it ended the call.
	Hint time.Duration
}

// Result is the whole story of one call, as returned by [DoResult].
type Result[T any] struct {
	// Value and Err are what [Do] would have returned.
	Value T
	Err   error
	// Attempts is how many attempts were made (see [Error.Attempts]).
	Attempts int
	// Reason says why the call ended.
	Reason Reason
	// Elapsed is the time from the call's start to its end.
	Elapsed time.Duration
	// History has one entry per attempt, in order.
	History []Attempt
}
