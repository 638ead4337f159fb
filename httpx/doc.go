// Package httpx makes HTTP calls resilient, safely by default: an
// [http.RoundTripper] ([Transport]) and a plain [*http.Client] ([NewClient])
// that retry what is safe to retry, honour Retry-After, replay request
// bodies (a stream within a bounded buffer, never read ahead of sending),
// and never leak a connection or a body.
//
//	resp, err := httpx.Get(ctx, "https://api.example.com/status")
//	if err != nil {
//		return err // no response came: err says why, and after how many attempts
//	}
//	defer resp.Body.Close() // the last response, whatever its status
//
//	client := httpx.NewClient(httpx.Recommended()) // a plain *http.Client, for a service
//
// # Defaults
//
// [Get], [Do], the zero [Transport] and [NewClient] without options use
// this policy:
//
//	| setting                | default                                               |
//	|------------------------|-------------------------------------------------------|
//	| attempts               | 4 in all (DefaultAttempts)                            |
//	| backoff                | exponential 100ms, 200ms, … up to 10s, full jitter    |
//	| retried statuses       | 408, 429, 500, 502, 503, 504 (RetryableStatus)        |
//	| never retried          | 1xx-3xx, other 4xx, 501, 505 and other 5xx            |
//	| retried errors         | resets, refusals, timeouts, DNS failures, EOFs        |
//	| never retried errors   | certificate/TLS errors, invalid request, redirects    |
//	| retried methods        | GET HEAD OPTIONS TRACE PUT DELETE; POST/PATCH with an |
//	|                        | Idempotency-Key, or only when never sent (dial, DNS)  |
//	| Retry-After            | seconds or HTTP-date; a floor for the wait; above 30s |
//	|                        | (DefaultMaxRetryAfter) the call ends at once          |
//	| after the last attempt | the last response, err == nil; a retryable one's body |
//	|                        | as kept in memory (up to 64 KiB, see below)           |
//	| responses set aside    | body read up to 64 KiB (DrainLimit) within 5ms        |
//	|                        | (DrainTimeout), then closed: never held, never waited |
//	| request bodies         | replayed through GetBody; a stream teed into a buffer |
//	|                        | of up to 1 MiB (WithReplayLimit), beyond: sent once   |
//	| per-attempt timeout    | none (WithAttemptTimeout; the context bounds the call)|
//	| retry budget           | adaptive, one per host: retries go on while they      |
//	|                        | succeed and stop when they fail (burst 10, then half  |
//	|                        | a retry per success at once, floor 1/s; see below)    |
//	| hosts remembered       | 1000 (DefaultMaxHosts, WithMaxHosts), least recently  |
//	|                        | used forgotten                                        |
//	| redirects              | 10 (MaxRedirects), then ErrTooManyRedirects           |
//	| base transport         | http.DefaultTransport                                 |
//	| per-host breakers      | none (WithHostBreakers, or Recommended)               |
//	| deduplication          | none (WithDedup)                                      |
//
// The default policy protects the upstream with no tuning. Each host has
// its own adaptive retry budget ([resilient.NewAdaptiveBudget]): every
// call that succeeds at once earns half a retry, every retry that fails
// spends one, so retries go on through a brownout, where they succeed,
// and stop in an outage, where they fail: an outage then costs the
// upstream about one request per call, not four. One host's outage spends
// only its own budget.
//
// Adding to the policy keeps the rest of it: [WithExecutorOptions] adds
// hooks, a name, a breaker or a budget (any [resilient.Option]) to the
// default policy, and [WithHostPolicies] adds policies per host (a
// concurrency or rate limiter, a breaker). [WithExecutor] replaces the
// policy wholesale, per-host budgets included. [Recommended] is the setup
// we recommend for a service: these defaults and a breaker per host.
//
// # Classification
//
// A response is classified by its status with [StatusOutcome] (or your
// [WithStatusClassifier]); a transport error with [ClassifyError], by type
// and errors.Is/As, never by its text. A request is retried only when it is
// safe to send it again: its method is idempotent ([IdempotentMethod]), it
// carries an idempotency key ([HasIdempotencyKey], or [WithIdempotencyKeys]
// to add one), the caller opted in ([WithNonIdempotentRetries]), or the
// failure proves it never left ([NeverSent]). Otherwise its first answer
// is the final one. A request that cannot be sent at all (an invalid
// header name or value, an invalid method, a URL without a host) is
// refused before any attempt with [ErrInvalidRequest]; one with a scheme
// other than http and https is handed to the base once, never retried.
//
// A Retry-After header ([ParseRetryAfter]) sets a floor for the next wait;
// jitter never lowers it. A hint longer than the cap (the executor's
// [resilient.WithMaxDelay]: [DefaultMaxRetryAfter] by default), or one that
// would end past the context's deadline, ends the call at once with that
// response: never a clamped early retry, never a sleep of hours. A value
// too long for a time.Duration saturates ([MaxRetryAfter]), so it too ends
// the call at once. Garbage and negative values are ignored, so the
// backoff alone decides.
//
// # Bodies and connections
//
// Each attempt after the first is a copy of the request with a fresh body
// from GetBody, which [http.NewRequest] sets for bytes, strings and their
// readers. A body without GetBody (a pipe, a file) is teed into a buffer
// as it is sent, up to [WithReplayLimit] (1 MiB by default, as Envoy's
// retry buffer), and later attempts replay it from there, then read on
// from the stream: nothing is read ahead of sending. A body that outgrows
// the buffer, or is announced longer than it, is sent once, and its
// request is not retried after that point (but after a failure that
// proves none of it was sent); such a request is never hedged. The caller's request is never modified, and its body is closed
// exactly once on every path, as the RoundTripper contract requires.
//
// A retryable response (a 503 that may be retried) is set aside as soon as
// it comes: its body is read into memory, bounded in bytes ([DrainLimit])
// and in time ([DrainTimeout], and the end of the call or of its hedged
// round), and its connection closed, or back in the pool when the body
// came whole. The executor may hold such a response during its wait, or
// return it once it stops, without holding a connection, and a body that
// stalls never holds the call: it costs its connection instead. The caller
// who gets it reads what was kept; a body cut short ends with an error
// matching [ErrBodyTruncated] rather than passing for whole. A response
// discarded any other way (the late answer of a hedged attempt that lost)
// is drained with the same bounds and closed, exactly once.
//
// Every other response returned, a success or a final status, is never
// touched: its body stays readable until the caller closes it. With
// [WithAttemptTimeout], its timeout keeps bounding the read of that body,
// like http.Client.Timeout, but returning from RoundTrip does not cancel
// it.
//
// # Policies
//
// [WithExecutor] takes any [resilient.Executor]: its attempts, backoff,
// classifier, breaker, budget and hooks apply to every request; the
// breaker counts every attempt. [WithExecutorOptions] adds options to the
// Transport's executor, the default one or WithExecutor's, and keeps the
// rest. An executor that hedges
// ([resilient.WithHedge]) races slow attempts of requests that are safe to
// repeat, and the losers' responses are set aside as above, never holding
// the winner's return; a request that is not safe to repeat is never
// hedged.
//
// A policy of the executor is told nothing of the request, so it guards
// every host together. [WithHostPolicies] gives each host a copy of the
// executor with policies of its own, built on the host's first request and
// found again without a lock or an allocation: the default budget, and any
// budget, limiter or breaker the caller adds. Their refusals are
// rejections, as the executor's are, and a budget is asked before each
// wait.
//
// # Circuit breaking
//
// A breaker given to the executor guards every host together.
// [WithHostBreakers] gives each host its own, from a
// [resilient.Breakers] set ([Recommended] builds one): a failing host is
// cut off while the others are served, and with
// [resilient.WithOpenFromHint] a 503's or 429's
// Retry-After sets how long its breaker stays open. A 429, and a response
// with Retry-After, is the upstream asking for less traffic, not failing
// ([resilient.Throttled]): without WithOpenFromHint no breaker counts it.
// A hedge that lost its round counts neither way. A host breaker's refusal
// is a rejection, like the executor's breaker's: nothing is sent, no
// attempt is counted, no wait is made, [resilient.RejectedBy] names it,
// and the caller gets the last response that came, if any.
//
// # Deduplication
//
// [WithDedup] makes concurrent identical GET and HEAD requests share one
// execution; each caller gets its own response and its own reader of the
// body. Identical means the same method, URL and headers, header names
// compared case-insensitively, except per-request tracing headers
// (traceparent, tracestate, baggage, X-Request-Id, B3): see
// [DefaultDedupKey]. So requests with different credentials, wherever
// they are (Authorization, Cookie, an API key, a tenant header), never
// share. A narrower key ([DedupKeyIgnoring], or a function of your own) is
// an explicit choice, and its safety is then the caller's.
//
// # Errors
//
// A request that gets no response fails with a [*resilient.Error] that
// wraps the last attempt's error, so errors.Is and errors.As see both,
// along with the reason the Transport stopped (resilient.ErrExhausted,
// resilient.ErrPermanent, resilient.ErrOpen, the context's error, …).
// A host breaker's refusal, or a replay the Transport cannot make, ends it
// as a rejection ([resilient.ReasonRejected]). [ErrNilResponse],
// [ErrInvalidRequest], [ErrNilTransport] and [ErrTooManyRedirects] are the
// package's own, and [ErrBodyTruncated] is what the body of a response set
// aside returns when it could not be kept whole. A [*StatusError] is what
// hooks and classifiers see for a response that is retried; the caller
// gets the response itself.
//
// An invalid option is a [*resilient.OptionError] that names it with this
// package's name, such as "resilient: httpx.WithMaxHosts: n must be >= 1,
// got 0" (Option "httpx.WithMaxHosts"), and matches
// [resilient.ErrInvalidOption]. [NewTransport] reports every invalid
// option, joined (errors.As finds the first); [NewClient]'s requests fail
// with that error, unsent. An option of the core that the Transport passes
// on ([WithExecutorOptions]' options, [Recommended]'s breaker options) is
// reported as an error of the option that took it, with the core's own
// *OptionError inside: "resilient: httpx.Recommended: resilient:
// WithFailureRate: …". So is one of [WithHostPolicies], for the host whose
// requests it fails.
package httpx
