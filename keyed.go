package resilient

import (
	"sync"
	"sync/atomic"
)

// Keyed keeps one value per key, built on a key's first use: a retry
// [Budget], a [RateLimiter] or a [ConcurrencyLimiter] per host, so that
// one upstream's trouble spends only its own budget and limits.
//
//	hosts := resilient.MustNewKeyed(1000, func(string) *resilient.Budget {
//		return resilient.MustNewAdaptiveBudget()
//	})
//	budget := hosts.Get(req.URL.Host)
//
// The set holds at most max values. When a new key would exceed that, it
// forgets one value it holds, preferring one not used since the last time
// the set had to choose, or since it was built (the "clock" approximation
// of least recently used, under which a key seen once goes first). A value forgotten keeps working for the callers that hold it; the
// next Get of its key builds a new one, which starts afresh (a full budget,
// an initial limit). So choose max above the number of keys in use at once.
//
// build must not fail, and must return a new value each time: build it
// from options checked beforehand (with the New… constructor), as the
// example does, or from constants with a Must… constructor.
//
// The zero value is not usable; build one with [NewKeyed]. A Keyed is safe
// for concurrent use; getting a value that exists takes no lock, reads no
// clock and allocates nothing.
type Keyed[T any] struct {
	build func(key string) T
	max   int
	m     sync.Map // string → *keyedValue[T]

	mu sync.Mutex // guards inserts, evictions and n
	n  int
}

type keyedValue[T any] struct {
	v T
	// used is set by each Get but the one that built v, and cleared when
	// the set looks for a value to forget: one still clear then was not
	// used since.
	used atomic.Bool
}

// NewKeyed builds a set of at most max values (max >= 1), each built by
// build on its key's first use. A nil build or a max below 1 is an error
// that names it.
func NewKeyed[T any](max int, build func(key string) T) (*Keyed[T], error) {
	var errs []error // both are reported
	if max < 1 {
		errs = append(errs, optionError("NewKeyed", "max must be >= 1, got %d", max))
	}
	if build == nil {
		errs = append(errs, optionError("NewKeyed", "nil build"))
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	return &Keyed[T]{build: build, max: max}, nil
}

// MustNewKeyed is like [NewKeyed] but panics on an invalid argument. It
// serves package-level variables.
func MustNewKeyed[T any](max int, build func(key string) T) *Keyed[T] {
	k, err := NewKeyed(max, build)
	if err != nil {
		panic(err)
	}
	return k
}

// Get returns key's value, building it on the key's first use (or first
// use since it was forgotten).
func (k *Keyed[T]) Get(key string) T {
	if v, ok := k.m.Load(key); ok {
		e := v.(*keyedValue[T])
		if !e.used.Load() { // written only when it changes
			e.used.Store(true)
		}
		return e.v
	}
	return k.insert(key)
}

// Len returns how many values the set holds.
func (k *Keyed[T]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

func (k *Keyed[T]) insert(key string) T {
	k.mu.Lock()
	defer k.mu.Unlock()
	if v, ok := k.m.Load(key); ok { // another caller was first
		return v.(*keyedValue[T]).v
	}
	if k.n >= k.max {
		k.evictLocked()
	}
	// Decision: build runs under the set's lock, so that a key's value is
	// built once; the values this set serves are cheap to build.
	e := &keyedValue[T]{v: k.build(key)}
	k.m.Store(key, e)
	k.n++
	return e.v
}

// evictLocked forgets one value: the first found not used since the last
// eviction, clearing the marks of those that were; or, when every one was,
// the first one found.
func (k *Keyed[T]) evictLocked() {
	var victim, first any
	k.m.Range(func(key, v any) bool {
		if first == nil {
			first = key
		}
		if !v.(*keyedValue[T]).used.Swap(false) {
			victim = key
			return false
		}
		return true
	})
	if victim == nil {
		victim = first
	}
	if _, ok := k.m.LoadAndDelete(victim); ok {
		k.n--
	}
}
