package resilient

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrGoexit is returned to the callers of a [Group] whose shared function
// called runtime.Goexit (as t.FailNow does) instead of returning.
var ErrGoexit = errors.New("resilient: shared call ended by runtime.Goexit")

// PanicError is the value a [Group] panics with, in every caller that was
// waiting, when the shared function panicked: the original value and the
// stack of the goroutine that panicked.
type PanicError struct {
	// Value is what the shared function panicked with.
	Value any
	// Stack is the panicking goroutine's stack, from runtime/debug.Stack.
	Stack []byte
}

// Error describes the panic, with its stack.
func (p *PanicError) Error() string {
	return fmt.Sprintf("resilient: shared call panicked: %v\n\n%s", p.Value, p.Stack)
}

// Unwrap returns the panic value if it is an error, so that errors.Is and
// errors.As see it; nil otherwise.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

// Group deduplicates concurrent calls: calls to [Group.Do] with the same
// key while one is in flight share its execution and its result, rather
// than each calling the upstream. The shared function is typically a whole
// resilient [Do], with its retries, breaker and budget; it then counts once
// against them, however many callers share it.
//
// Each caller waits on its own context and may leave at any time, with its
// context's error; the others are not affected. The execution runs in a
// goroutine of its own, on a context that carries the first caller's
// values but none of its cancellation or deadline, so that no single caller
// can cancel it for the others. It is cancelled (with cause [ErrAbandoned])
// when every caller waiting for it has left, or when its own time limit
// passes ([WithSharedTimeout]). An execution that was cancelled, or that
// finished, is never handed to a later caller: the next call with its key
// starts a new one. The shared function must return once its context is
// cancelled, or its goroutine outlives every caller.
//
// A panic in the shared function never crashes the process from that
// goroutine: it is recovered, and every caller that was waiting for the
// result panics in its own goroutine with a [*PanicError] that carries the
// value and the stack. No caller ever waits past its own context.
//
// The value is shared: every caller gets the same one, and must treat it as
// read-only (a map, a slice, a pointed-to struct). [WithCopy] gives each
// caller a copy of its own instead. Nothing is lost: [WithRelease] hands
// back every value that no caller gets (that of an execution every caller
// left, and with WithCopy the original), so that, say, a body is closed.
//
// Decision: Group is its own small implementation rather than a wrapper of
// golang.org/x/sync/singleflight, which cannot give these guarantees:
// singleflight's DoChan re-panics in a background goroutine, crashing the
// process; it keeps no count of waiters, so it cannot cancel an execution
// nobody waits for, nor atomically stop handing that execution to new
// callers (Forget races with them); and it is keyed by string only.
//
// The zero Group is ready to use, with no copy and no time limit. A Group
// is safe for concurrent use and must not be copied after first use.
type Group[K comparable, T any] struct {
	copy     func(T) T
	release  func(T)
	timeout  time.Duration
	name     string
	listener func(GroupEvent)

	mu sync.Mutex
	m  map[K]*flight[T] // executions that new callers may join; guarded by mu
}

// flight is one shared execution.
type flight[T any] struct {
	ctx    context.Context // the execution's; done once it must not be joined
	cancel context.CancelCauseFunc
	stop   context.CancelFunc // of the time limit, or nil
	done   chan struct{}      // closed when the fields below are set

	waiters  int  // callers still waiting; guarded by the group's mu
	joined   int  // callers that joined, in all; guarded by the group's mu, final once done
	finished bool // fn has ended; guarded by the group's mu
	// receivers is how many callers take the result: the waiters left
	// when fn ended. Each takes it after done is closed; with a copy, the
	// last one to have copied releases the original.
	receivers atomic.Int64

	val      T
	err      error
	panicked *PanicError
	goexit   bool
}

// GroupOption configures a [Group] built by [NewGroup].
type GroupOption func(*groupConfig) error

type groupConfig struct {
	copy     any // func(T) T, checked by NewGroup
	release  any // func(T), checked by NewGroup
	timeout  time.Duration
	name     string
	listener func(GroupEvent)
}

// GroupEvent tells of the end of one shared execution of a [Group].
type GroupEvent struct {
	// Name is the group's name (see [WithGroupName]).
	Name string
	// Joined is how many callers joined the execution in all, the first
	// included: Joined-1 calls to the upstream were saved.
	Joined int
	// Abandoned is true when every caller left before it ended (it was
	// cancelled with [ErrAbandoned]).
	Abandoned bool
	// Panicked is true when the shared function panicked.
	Panicked bool
	// Err is what the shared function returned.
	Err error
	// Elapsed is the execution's duration.
	Elapsed time.Duration
}

// WithGroupName names a [Group] in its events. Default "".
func WithGroupName(name string) GroupOption {
	return func(c *groupConfig) error {
		c.name = name
		return nil
	}
}

