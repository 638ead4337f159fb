package resilient

import "time"

// Hooks are functions the executor calls as a call unfolds, on the caller's
// goroutine; each is optional. They are how a program logs, meters or traces
// calls: the library itself never logs. With any hook set, the executor
// reads the clock around each attempt; without hooks it reads none.
//
// Hooks must not block for long: they run inside the call.
type Hooks struct {
	// OnAttempt is called after each attempt, once its outcome is known.
	OnAttempt func(AttemptEvent)
	// OnRetry is called after a failed attempt when another one will follow,
	// before the wait.
	OnRetry func(RetryEvent)
	// OnDone is called once at the end of every call; a give-up is an
	// OnDone whose Err is not nil.
	OnDone func(DoneEvent)
}

// AttemptEvent tells of one finished attempt.
type AttemptEvent struct {
	// Name is the executor's name.
	Name string
	Attempt
}

// RetryEvent tells of a retry about to happen.
type RetryEvent struct {
	// Name is the executor's name.
	Name string
	// Attempt is the number of the attempt that failed (from 1); the next
	// one is Attempt+1.
	Attempt int
	// Err is that attempt's error.
	Err error
	// Delay is the wait before the next attempt, and Source where it came
	// from.
	Delay  time.Duration
	Source DelaySource
}

// DoneEvent tells of the end of a call.
type DoneEvent struct {
	// Name is the executor's name.
	Name string
	// Attempts is how many attempts were made.
	Attempts int
	// Reason is why the call ended; Err what it returned.
	Reason Reason
	Err    error
	// Elapsed is the call's duration.
	Elapsed time.Duration
}

// WithHooks adds hooks to the executor. Hooks added by several WithHooks
// options all run, in the order they were added.
func WithHooks(h Hooks) Option {
	return optionFunc(func(e *Executor) error {
		e.hooks.OnAttempt = chain(e.hooks.OnAttempt, h.OnAttempt)
		e.hooks.OnRetry = chain(e.hooks.OnRetry, h.OnRetry)
		e.hooks.OnDone = chain(e.hooks.OnDone, h.OnDone)
		return nil
	})
}

func chain[E any](a, b func(E)) func(E) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(ev E) { a(ev); b(ev) }
}
