// Package names keeps a bounded table of series by name, shared by the
// metrics adapters of the core and of the contrib modules: at most a given
// number of names get series of their own, the rest share an overflow
// series, so that label cardinality stays bounded whatever names a program
// uses.
package names

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Table maps names to their series. Lookups of a known name read one
// atomic pointer and a map: no lock, no allocation; so do lookups of
// unknown names once the table is full. Adding a name copies the map,
// under a mutex; names are bounded, and so is the copying. A Table is
// built by New and safe for concurrent use.
type Table[S any] struct {
	max      int
	newS     func(name string) *S
	overflow string
	mu       sync.Mutex
	m        atomic.Pointer[map[string]*S]
	full     atomic.Bool // max names taken: unknown names go to other, no lock
	other    *S
}

// New returns a table of at most max names whose series newS makes; the
// overflow series is made at once, named overflow.
func New[S any](max int, overflow string, newS func(name string) *S) *Table[S] {
	t := &Table[S]{max: max, newS: newS, overflow: overflow, other: newS(overflow)}
	empty := map[string]*S{}
	t.m.Store(&empty)
	return t
}

// Get returns name's series, made on first use, or the overflow series
// once the table is full.
func (t *Table[S]) Get(name string) *S {
	if s, ok := (*t.m.Load())[name]; ok {
		return s
	}
	if t.full.Load() {
		// The name may have taken the last place between the first read
		// and this one; once the table is full its map never changes, so a
		// second read is the last word.
		if s, ok := (*t.m.Load())[name]; ok {
			return s
		}
		return t.other
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	if s, ok := old[name]; ok {
		return s
	}
	if len(old) >= t.max {
		t.full.Store(true)
		return t.other
	}
	s := t.newS(name)
	next := make(map[string]*S, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = s
	t.m.Store(&next)
	return s
}

// Entry is a name and its series.
type Entry[S any] struct {
	Name   string
	Series *S
}

// All returns every name's series, sorted by name, then the overflow.
func (t *Table[S]) All() []Entry[S] {
	m := *t.m.Load()
	out := make([]Entry[S], 0, len(m)+1)
	for k, v := range m {
		out = append(out, Entry[S]{k, v})
	}
	slices.SortFunc(out, func(a, b Entry[S]) int { return strings.Compare(a.Name, b.Name) })
	return append(out, Entry[S]{t.overflow, t.other})
}

// Overflow returns the series that names past the bound share.
func (t *Table[S]) Overflow() *S { return t.other }