// WithGroupListener calls fn at the end of every shared execution of a
// [Group], on the execution's goroutine, after every waiting caller has been
// handed the result. With a listener the group reads the clock twice per
// execution. fn must not block for long, and must not panic. Nil is
// refused.
func WithGroupListener(fn func(GroupEvent)) GroupOption {
	return func(c *groupConfig) error {
		if fn == nil {
			return optionError("WithGroupListener", "nil listener")
		}
		c.listener = fn
		return nil
	}
}

// WithCopy gives every caller of a [Group] its own copy of the shared
// value: copy is called once per caller that gets the value (also a caller
// that was alone, and also with an error or a zero value), on that caller's
// goroutine, and the original is never handed out (see [WithRelease] to
// release it). copy must only read its argument, as the callers' copies
// are made concurrently. T must be the group's value type; nil removes the
// copy.
func WithCopy[T any](copy func(T) T) GroupOption {
	return func(c *groupConfig) error {
		if copy == nil {
			c.copy = nil // not a typed nil func, which NewGroup would take for one
			return nil
		}
		c.copy = copy
		return nil
	}
}

// WithRelease sets the release hook of a [Group]'s values that no caller
// gets: the value of an execution that every caller left before it ended
// (a response body nobody will read), and, with [WithCopy], the original
// once every caller has its copy. release runs once per such value, also
// with an error or a zero value: on the execution's goroutine when nobody
// waited, or on the goroutine of the last caller to copy. It must not
// panic. T must be the group's value type; nil removes the hook.
func WithRelease[T any](release func(T)) GroupOption {
	return func(c *groupConfig) error {
		if release == nil {
			c.release = nil // not a typed nil func, which NewGroup would take for one
			return nil
		}
		c.release = release
		return nil
	}
}

// WithSharedTimeout bounds every shared execution of a [Group] to d from
// its start, whoever still waits for it: the execution's context is then
// cancelled, and later callers start a new one. d must be > 0. Default:
// none; an execution ends when its function returns, or when every caller
// has left.
func WithSharedTimeout(d time.Duration) GroupOption {
	return func(c *groupConfig) error {
		if d <= 0 {
			return optionError("WithSharedTimeout", "d must be > 0, got %v", d)
		}
		c.timeout = d
		return nil
	}
}

// NewGroup builds a [Group] with options. An invalid option is an error
// that names it, such as a [WithCopy] function of another type than T.
func NewGroup[K comparable, T any](opts ...GroupOption) (*Group[K, T], error) {
	var c groupConfig
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewGroup", "nil option"))
		} else if err := o(&c); err != nil {
			errs = append(errs, err)
		}
	}
	g := &Group[K, T]{timeout: c.timeout, name: c.name, listener: c.listener}
	if c.copy != nil {
		f, ok := c.copy.(func(T) T)
		if !ok {
			var t T
			errs = append(errs, optionError("WithCopy", "copy is a %T, the group's values are %T", c.copy, t))
		}
		g.copy = f
	}
	if c.release != nil {
		f, ok := c.release.(func(T))
		if !ok {
			var t T
			errs = append(errs, optionError("WithRelease", "release is a %T, the group's values are %T", c.release, t))
		}
		g.release = f
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	return g, nil
}

// MustNewGroup is like [NewGroup] but panics on an invalid option. It
// serves package-level variables.
func MustNewGroup[K comparable, T any](opts ...GroupOption) *Group[K, T] {
	g, err := NewGroup[K, T](opts...)
	if err != nil {
		panic(err)
	}
	return g
}

// Do calls fn, or joins the execution of fn already in flight for key, and
// returns its result; see [Group]. It returns early, with ctx's error (and
// cause), when ctx is done first. A nil ctx or fn is an error, and so is a
// key that cannot be compared ([ErrUncomparableKey]): nothing is called.
func (g *Group[K, T]) Do(ctx context.Context, key K, fn func(context.Context) (T, error)) (T, error) {
	v, _, err := g.DoShared(ctx, key, fn)
	return v, err
}

// DoShared is [Group.Do] that also reports whether the result was shared:
// whether more than one caller joined the execution that produced it.
func (g *Group[K, T]) DoShared(ctx context.Context, key K, fn func(context.Context) (T, error)) (v T, shared bool, err error) {
	if ctx == nil {
		return v, false, ErrNilContext
	}
	if fn == nil {
		return v, false, ErrNilFunc
	}
	if err := ctx.Err(); err != nil {
		return v, false, joinCause(err, context.Cause(ctx))
	}
	if !comparableKey(key) {
		return v, false, fmt.Errorf("%w (Group.Do with a key of type %T)", ErrUncomparableKey, key)
	}
	g.mu.Lock()
	f, ok := g.m[key]
	if ok && f.ctx.Err() == nil {
		f.waiters++
		f.joined++
		g.mu.Unlock()
	} else {
		f = g.start(ctx, key)
		g.mu.Unlock()
		go g.run(key, f, fn)
	}
	return g.wait(ctx, key, f)
}

