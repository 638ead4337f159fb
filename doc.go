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
// instead of being clamped.
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
// # Policies
//
// A [Policy] guards each attempt: it admits or refuses it and learns its
// outcome. Policies compose inside the retry loop, in the order given:
//
//	retry loop { policies (breaker, limiter, …) → attempt timeout → fn }
//
// so a breaker counts every attempt, not every call, and a policy's refusal
// ends the call at once rather than being retried. A policy that also
// implements [RetryGate] (a retry budget) is asked before each wait.
//
// # Errors
//
// A call that does not succeed returns an [*Error]. It wraps the last
// attempt's error, so errors.Is and errors.As see it; it says how many
// attempts were made and why the call stopped, and matches the [Reason]'s
// sentinel: [ErrExhausted], [ErrPermanent], [ErrDeadline], [ErrMaxElapsed],
// [ErrHintTooLong], [ErrRejected]. A call ended by its context also matches
// the context's error and cause. [DoResult] returns the same as data, with a
// record per attempt; [Hooks] report each attempt, retry and end as they
// happen.
//
// # Testing
//
// The package reads time only through the time package, so code that uses
// it is tested in testing/synctest bubbles, with fake time: backoff waits,
// deadlines and timeouts run instantly and deterministically. Build
// executors (and breakers) inside the bubble. [WithRandom] makes jitter
// deterministic, and [NoJitter] removes it.
package resilient
