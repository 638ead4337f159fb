package resilient

import "context"

// WithFallback turns a call's final error into a result: when a call ends
// with an error, fb is called with the caller's context and that error, and
// what it returns is what the caller gets (serve a stale cached value, a
// default, or a better error). Hooks still see the original error: OnDone
// runs before fb. The call's last value, if any, is released through
// [OnDiscard] first. fb is not called for a nil context or function, or for
// invalid options.
//
// T must be the type of the calls the executor runs; calls of other types
// return their error unchanged. Nil removes the fallback.
func WithFallback[T any](fb func(ctx context.Context, err error) (T, error)) Option {
	return optionFunc(func(e *Executor) error {
		if fb == nil {
			e.fallback = nil
			return nil
		}
		e.fallback = fb
		return nil
	})
}

// fallback applies the executor's fallback, if it was given for T.
func fallback[T any](ctx context.Context, ex *Executor, v T, err error) (T, error) {
	fb, ok := ex.fallback.(func(context.Context, error) (T, error))
	if !ok {
		return v, err
	}
	if ex.discard != nil {
		ex.discard(v)
	}
	return fb(ctx, err)
}
