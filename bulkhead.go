package resilient

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBulkheadFull is the error a [Bulkhead] refuses an attempt with when
// every slot stays taken for its whole wait. The call it ends returns an
// [*Error] with [ReasonRejected] that matches it and [ErrRejected]; the
// refusal itself allocates nothing.
var ErrBulkheadFull = errors.New("resilient: bulkhead full")

// Bulkhead limits how many attempts run at once against an upstream, so
// that a slow upstream ties up a bounded number of goroutines, connections
// and memory instead of all of them. An attempt takes a slot before it
// runs and gives it back when it ends; when every slot is taken it waits
// for one up to the bulkhead's wait ([WithSlotWait]; default 0: it is
// refused at once), then is refused with [ErrBulkheadFull]. A wait also
// ends when the call's context is done, with the context's error.
//
// Decision: a slot is held per attempt, not per call. Given to an executor
// with [WithBulkhead], the bulkhead is asked before each attempt and the
// slot is released when the attempt ends, so no slot is held through a
// backoff wait: a call that is waiting to retry does not keep a fresh call
// out. The price is that a retry may find the bulkhead full, which ends its
// call with [ErrBulkheadFull] and the previous attempt's error.
//
// A Bulkhead is safe for concurrent use and may be shared by several
// executors (a limit for a whole upstream) or given to one. Taking a free
// slot is one compare-and-swap: no lock, no clock read, no allocation.
// Waiting callers are served in order of arrival, but a caller that comes
// when a slot is free takes it without queueing.
type Bulkhead struct {
	// used is the number of slots taken: 0 <= used <= limit.
	used  atomic.Int64
	limit int64
	wait  time.Duration

	// waiting counts callers inside the slow path. Invariant: a caller
	// increments it before its last look at used, and a release decrements
	// used before it looks at waiting, so a freed slot is never missed.
	waiting atomic.Int64
	mu      sync.Mutex
	queue   []chan struct{} // waiters to wake, oldest first; guarded by mu
}

// BulkheadOption configures a [Bulkhead] built by [NewBulkhead].
type BulkheadOption func(*Bulkhead) error

// WithSlotWait sets how long an attempt may wait for a free slot before it
// is refused with [ErrBulkheadFull]. d must be >= 0; 0, the default,
// refuses at once when the bulkhead is full.
func WithSlotWait(d time.Duration) BulkheadOption {
	return func(b *Bulkhead) error {
		if d < 0 {
			return optionError("WithSlotWait", "d must be >= 0, got %v", d)
		}
		b.wait = d
		return nil
	}
}

// NewBulkhead builds a bulkhead that lets at most limit attempts run at
// once; limit must be >= 1. Without options a full bulkhead refuses at
// once. An invalid argument or option is an error that names it.
func NewBulkhead(limit int, opts ...BulkheadOption) (*Bulkhead, error) {
	var errs []error // every invalid argument and option is reported, not only the first
	if limit < 1 {
		errs = append(errs, optionError("NewBulkhead", "limit must be >= 1, got %d", limit))
	}
	b := &Bulkhead{limit: int64(limit)}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewBulkhead", "nil option"))
		} else if err := o(b); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	return b, nil
}

// MustNewBulkhead is like [NewBulkhead] but panics on an invalid argument
// or option. It serves package-level variables.
func MustNewBulkhead(limit int, opts ...BulkheadOption) *Bulkhead {
	b, err := NewBulkhead(limit, opts...)
	if err != nil {
		panic(err)
	}
	return b
}

// WithBulkhead limits an executor's concurrent attempts with b (see
// [Bulkhead]); one bulkhead may be shared by any number of executors. It
// adds b as a [Policy], after those already added: put it after a breaker
// so that rejected calls take no slot. A nil bulkhead is refused.
func WithBulkhead(b *Bulkhead) Option {
	return optionFunc(func(e *Executor) error {
		if b == nil {
			return optionError("WithBulkhead", "nil bulkhead")
		}
		return WithPolicy(b).apply(e)
	})
}

// Limit returns the number of slots.
func (b *Bulkhead) Limit() int { return int(b.limit) }

// InFlight returns the number of slots taken now.
func (b *Bulkhead) InFlight() int { return int(b.used.Load()) }

// Admit takes a slot for the attempt, as [Bulkhead.Acquire] does.
//
// Decision: per attempt, released in Done, so that no slot is held through
// a backoff wait (see Bulkhead).
func (b *Bulkhead) Admit(ctx context.Context, _ int) (Permit, error) {
	return Permit{}, b.Acquire(ctx)
}

// Done gives the attempt's slot back.
func (b *Bulkhead) Done(Permit, Report) { b.Release() }

// Acquire takes a slot, waiting for one up to the bulkhead's wait. It
// returns nil when it took one, which the caller must give back with
// [Bulkhead.Release]; [ErrBulkheadFull] when none came free in time; or
// ctx's error when ctx ended the wait. It is for code that guards work
// outside an executor.
func (b *Bulkhead) Acquire(ctx context.Context) error {
	if b.tryAcquire() {
		return nil
	}
	if b.wait == 0 {
		return ErrBulkheadFull
	}
	return b.acquireSlow(ctx)
}

// Release gives back a slot taken by [Bulkhead.Acquire]. Releasing a slot
// that was not taken breaks the limit.
func (b *Bulkhead) Release() {
	b.used.Add(-1)
	if b.waiting.Load() > 0 {
		b.wakeOne()
	}
}

func (b *Bulkhead) tryAcquire() bool {
	for {
		n := b.used.Load()
		if n >= b.limit {
			return false
		}
		if b.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (b *Bulkhead) wakeOne() {
	b.mu.Lock()
	if len(b.queue) > 0 {
		w := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		w <- struct{}{} // buffered, and each waiter is woken at most once per enqueue
	}
	b.mu.Unlock()
}

// acquireSlow queues for a slot until one is free, the wait is over, or ctx
// is done.
func (b *Bulkhead) acquireSlow(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	w := make(chan struct{}, 1)
	for woken := false; ; woken = true {
		b.mu.Lock()
		if b.tryAcquire() {
			b.mu.Unlock()
			return nil
		}
		if woken { // lost the slot to a caller that did not queue: keep our place
			b.queue = append(b.queue, nil)
			copy(b.queue[1:], b.queue)
			b.queue[0] = w
		} else {
			b.queue = append(b.queue, w)
		}
		b.mu.Unlock()

		var err error
		select {
		case <-w:
			continue // a slot came free: try again (another caller may have won it)
		case <-timer.C:
			err = ErrBulkheadFull
		case <-ctx.Done():
			err = ctx.Err()
		}
		if !b.dequeue(w) {
			// A release woke us as we gave up: pass the wake on, or the
			// waiters behind us would miss the slot it freed.
			<-w
			b.wakeOne()
		}
		return err
	}
}

// dequeue removes w from the queue and reports whether it was still there.
func (b *Bulkhead) dequeue(w chan struct{}) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, q := range b.queue {
		if q == w {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return true
		}
	}
	return false
}
