// Package grpc makes gRPC clients resilient: client interceptors that run
// every call through a [resilient.Executor], retrying what is safe to retry,
// honouring server pushback, giving each attempt its own deadline, and
// guarding targets and methods with circuit breakers.
//
//	import resilientgrpc "github.com/resilient-go/resilient/contrib/grpc"
//
//	usersAPI := resilient.MustNew(resilient.WithAttempts(4), resilient.WithBudget(resilient.MustNewBudget()))
//	ic := resilientgrpc.MustNew(usersAPI)
//	conn, err := grpc.NewClient(target, append(ic.DialOptions(), creds)...)
//
//	reply, err := users.Get(ctx, req)                                 // retried: GetUser is idempotent
//	reply, err = users.Create(ctx, req, resilientgrpc.Idempotent())   // this call may be repeated
//	reply, err = users.Get(ctx, req, resilientgrpc.NoRetry())         // one attempt
//
// The executor's attempts, backoff, caps, time limits, policies (breaker,
// retry budget, throttle, bulkhead), hedging and hooks all apply, each
// attempt counted once; only its classifier is replaced by this package's.
//
// # Classification
//
// Each attempt's status is classified by [Classify]'s table: UNAVAILABLE,
// DEADLINE_EXCEEDED of the attempt and ABORTED are retried
// ([RetryableCode]); RESOURCE_EXHAUSTED only with server pushback;
// INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED,
// FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL, DATA_LOSS and the others
// never. The caller's own cancellation or deadline is never retried and
// never counted against the upstream. Which codes count as failures for
// circuit breaking is a separate choice ([FailureCode]): UNKNOWN,
// DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE and DATA_LOSS. [WithRetryCodes]
// and [WithFailureCodes] change the two sets.
//
// # Idempotency
//
// A call that may have reached the server is sent again only when it is
// safe to repeat: its method is marked with [WithIdempotentMethods], its
// descriptor has idempotency_level NO_SIDE_EFFECTS or IDEMPOTENT (read once
// per method from protoregistry.GlobalFiles, or [WithProtoRegistry]), or the
// call was made with [Idempotent]. Any other call is retried only when its
// attempt provably never left the client.
//
// What an interceptor can observe of that: grpc-go itself retries, with no
// help, an attempt whose stream was refused or never processed by the
// server (transparent retry: a GOAWAY or REFUSED_STREAM, a transport that
// closed while the stream was being created). What reaches an interceptor
// after that is only the final status, and UNAVAILABLE says nothing of
// where it came from. So each attempt of a call that is not safe to repeat
// asks for its peer (grpc.Peer): grpc-go fills it in only once the attempt
// has a stream on a transport. An attempt that fails with no peer never had
// a stream (no connection could be made, or the channel was in transient
// failure and the call did not wait for it, or the stream could not be
// created), so no byte of it went out, and it is retried. An attempt with a
// peer may have been sent, even if it was not: it is not retried. This
// assumes grpc-go's own retry policy (from a service config) is off, as
// [Interceptor.DialOptions] makes it; with it on, an attempt that failed to
// get a stream may follow one of grpc-go's that reached the server.
//
// # Pushback
//
// A grpc-retry-pushback-ms trailer (gRFC A6) is a server's hint for the
// next wait, as an HTTP Retry-After is: a floor that jitter never lowers,
// attached with [resilient.RetryAfter]; a hint beyond the executor's
// [resilient.WithMaxDelay], or one that would end past the caller's
// deadline, ends the call at once with the status that carried it. A
// negative or malformed value, or more than one, means "do not retry"; in
// a hedged call it stops further hedges and retries while the attempts
// already running go on (gRFC A6), and if none of them succeeds the call
// ends with that status, as a hint beyond the cap, counted by no breaker.
// Pushback also makes RESOURCE_EXHAUSTED retryable, and marks it
// [resilient.Throttled], whatever its value and whether the call is
// retried or not: the server asking for less traffic, as an HTTP 429 is,
// which no breaker counts as a failure and a [resilient.Throttle] counts
// as refused.
//
// # Deadlines
//
// Every attempt runs on a context derived from the caller's, so grpc-go
// tells the server the deadline left (grpc-timeout) on every attempt. A
// per-attempt timeout, from the executor ([resilient.WithAttemptTimeout])
// or from the call ([AttemptTimeout]), bounds one attempt: its deadline is
// the earliest of the two and the caller's, never later. An attempt that
// times out while the caller's context is alive is retried if the call is
// safe to repeat.
//
// # Streams
//
// A stream is one call of the executor; each attempt opens a stream, and
// lasts until the stream commits. Once committed, the stream's messages
// and its errors go to the caller as they come, never retried:
//
//   - A server-streaming call commits when its first response message
//     arrives, the stream ends, or the caller reads headers that came.
//     Until then a retryable failure opens a new stream and sends the
//     request again (held by reference: gRPC forbids changing a message
//     after SendMsg), and CloseSend.
//   - A client-streaming or bidirectional call commits when the caller
//     sends its first message, or as above. Until then (the stream failed
//     to open, or failed before the caller sent anything, as seen by a
//     receive) it is opened again.
//   - With [Replay], a client-streaming or bidirectional call does not
//     commit on a send: the messages the caller sends are kept until it
//     commits, and a retry hands them to the replay function (usually
//     [ResendAll]) on the new stream.
//   - A call that is not safe to repeat, or made with [NoRetry], commits
//     once it is open: only an open that never left is retried.
//
// Until a stream commits, its attempts run on a goroutine of the
// interceptor, and the caller's calls on the stream wait for it while a
// retry is under way; hooks run on that goroutine. An attempt timeout
// bounds the time until the stream commits; the server is told the
// caller's deadline, since a committed stream lives on. Streams are never
// hedged.
//
// # Circuit breaking
//
// A breaker given to the executor counts every attempt of every method by
// the executor's outcome (so a retried ABORTED counts as a failure).
// [WithTargetBreakers] and [WithMethodBreakers] guard each target and each
// method with its own breaker from a [resilient.Breakers] set, counted by
// [FailureCode]: a refusal ends the call before anything is sent, with an
// error matching [resilient.ErrOpen] whose status is UNAVAILABLE. Both
// keep the core's rule for the server asking for less traffic: a failure
// with pushback that asks for a wait counts neither way (unless the breaker
// has [resilient.WithOpenFromHint]), and a RESOURCE_EXHAUSTED with any
// pushback never counts as a failure (see [Classify]).
//
// # Hedging
//
// An executor built with [resilient.WithHedge] hedges unary calls that are
// safe to repeat, when their reply is a proto message: each attempt
// receives into its own reply, headers, trailer and peer, and the winner's
// are copied to the caller's. Losers are cancelled, and counted neither
// way by every policy. Calls that are not safe to repeat are never
// hedged.
//
// # Errors
//
// A call returns nil, or the server's status as it is when the server
// answered ([Classify]'s Success rows), or the executor's
// [*resilient.Error], which wraps the last status: status.Code and
// status.FromError read it, and errors.Is matches the reason's sentinel
// ([resilient.ErrExhausted], [resilient.ErrOpen], …). A call ended by the
// caller's context reads as CANCELED or DEADLINE_EXCEEDED; one refused by
// a policy before any status came, as UNAVAILABLE.
//
// An invalid option, or call option, is a [*resilient.OptionError] that
// names it with this package's name, such as "resilient:
// grpc.WithRetryCodes: invalid code OK" (Option "grpc.WithRetryCodes"), and
// matches [resilient.ErrInvalidOption]. [New] reports every invalid
// argument and option, joined (errors.As finds the first), and a call
// every invalid call option; such a call fails at once, unsent.
//
// # Cost
//
// A successful unary call through the interceptor adds two allocations to
// grpc-go's (its copies of the option list and of the trailer, which the
// interceptor asks for to read pushback) and no lock on the executor's
// success path; the call's own state is recycled.
package grpc
