package grpc

import (
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilient-go/resilient"
)

// PushbackKey is the trailer in which a server asks for a pause before the
// next attempt, in milliseconds (gRFC A6): a non-negative integer is a
// floor for the next wait, anything else means "do not retry".
const PushbackKey = "grpc-retry-pushback-ms"

// RetryableCode reports whether a call that may be repeated (an idempotent
// one, see the package doc) is retried by default after a status with code
// c: UNAVAILABLE, DEADLINE_EXCEEDED (of one attempt, not the caller's) and
// ABORTED. RESOURCE_EXHAUSTED is retried only when the server sent
// pushback (see [PushbackKey]); every other code is never retried by
// default. [WithRetryCodes] changes the set.
func RetryableCode(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// FailureCode reports whether a status with code c counts as a failure of
// the upstream for circuit breaking by default: UNKNOWN, DEADLINE_EXCEEDED,
// INTERNAL, UNAVAILABLE and DATA_LOSS, the codes a server that is down,
// overloaded past answering, or broken produces. Every other code is a
// server that answered: INVALID_ARGUMENT or NOT_FOUND say nothing about its
// health, and RESOURCE_EXHAUSTED is the server asking for less traffic,
// which is what the retry's wait and pushback are for, not a reason to cut
// it off. [WithFailureCodes] changes the set. Whatever the set, a failure
// the server sent pushback with may count neither way (see [Classify]).
//
// Decision: this is a choice apart from [RetryableCode]. INTERNAL is not
// worth retrying but says the server is broken; ABORTED is worth retrying
// but says nothing against the server.
func FailureCode(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// Classify is the default classification of a gRPC call's error, for a
// call that may be repeated, as a [resilient.Classifier]: it serves code
// that wraps gRPC calls in [resilient.Do] by hand (the interceptors apply
// the same table, and the idempotency rules on top of it).
//
//	| status code                                   | outcome   | retried | breaker failure |
//	|-----------------------------------------------|-----------|---------|-----------------|
//	| OK (nil error)                                | Success   | -       | no              |
//	| UNAVAILABLE                                   | Retry     | yes     | yes             |
//	| DEADLINE_EXCEEDED (of the attempt)            | Retry     | yes     | yes             |
//	| ABORTED                                       | Retry     | yes     | no (see below)  |
//	| RESOURCE_EXHAUSTED with a server hint         | Retry     | yes     | no (see below)  |
//	| RESOURCE_EXHAUSTED without one                | Success   | no      | no              |
//	| UNKNOWN, INTERNAL, DATA_LOSS                  | Fail      | no      | yes             |
//	| CANCELED (not the caller's), INVALID_ARGUMENT,|           |         |                 |
//	| NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, | Success   | no      | no              |
//	| FAILED_PRECONDITION, OUT_OF_RANGE,            |           |         |                 |
//	| UNIMPLEMENTED, UNAUTHENTICATED                |           |         |                 |
//	| a context error (no status)                   | Retry for DeadlineExceeded, else Unclassified |
//	| any other error without a gRPC status         | Unclassified (the executor's default: retried) |
//
// Success for an error means the server answered and is healthy: the call
// ends, a breaker records a success, and the caller gets the status as it
// is. The caller's own cancellation or deadline never reaches a classifier:
// the executor ignores it (never retried, never counted).
//
// A server hint is any [resilient.RetryAfter] in err's chain; the
// interceptors attach a [PushbackKey] trailer that asks for a wait as one.
//
// The breaker failure column is [FailureCode], which the interceptors' own
// breakers ([WithTargetBreakers], [WithMethodBreakers]) follow. A breaker
// given to the executor counts by the outcome instead: Retry and Fail are
// failures, so a retried ABORTED counts against the upstream. Both keep
// the core's rule for an upstream asking for less traffic
// ([resilient.Throttled]): a failure that carries a hint counts neither
// way, unless the breaker has [resilient.WithOpenFromHint] (then it is a
// failure, and its hint sets how long the breaker stays open). So by
// default neither a retried RESOURCE_EXHAUSTED (it has a hint here) nor an
// UNAVAILABLE with a hint counts against the upstream. The interceptors
// also mark every RESOURCE_EXHAUSTED that carries pushback (a wait of 0
// and "do not retry" included) Throttled: no breaker counts it as a
// failure (one without a wait not even with WithOpenFromHint), and a
// [resilient.Throttle] counts it as a request the server refused.
func Classify(err error) resilient.Outcome {
	if err == nil {
		return resilient.Success
	}
	c, ok := codeOf(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			return resilient.Retry
		}
		return resilient.Unclassified
	}
	return defaultTable.outcome(c, hasHint(err))
}

// table is a configuration of which codes are retried and which count as
// failures.
type table struct {
	retry, failure codeSet
}

// codeSet is a set of status codes, one bit per code.
type codeSet uint32

func (s codeSet) has(c codes.Code) bool { return c < 32 && s&(1<<c) != 0 }

func setOf(cs ...codes.Code) codeSet {
	var s codeSet
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

var defaultTable = table{
	retry:   setOf(codes.Unavailable, codes.DeadlineExceeded, codes.Aborted),
	failure: setOf(codes.Unknown, codes.DeadlineExceeded, codes.Internal, codes.Unavailable, codes.DataLoss),
}

// retryable reports whether code c may be retried, given whether the
// server sent valid pushback.
func (t table) retryable(c codes.Code, pushback bool) bool {
	return t.retry.has(c) || (pushback && c == codes.ResourceExhausted)
}

// outcome is the table's outcome for a call that may be repeated.
func (t table) outcome(c codes.Code, pushback bool) resilient.Outcome {
	switch {
	case c == codes.OK:
		return resilient.Success
	case t.retryable(c, pushback):
		return resilient.Retry
	case t.failure.has(c):
		return resilient.Fail
	}
	return resilient.Success
}

// codeOf returns the gRPC status code in err's chain, mapping the context's
// errors to theirs, without allocating; ok is false for an error with
// neither.
func codeOf(err error) (codes.Code, bool) {
	if s, ok := find[interface{ GRPCStatus() *status.Status }](err); ok {
		if st := s.GRPCStatus(); st != nil {
			return st.Code(), true
		}
		return codes.Unknown, true
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, false
	case errors.Is(err, context.Canceled):
		return codes.Canceled, false
	}
	return codes.Unknown, false
}

// find walks err's chain, depth first as errors.As does, for the first error
// of type E, without allocating.
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

func hasHint(err error) bool {
	h, ok := find[interface{ RetryAfter() time.Duration }](err)
	return ok && h.RetryAfter() > 0
}

// pushback reads [PushbackKey] from trailers: present says whether the
// server sent it; ok is false when it says "do not retry" (a negative or
// malformed value, or more than one value, as grpc-go reads it).
func pushback(trailers metadata.MD) (d time.Duration, present, ok bool) {
	vs := trailers[PushbackKey]
	switch len(vs) {
	case 0:
		return 0, false, true
	case 1:
	default:
		return 0, true, false
	}
	ms, err := strconv.ParseInt(vs[0], 10, 64)
	if err != nil || ms < 0 {
		return 0, true, false
	}
	// Decision (DESIGN 16): a value too large for a Duration saturates,
	// so that it is longer than any cap and ends the call at once.
	if ms > int64(maxDuration/time.Millisecond) {
		return maxDuration, true, true
	}
	return time.Duration(ms) * time.Millisecond, true, true
}

const maxDuration = time.Duration(1<<63 - 1)

// answered marks an attempt's error that ends the call without counting
// against the upstream: the server answered (INVALID_ARGUMENT, say). The
// executor's classifier makes it [resilient.Success]; the interceptor hands
// the caller the error inside.
type answered struct{ err error }

func (a *answered) Error() string { return a.err.Error() }
func (a *answered) Unwrap() error { return a.err }

// classifyMarked is the classifier of the interceptors' executors: every
// decision was made by the attempt (see judge), and told through the error
// (an answer may be marked [resilient.Throttled] around it).
func classifyMarked(err error) resilient.Outcome {
	if _, ok := find[*answered](err); ok {
		return resilient.Success
	}
	if _, ok := find[*callerEnded](err); ok {
		return resilient.Ignore
	}
	return resilient.Retry
}

// callerEnded marks an attempt's error that came once the caller's own
// deadline had passed, before its context's timer said so (ctx.Err() is
// still nil in that instant, and grpc-go already reports the stream as
// DEADLINE_EXCEEDED): the caller's end, which the executor ignores, as it
// does once ctx.Err() is set, never the upstream's failure.
type callerEnded struct{ err error }

func (c *callerEnded) Error() string { return c.err.Error() }
func (c *callerEnded) Unwrap() error { return c.err }

// deadlinePassed reports whether ctx's deadline has passed, whether or not
// its timer has run. It reads the clock: for failures only.
func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// attemptInfo is what an attempt knew besides its error.
type attemptInfo struct {
	trailers   metadata.MD
	repeatable bool // the call may be sent again: idempotent, or retries allowed by option
	neverLeft  bool // the attempt provably never reached a server
	hedged     bool // one of a hedged round's attempts
}

// judge turns an attempt's error into what the executor acts on: the error
// itself (retry, with pushback as a hint), [resilient.Permanent] (a failure
// not to retry) or [answered] (the end of the call, as a success for the
// upstream's health); a RESOURCE_EXHAUSTED with pushback is also marked
// [resilient.Throttled]. caller is the caller's context: once it is done
// the executor ignores the attempt whatever it returned.
func (t table) judge(caller context.Context, err error, a attemptInfo) error {
	if caller.Err() != nil {
		return err
	}
	if err != nil && deadlinePassed(caller) {
		return &callerEnded{err: err}
	}
	c, ok := codeOf(err)
	if !ok && c == codes.Unknown {
		// Not a gRPC error at all (an inner interceptor's own): nothing
		// proves it is transient.
		return resilient.Permanent(err)
	}
	d, present, allowed := pushback(a.trailers)
	var judged error
	switch {
	// Decision (DESIGN 3): a call that may have reached the server is sent
	// again only when it is safe to repeat; one that never left always is.
	case allowed && t.retryable(c, present) && (a.repeatable || a.neverLeft):
		judged = err
		if d > 0 {
			judged = resilient.RetryAfter(err, d)
		}
	case a.hedged && t.retryable(c, present) && (a.repeatable || a.neverLeft):
		// Decision (gRFC A6): in a hedged round, "do not retry" pushback
		// stops further hedges and retries, but the attempts already
		// running go on, and one of them may yet succeed. A wait longer
		// than any cap says exactly that to the core's round: no attempt
		// is added, the others finish, and if none succeeds the call ends
		// at once with this status (ReasonHintTooLong). As a server's
		// hint, it counts against no breaker.
		judged = resilient.RetryAfter(err, maxDuration)
	case t.failure.has(c):
		judged = resilient.Permanent(err)
	default:
		judged = &answered{err: err}
	}
	// Decision (DESIGN 15): a RESOURCE_EXHAUSTED that carries pushback (a
	// wait, 0 included, or "do not retry") is the server asking for less
	// traffic, as an HTTP 429 is: it is marked Throttled, whatever becomes
	// of the call, so that no breaker counts it as a failure (the core's
	// rule; a wait it carries already said so, but 0 or "do not retry" did
	// not) and a resilient.Throttle counts it as a request the upstream
	// refused. Without pushback it is not marked: grpc-go also gives that
	// code for the client's own limits (a message larger than the maximum),
	// which say nothing of the server's load.
	if c == codes.ResourceExhausted && present {
		judged = resilient.Throttled(judged)
	}
	return judged
}
