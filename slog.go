package resilient

import (
	"context"
	"log/slog"
)

// Attribute keys of the records that [SlogHooks] and [SlogStateListener]
// log. They are stable: dashboards and alerts may rely on them.
const (
	LogKeyExecutor    = "executor"     // string: the executor's name
	LogKeyAttempt     = "attempt"      // int: the attempt's number, from 1
	LogKeyOutcome     = "outcome"      // string: the attempt's [Outcome]
	LogKeyDuration    = "duration"     // time.Duration: how long the attempt ran
	LogKeyDelay       = "delay"        // time.Duration: the wait before the next attempt
	LogKeyDelaySource = "delay_source" // string: the wait's [DelaySource]
	LogKeyAttempts    = "attempts"     // int: how many attempts the call made
	LogKeyReason      = "reason"       // string: why the call ended, a [Reason]
	LogKeyElapsed     = "elapsed"      // time.Duration: how long the call took
	LogKeyPolicy      = "policy"       // string: the refusing policy, see [RejectedBy]
	LogKeyError       = "error"        // error: the attempt's or the call's error

	LogKeyBreaker             = "breaker"              // string: the breaker's name
	LogKeyFrom                = "from"                 // string: the [State] left
	LogKeyTo                  = "to"                   // string: the [State] entered
	LogKeyCalls               = "calls"                // int: calls in the breaker's window
	LogKeyFailures            = "failures"             // int: failures in the window
	LogKeySlowCalls           = "slow_calls"           // int: slow calls in the window
	LogKeyFailureRate         = "failure_rate"         // float64: failures / calls
	LogKeySlowCallRate        = "slow_call_rate"       // float64: slow calls / calls
	LogKeyConsecutiveFailures = "consecutive_failures" // int: failures since the last success
)

// Messages of the records that [SlogHooks] and [SlogStateListener] log.
const (
	LogMsgAttempt = "resilient: attempt"
	LogMsgRetry   = "resilient: retry"
	LogMsgDone    = "resilient: call done"
	LogMsgGaveUp  = "resilient: gave up"
	LogMsgBreaker = "resilient: breaker state"
)