// ErrUncomparableKey is returned, without calling the function, for a key
// whose dynamic value cannot be compared (a slice, a map or a func held in
// an interface-typed key, or in a struct or array of one): Go panics on
// comparing it, and the group never lets that panic reach its lock.
var ErrUncomparableKey = errors.New("resilient: Group key is not comparable")

// comparableKey reports whether key can be compared with ==: a comparison
// of an interface holding an uncomparable value panics, and a map lookup
// with it too. Decision: checked before the group's lock is taken, at the
// cost of a deferred recover per call (a few ns of the group's 1µs), so
// that a bad key is an error for its caller and never wedges the group.
func comparableKey[K comparable](key K) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_ = key == key // the comparison is the check
	return true
}

// start registers a new execution for key. g.mu is held.
func (g *Group[K, T]) start(ctx context.Context, key K) *flight[T] {
	f := &flight[T]{done: make(chan struct{}), waiters: 1, joined: 1}
	// Decision: the execution keeps the first caller's values (trace IDs,
	// credentials) but not its cancellation: only the last caller leaving,
	// or the group's own limit, cancels it.
	f.ctx, f.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	if g.timeout > 0 {
		f.ctx, f.stop = context.WithTimeout(f.ctx, g.timeout)
	}
	// Decision: a key not equal to itself (a NaN, or a value holding one)
	// can never be found again, to be joined or deleted: it runs on its
	// own, as no other key can equal it, and stays out of the map, where
	// it would stay for ever.
	if key != key {
		return f
	}
	if g.m == nil {
		g.m = make(map[K]*flight[T])
	}
	g.m[key] = f
	return f
}

// run executes fn for f in its own goroutine, and never lets a panic out.
func (g *Group[K, T]) run(key K, f *flight[T], fn func(context.Context) (T, error)) {
	returned := false
	var start time.Time
	if g.listener != nil {
		start = time.Now()
	}
	defer func() {
		if !returned {
			// Decision (DESIGN 5): recover here, where nobody could catch
			// it, and re-panic in each waiting caller instead.
			if r := recover(); r != nil {
				f.panicked = &PanicError{Value: r, Stack: debug.Stack()}
			} else {
				f.goexit = true
			}
		}
		g.mu.Lock()
		if g.m[key] == f {
			delete(g.m, key)
		}
		f.finished = true
		receivers := f.waiters
		f.receivers.Store(int64(receivers))
		g.mu.Unlock()
		close(f.done)
		if receivers == 0 && g.release != nil && returned {
			g.release(f.val) // nobody is left to take it
		}
		abandoned := errors.Is(context.Cause(f.ctx), ErrAbandoned)
		if f.stop != nil {
			f.stop()
		}
		f.cancel(nil)
		if g.listener != nil {
			g.listener(GroupEvent{Name: g.name, Joined: f.joined, Abandoned: abandoned,
				Panicked: f.panicked != nil, Err: f.err, Elapsed: time.Since(start)})
		}
	}()
	f.val, f.err = fn(f.ctx)
	returned = true
}

// wait waits for f's result or for ctx, whichever comes first.
func (g *Group[K, T]) wait(ctx context.Context, key K, f *flight[T]) (v T, shared bool, err error) {
	select {
	case <-f.done:
	case <-ctx.Done():
		if g.leave(key, f) {
			return v, false, joinCause(ctx.Err(), context.Cause(ctx))
		}
		// fn ended first and counted us as a receiver: take the result,
		// which is worth more than the error.
		<-f.done
	}
	// f.joined is final: the execution left the map, under g.mu, before
	// done was closed.
	shared = f.joined > 1
	switch {
	case f.panicked != nil:
		panic(f.panicked)
	case f.goexit:
		return v, shared, ErrGoexit
	}
	v = f.val
	if g.copy != nil {
		v = g.copy(v)
		if f.receivers.Add(-1) == 0 && g.release != nil {
			g.release(f.val) // every receiver has its copy
		}
	}
	return v, shared, f.err
}

// leave drops a caller from f, unless fn has already ended (then false:
// the caller was counted as a receiver and must take the result). The last
// caller to leave cancels f, and takes it out of the map at once, so that
// no later caller joins it.
func (g *Group[K, T]) leave(key K, f *flight[T]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f.finished {
		return false
	}
	f.waiters--
	if f.waiters == 0 {
		if g.m[key] == f {
			delete(g.m, key)
		}
		f.cancel(ErrAbandoned)
	}
	return true
}
