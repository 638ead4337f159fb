package redis

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an [Event] tells.
type EventKind uint8

const (
	// EventDegraded: Redis calls failed or timed out [WithDegradeAfter]
	// times in a row; the component now decides on local state alone, and
	// only its background sync calls Redis.
	EventDegraded EventKind = iota + 1
	// EventRecovered: Redis answered a call promptly again; the component
	// has resynchronised with the fleet's shared state.
	EventRecovered
)

// String returns "degraded" or "recovered".
func (k EventKind) String() string {
	switch k {
	case EventDegraded:
		return "degraded"
	case EventRecovered:
		return "recovered"
	}
	return fmt.Sprintf("eventkind(%d)", uint8(k))
}

// Event tells that a component lost or regained Redis (see
// [WithEventHook]).
type Event struct {
	// Kind is [EventDegraded] or [EventRecovered].
	Kind EventKind
	// Component is "breaker" or "budget"; Name is the breaker's or budget's
	// name.
	Component, Name string
	// Op is the operation that noticed: "sync", "probe", "probe-done",
	// "control", "retry" or "deposit".
	Op string
	// Err is the last Redis error, for EventDegraded.
	Err error
	// At is when it was noticed.
	At time.Time
}

// health tracks whether a component can reach Redis: the degraded /
// recovered state machine, with hysteresis.
//
// Decision: one slow or failed call says little on a busy machine (a
// replica starved of CPU misses a 50ms timeout with a healthy Redis), and
// a component that flipped to local state and back on each one would flap
// every few milliseconds and re-read the shared state each time. So the
// component degrades only after after calls in a row failed (an error or
// a timeout), and recovers only on a call that succeeded and was not slow
// (it took less than slow, half the timeout): an answer that barely beats
// the timeout keeps a degraded component degraded, and resets the count
// of a healthy one, since Redis did answer.
//
// The caller measures each call and hands the result to observe; health
// itself reads the clock only to stamp changes, so its logic runs the
// same under testing/synctest's fake time.
type health struct {
	component, name string
	onEvent         func(Event)
	after           int
	slow            time.Duration

	// degraded is read without the lock, by callers deciding whether to
	// call Redis at all; it changes only under mu.
	degraded atomic.Bool

	mu         sync.Mutex
	fails      int       // consecutive failed calls
	since      time.Time // when the current degradation began
	pending    []Event   // changes not yet told to the hook
	delivering bool      // a goroutine is telling the hook
}

func newHealth(component, name string, c *config) *health {
	return &health{component: component, name: name, onEvent: c.onEvent,
		after: c.degradeAfter, slow: c.timeout / 2}
}

// observe records the end of one Redis call made for op: err is its error
// (nil: Redis answered), took how long it took.
func (h *health) observe(op string, took time.Duration, err error) {
	h.mu.Lock()
	degraded := h.degraded.Load()
	switch {
	case err != nil:
		h.fails++
		if !degraded && h.fails >= h.after {
			h.since = time.Now()
			h.degraded.Store(true)
			h.queue(Event{Kind: EventDegraded, Op: op, Err: err, At: h.since})
		}
	case took < h.slow:
		h.fails = 0
		if degraded {
			h.degraded.Store(false)
			h.queue(Event{Kind: EventRecovered, Op: op, At: time.Now()})
		}
	case !degraded:
		h.fails = 0 // slow, but an answer
	}
	h.mu.Unlock()
	h.deliver()
}

func (h *health) queue(ev Event) {
	if h.onEvent != nil {
		ev.Component, ev.Name = h.component, h.name
		h.pending = append(h.pending, ev)
	}
}

// deliver tells the hook of the queued changes, outside the lock, one at a
// time and in order: whoever finds nobody delivering delivers everything
// queued, including changes queued meanwhile (by a hook that itself calls
// Redis through the component, say).
func (h *health) deliver() {
	h.mu.Lock()
	if h.delivering || len(h.pending) == 0 {
		h.mu.Unlock()
		return
	}
	h.delivering = true
	defer func() {
		// A panicking hook must not stop later deliveries.
		h.mu.Lock()
		h.delivering = false
		h.mu.Unlock()
	}()
	for len(h.pending) > 0 {
		ev := h.pending[0]
		h.pending = h.pending[1:]
		h.mu.Unlock()
		h.onEvent(ev)
		h.mu.Lock()
	}
	h.pending = nil
	h.mu.Unlock()
}

// degradedFor returns how long the component has been degraded, and 0 if
// it is not.
func (h *health) degradedFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.degraded.Load() {
		return 0
	}
	return time.Since(h.since)
}
