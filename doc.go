// Package resilient makes any call survive flaky upstreams: it retries
// transient failures with backoff and jitter, cuts persistent ones off with a
// circuit breaker, never storms the upstream, and always tells the caller the
// truth about what happened.
//
//	user, err := resilient.Do(ctx, func(ctx context.Context) (*User, error) {
//		return api.GetUser(ctx, id)
//	})
//
// # Executors
//
// [Do] runs a function of any result type. Without options it makes up to
// three attempts with exponential backoff and full jitter. For a shared
// upstream, build an [Executor] once with [New] and pass it to every call: an
// *Executor is itself an [Option], so passing it alone costs nothing, and a
// successful call through it allocates nothing and takes no lock.
//
//	var usersAPI = resilient.MustNew(
//		resilient.WithName("users-api"),
//		resilient.WithAttempts(4),
//		resilient.WithBackoff(resilient.Exponential(100*time.Millisecond, 5*time.Second)),
//	)
//
//	user, err := resilient.Do(ctx, getUser, usersAPI)
//	err = usersAPI.Run(ctx, func(ctx context.Context) error { return cache.Flush(ctx) })
//
// Options after an executor derive a copy that shares its stateful parts
// (breakers, budgets): resilient.Do(ctx, fn, usersAPI, resilient.WithAttempts(1)).
// Invalid options are errors that name the option, returned by [New] or by
// Do without calling the function.
//
// # Classification
//
// Each attempt's result is classified as [Success], [Retry], [Fail] or
// [Ignore]:
//
//   - a nil error is Success (unless a [CheckValue] check says otherwise);
//   - once the caller's context is done, the attempt is Ignore: the caller's
//     own cancellation is never retried and never counted against the
//     upstream (a per-attempt timeout, with the caller's context alive, is
//     an ordinary Retry);
//   - an error marked with [Permanent] is Fail, and the caller gets the
//     original error back;
//   - otherwise the [Classifier] given to [WithClassifier] decides; when it
//     has no opinion ([Unclassified]), or there is none, the error is
//     retried.
//
// [RetryAfter] attaches a server's hint to an error: the next wait is at
// least the hint, and a hint longer than [WithMaxDelay] ends the call at once
// instead of being clamped. [Throttled] marks an error as the upstream asking
// for less traffic (a 429): still retried, but no failure for a breaker.
//
// A value can be a failure too (an HTTP 503 response): [CheckValue] turns
// values into errors without losing them. When the call gives up, the caller
// gets the last value and an error that says why; values of earlier
// attempts go to the [OnDiscard] hook, so that, say, a response body is
// closed.
//
// # Backoff
//
// Waits follow a pure, shareable [Backoff] schedule ([Constant],
// [Exponential]) randomised by a [Jitter] ([FullJitter], [EqualJitter],
// [DecorrelatedJitter], [ProportionalJitter], [NoJitter]). A wait is never
// negative and never above its cap, for any attempt number. The executor
// never sleeps when the next attempt could not start before the context's
// deadline or [WithMaxElapsed]: it returns the last result at once. A wait
// ends the instant the context is cancelled, and no timer is made for a
// call that succeeds at once.
//
// # Policies and composition
//
// A [Policy] guards each attempt: it admits or refuses it and learns its
// outcome. The library's own are the circuit [Breaker] ([WithBreaker]), the
// retry [Budget] ([WithBudget]), adaptive client-side throttling
// ([Throttle], [WithThrottle]), the [Bulkhead] ([WithBulkhead]), rate limits
// ([WithRateLimit]) and the adaptive [ConcurrencyLimiter]
// ([WithConcurrencyLimit]); a program's own plug in the same way with
// [WithPolicy]. A call is composed
// like this, from the outside in:
//
//	fallback → retry loop {
//	    retry gates (budget, open breaker), asked before each wait
//	    hedge { policies in the order given → attempt timeout → fn }
//	}
//
// and a [Group] goes outside the whole call. The reasons: policies sit
// inside the loop so that a breaker counts every attempt, not every call, and
// a refusal ends the call at once instead of being retried (retrying a
// certain failure only makes callers wait). Retry gates are asked once the
// next wait is planned and before it starts, so a refused retry costs no wait
// and the caller keeps the last attempt's result. Hedges are attempts: each
// passes the policies and the retry gates. The attempt timeout is innermost,
// so a timed-out attempt is an ordinary retryable failure. A guard inside the
// function that the executor cannot see (a breaker per host) refuses an
// attempt by returning [Reject](err): the executor treats it as a policy's
// refusal. The fallback sees the call's final error after the hooks have.
// Put a bulkhead after a breaker, so that a refused call never takes a slot;
// a Group wraps a whole Do, so a deduplicated call counts once against the
// breaker and the budget.
//
// # Circuit breaking
//
// A [Breaker] guards one upstream and serves calls of every result type. It
// opens when, over a sliding window of calls ([WithCountWindow]) or of time
// ([WithTimeWindow]) holding at least [WithMinCalls] calls, the failure rate
// ([WithFailureRate]) or the slow-call rate ([WithSlowCalls]) reaches its
// threshold, or after [WithConsecutiveFailures] failures in a row. An open
// breaker refuses at once with an [*OpenError] matching [ErrOpen]; after the
// open duration a timer makes it half-open, where it admits exactly
// [WithHalfOpenProbes] concurrent probes, closes after
// [WithHalfOpenSuccesses] successes and reopens on a failure. A probe that
// never reports back cannot wedge it ([WithHalfOpenMaxWait]). The caller's
// own cancellation counts neither way; results from before a change of state
// are ignored. An upstream asking for less traffic is not failing: an error
// marked [Throttled] or carrying a [RetryAfter] hint (an HTTP 429, a 503
// with Retry-After) counts neither way, unless [WithOpenFromHint] is set,
// and then its hint sets the open duration. Closed-state calls take no lock
// and read no clock.
//
// Code that cannot wrap a function uses the two-step API, [Breaker.Allow]
// then [Breaker.Record]. [Breakers] keeps one breaker per key (a host, a
// route), bounded and evicting idle ones. State survives restarts through a
// [Store] ([WithStore]); listeners ([WithStateListener]) learn every
// transition with the counts that caused it.
//
// # Protecting the upstream
//
// A [Budget] bounds retries across every call that shares it, so that in an
// outage the upstream sees about one attempt per call, not [WithAttempts] of
// them; [NewAdaptiveBudget] earns retries with successes, so it still lets
// every retry through a brownout. A [RateLimiter] (or any [Limiter]) paces
// attempts ([WithRateLimit]); a [ConcurrencyLimiter] finds how many attempts
// the upstream serves at once without queueing them. [Keyed] keeps one of
// each per host. A [Throttle] refuses attempts locally
// when the upstream accepts too few (the "adaptive throttling" of Google's
// SRE book). A [Bulkhead] bounds attempts in flight. [WithHedge] and
// [WithAdaptiveHedge] race a slow attempt with another one, through
// [DoHedged]; [WithFallback] turns a final error into a value.
//
// # Deduplication
//
// A [Group] shares one execution among concurrent calls with the same key.
// Each caller leaves on its own context at any time; the execution runs on a
// context no single caller can cancel, and is cancelled only when every
// caller has left. A panic in it re-panics in every waiting caller. Values
// are shared read-only; [WithCopy] gives each caller its own.
//
//	var users resilient.Group[string, *User]
//	user, err := users.Do(ctx, id, func(ctx context.Context) (*User, error) {
//		return resilient.Do(ctx, fetchUser(id), usersAPI)
//	})
//
// # Observability
//
// [Hooks] report each attempt, retry and end of a call; [Observe] turns them
// and breaker transitions into one typed event stream; [SlogHooks] logs them
// with log/slog; [TextMetrics] serves them in the Prometheus text format. The
// modules contrib/prometheus and contrib/otel export the same to Prometheus
// and OpenTelemetry. Unset hooks cost nothing.
//
// # Errors
//
// A call that does not succeed returns an [*Error]. It wraps the last
// attempt's error, so errors.Is and errors.As see it; it says how many
// attempts were made and why the call stopped, and matches the [Reason]'s
// sentinel: [ErrExhausted], [ErrPermanent], [ErrDeadline], [ErrMaxElapsed],
// [ErrHintTooLong], [ErrRejected]. A call ended by its context also matches
// the context's error and cause. The hint the last attempt's error carried
// is kept ([Error.Hint]), also when it ended the call, so that a caller can
// pass it on. [DoResult] returns the same as data, with a record per
// attempt; [Hooks] report each attempt (with the wait that follows it),
// retry and end as they happen. When a retry is refused, after its wait
// too, the caller gets the last attempt's value and error, with the refusal
// as the cause.
//
// An invalid option is an [*OptionError] that names it (matching
// [ErrInvalidOption]); a constructor given several reports every one. A
// context the library cancels because nobody wants the work's result any
// more (a hedge that lost, a shared execution every caller left) has the
// cause [ErrAbandoned].
//
// # Testing
//
// The package reads time only through the time package, so code that uses
// it is tested in testing/synctest bubbles, with fake time: backoff waits,
// deadlines and timeouts run instantly and deterministically. Build
// executors (and breakers) inside the bubble. [WithRandom] makes jitter
// deterministic, and [NoJitter] removes it.
package resilient