// SlogHooks returns hooks that log what executors do through logger (nil
// means slog.Default() at the time of the call), one record per event:
//
//   - every attempt, at Debug, as [LogMsgAttempt] with executor, attempt,
//     outcome, duration and error (when there is one);
//   - every retry, at Info, as [LogMsgRetry] with executor, attempt (the
//     one that failed), delay, delay_source and error;
//   - the end of a call that succeeded, at Debug, as [LogMsgDone] with
//     executor, attempts, reason and elapsed;
//   - the end of a call that did not, as [LogMsgGaveUp] with executor,
//     attempts, reason, elapsed, error and, for a refusal, policy: at Warn,
//     except when the caller cancelled the call ([ReasonCanceled]), which is
//     the caller's decision and not the upstream's failure, at Info.
//
// The keys are the LogKey constants. Records are logged with
// context.Background(), since hooks carry no context. Levels that the
// logger does not enable cost a call to its Enabled method and nothing
// else.
func SlogHooks(logger *slog.Logger) Hooks {
	if logger == nil {
		logger = slog.Default()
	}
	return Hooks{
		OnAttempt: func(ev AttemptEvent) {
			ctx := context.Background()
			if !logger.Enabled(ctx, slog.LevelDebug) {
				return
			}
			attrs := [5]slog.Attr{
				slog.String(LogKeyExecutor, ev.Name),
				slog.Int(LogKeyAttempt, ev.Number),
				slog.String(LogKeyOutcome, ev.Outcome.String()),
				slog.Duration(LogKeyDuration, ev.Duration),
			}
			n := 4
			if ev.Err != nil {
				attrs[n] = slog.Any(LogKeyError, ev.Err)
				n++
			}
			logger.LogAttrs(ctx, slog.LevelDebug, LogMsgAttempt, attrs[:n]...)
		},
		OnRetry: func(ev RetryEvent) {
			ctx := context.Background()
			if !logger.Enabled(ctx, slog.LevelInfo) {
				return
			}
			logger.LogAttrs(ctx, slog.LevelInfo, LogMsgRetry,
				slog.String(LogKeyExecutor, ev.Name),
				slog.Int(LogKeyAttempt, ev.Attempt),
				slog.Duration(LogKeyDelay, ev.Delay),
				slog.String(LogKeyDelaySource, ev.Source.String()),
				slog.Any(LogKeyError, ev.Err),
			)
		},
		OnDone: func(ev DoneEvent) {
			ctx := context.Background()
			level, msg := slog.LevelDebug, LogMsgDone
			if ev.Err != nil && ev.Reason != ReasonSuccess {
				// Decision: the caller's own cancellation is not the
				// upstream's failure (DESIGN 9), so it is not a warning.
				level, msg = slog.LevelWarn, LogMsgGaveUp
				if ev.Reason == ReasonCanceled {
					level = slog.LevelInfo
				}
			}
			if !logger.Enabled(ctx, level) {
				return
			}
			var attrs [6]slog.Attr
			attrs[0] = slog.String(LogKeyExecutor, ev.Name)
			attrs[1] = slog.Int(LogKeyAttempts, ev.Attempts)
			attrs[2] = slog.String(LogKeyReason, ev.Reason.String())
			attrs[3] = slog.Duration(LogKeyElapsed, ev.Elapsed)
			n := 4
			if ev.Err != nil {
				attrs[n] = slog.Any(LogKeyError, ev.Err)
				n++
			}
			if ev.Reason == ReasonRejected {
				if p := RejectedBy(ev.Err); p != "" {
					attrs[n] = slog.String(LogKeyPolicy, p)
					n++
				}
			}
			logger.LogAttrs(ctx, level, msg, attrs[:n]...)
		},
	}
}

// SlogStateListener returns a breaker listener (for [WithStateListener])
// that logs every state change of the breaker through logger (nil means
// slog.Default() at the time of the call), as [LogMsgBreaker] with breaker,
// from, to, the window's calls, failures, slow_calls, failure_rate,
// slow_call_rate and consecutive_failures at the change (why it tripped),
// and error, the error that opened it, when there is one. The level says
// what the change means to callers:
//
//   - Warn when calls start to be refused or protection stops: the breaker
//     opens, is forced open, or is disabled;
//   - Info when it half-opens or closes;
//   - Debug for the initial state, logged once when the breaker is built.
func SlogStateListener(logger *slog.Logger) func(Transition) {
	if logger == nil {
		logger = slog.Default()
	}
	return func(t Transition) {
		ctx := context.Background()
		level := slog.LevelInfo
		switch {
		case t.From == t.To:
			level = slog.LevelDebug
		case t.To == StateOpen, t.To == StateForcedOpen, t.To == StateDisabled:
			level = slog.LevelWarn
		}
		if !logger.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{
			slog.String(LogKeyBreaker, t.Name),
			slog.String(LogKeyFrom, t.From.String()),
			slog.String(LogKeyTo, t.To.String()),
			slog.Int(LogKeyCalls, t.Metrics.Calls),
			slog.Int(LogKeyFailures, t.Metrics.Failures),
			slog.Int(LogKeySlowCalls, t.Metrics.SlowCalls),
			slog.Float64(LogKeyFailureRate, t.Metrics.FailureRate),
			slog.Float64(LogKeySlowCallRate, t.Metrics.SlowCallRate),
			slog.Int(LogKeyConsecutiveFailures, t.Metrics.ConsecutiveFailures),
		}
		if t.Cause != nil {
			attrs = append(attrs, slog.Any(LogKeyError, t.Cause))
		}
		logger.LogAttrs(ctx, level, LogMsgBreaker, attrs...)
	}
}
