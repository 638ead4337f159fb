package resilient

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SnapshotVersion is the version of the [Snapshot] format written by this
// package.
const SnapshotVersion = 1

// Snapshot is a [Breaker]'s state, as saved to a [Store] so that it
// survives a restart. It is small and meant to be stored as JSON:
//
//	{"v":1,"state":"open","since":"2026-01-02T15:04:05Z",
//	 "open_until":"2026-01-02T15:04:35Z","rounds":2,"cause":"connection refused"}
//
// Times are absolute (RFC 3339), so a snapshot restored after a restart
// keeps the breaker open only for what is left of its open duration. The
// window's counts are not part of it: a restored closed breaker starts
// with an empty window.
type Snapshot struct {
	// Version is [SnapshotVersion].
	Version int `json:"v"`
	// State is the breaker's state, by name ("closed", "open",
	// "half-open", "forced-open", "disabled").
	State State `json:"state"`
	// Since is when the state began.
	Since time.Time `json:"since"`
	// OpenUntil is when an open breaker lets a probe through; zero for
	// other states.
	OpenUntil time.Time `json:"open_until,omitzero"`
	// Rounds counts the failed probe rounds since the breaker last closed
	// (the step of [WithOpenBackoff]).
	Rounds int `json:"rounds,omitempty"`
	// Cause is the message of the error that opened the breaker, if any.
	Cause string `json:"cause,omitempty"`
}

// Store keeps breakers' snapshots by name, so that their state survives a
// restart (see [WithStore]). Implementations must be safe for concurrent
// use.
//
// A breaker loads its snapshot once, when it is built, and saves one after
// each change of state, in order, on the goroutine that made the change
// and outside the breaker's locks: Save should be quick (a remote store
// saves in the background). The breaker does not report Save's errors; a
// store that cares logs or meters them itself.
type Store interface {
	// Load returns the snapshot saved under name, and whether there was
	// one. An error means the store failed, not that nothing was saved.
	Load(ctx context.Context, name string) (Snapshot, bool, error)
	// Save replaces the snapshot saved under name.
	Save(ctx context.Context, name string, s Snapshot) error
}

// WithStore makes the breaker load its state from s when it is built and
// save it to s after each change of state, under its name, which must be
// set (see [WithBreakerName]; breakers of a [Breakers] set are named by
// key). nil is refused. Default: no store.
func WithStore(s Store) BreakerOption {
	return breakerOptionFunc(func(c *breakerConfig) error {
		if s == nil {
			return optionError("WithStore", "nil store")
		}
		c.store = s
		return nil
	})
}

// MemoryStore is a [Store] in memory, for tests and for breakers rebuilt
// within one process. The zero MemoryStore is empty and ready to use; it is
// safe for concurrent use.
type MemoryStore struct {
	mu    sync.Mutex
	snaps map[string]Snapshot
}

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Load implements [Store].
func (m *MemoryStore) Load(_ context.Context, name string) (Snapshot, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.snaps[name]
	return s, ok, nil
}

// Save implements [Store].
func (m *MemoryStore) Save(_ context.Context, name string, s Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snaps == nil {
		m.snaps = make(map[string]Snapshot)
	}
	m.snaps[name] = s
	return nil
}

// Snapshot returns the breaker's state now, as a [Store] saves it.
func (b *Breaker) Snapshot() Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.snapshotLocked()
}

func (b *Breaker) snapshotLocked() Snapshot {
	s := Snapshot{
		Version:   SnapshotVersion,
		State:     wordState(b.word.Load()),
		Since:     b.since,
		OpenUntil: b.until,
		Rounds:    b.rounds,
	}
	if b.cause != nil {
		s.Cause = b.cause.Error()
	}
	return s
}

// Restore puts the breaker in the state s describes, as a change of state
// (listeners are told, a store is saved to): an open breaker stays open
// until s.OpenUntil, and turns half-open at once if that has passed; a
// half-open one starts a new probe round; a closed one starts with a fresh
// window. It serves stores shared by several processes, which apply a
// state decided elsewhere. A snapshot of an unknown version or state is an
// error, and changes nothing.
func (b *Breaker) Restore(s Snapshot) error {
	b.mu.Lock()
	err := b.restoreLocked(s, true)
	b.mu.Unlock()
	b.dispatch()
	return err
}

// restoredError is a cause restored from a snapshot: only its message.
type restoredError string

func (e restoredError) Error() string { return string(e) }

func (b *Breaker) restoreLocked(s Snapshot, event bool) error {
	if s.Version != SnapshotVersion {
		return fmt.Errorf("resilient: breaker %q: snapshot version %d, want %d", b.cfg.name, s.Version, SnapshotVersion)
	}
	if s.State >= numStates {
		return fmt.Errorf("resilient: breaker %q: snapshot of unknown state %d", b.cfg.name, uint8(s.State))
	}
	var cause error
	if s.Cause != "" {
		cause = restoredError(s.Cause)
	}
	now := time.Now()
	b.rounds = max(s.Rounds, 0)
	to, open := s.State, time.Duration(0)
	if to == StateOpen {
		open = s.OpenUntil.Sub(now)
		if open <= 0 {
			b.cause = cause // kept for the half-open refusal
			to = StateHalfOpen
		}
	}
	n := len(b.pending)
	b.enterLocked(to, cause, now, open, event)
	if to == StateHalfOpen && s.State == StateOpen {
		b.cause = cause
		b.refusal.Store(b.refusalLocked(StateHalfOpen))
	}
	if !s.Since.IsZero() && s.State == to {
		b.since = s.Since
		if event {
			b.pending[len(b.pending)-1].snap.Since = s.Since
		}
	}
	if !event {
		// When building, the initial event tells of the restored state.
		b.pending = b.pending[:n]
	}
	return nil
}
