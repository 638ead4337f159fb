// Package names keeps a bounded table of series by name, for the metrics
// adapters of the core (TextMetrics) and of the contrib modules: at most a
// given number of names get series of their own, the rest share an
// overflow series, so that label cardinality stays bounded whatever names
// a program uses.
//
// The contrib modules do not import this package: each keeps a generated
// copy in its own internal/names (go run ./tools/release shared), so that
// no module depends on another's internals across versions. Edit this
// file, then regenerate the copies; CI fails while a copy differs.
package names

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Table maps names to their series.
//
// Names are cleaned before they get a series: a name that is not valid
// UTF-8 (which no metric label value may be) stands for its cleaned form,
// each invalid byte replaced by U+FFFD. So a series is only ever made for,
// and listed under, a clean name, and two names that clean to one string
// share one series: an invalid name never splits a series, and never
// gives two series one label value.
//
// Lookups of a known name read one atomic pointer and a map: no lock, no
// allocation; so do lookups of unknown names once the table is full.
// Adding a name copies the map, under a mutex; the map holds at most max
// names (an invalid name takes a place of its own besides its cleaned
// form's), so the copying is bounded too. A Table is built by New and is
// safe for concurrent use.
type Table[S any] struct {
	max      int
	newS     func(name string) *S
	overflow string
	mu       sync.Mutex
	m        atomic.Pointer[map[string]*S] // every name seen, as given and cleaned
	full     atomic.Bool                   // no place left: unknown names go to other, no lock
	other    *S
}

// New returns a table of at most max names whose series newS makes, given
// the clean name; the overflow series is made at once, named overflow
// (which must be valid UTF-8).
func New[S any](max int, overflow string, newS func(name string) *S) *Table[S] {
	t := &Table[S]{max: max, newS: newS, overflow: overflow, other: newS(overflow)}
	empty := map[string]*S{}
	t.m.Store(&empty)
	return t
}

// Clean returns name as a label value: valid UTF-8, each invalid byte
// replaced by U+FFFD. A valid name is returned as it is, without
// allocating.
func Clean(name string) string {
	return strings.ToValidUTF8(name, "\uFFFD")
}

// Get returns name's series (its cleaned form's), made on first use, or
// the overflow series once the table is full.
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
	clean := name
	if !utf8.ValidString(name) {
		clean = Clean(name)
	}
	s, known := old[clean]
	places := 1 // name
	if !known && clean != name {
		places = 2 // name, and its cleaned form
	}
	if len(old)+places > t.max {
		// Decision: the table is full once an addition does not fit, even
		// if a smaller one would: its map never changes again, which is
		// what lets Get read it without the lock.
		t.full.Store(true)
		return t.other
	}
	if !known {
		s = t.newS(clean)
	}
	next := make(map[string]*S, len(old)+places)
	for k, v := range old {
		next[k] = v
	}
	next[name] = s
	next[clean] = s
	t.m.Store(&next)
	return s
}

// Entry is a name and its series.
type Entry[S any] struct {
	Name   string
	Series *S
}

// All returns every series once, under its clean name, sorted by name,
// then the overflow.
func (t *Table[S]) All() []Entry[S] {
	m := *t.m.Load()
	out := make([]Entry[S], 0, len(m)+1)
	for k, v := range m {
		if utf8.ValidString(k) { // the invalid ones are other names of a clean one
			out = append(out, Entry[S]{k, v})
		}
	}
	slices.SortFunc(out, func(a, b Entry[S]) int { return strings.Compare(a.Name, b.Name) })
	return append(out, Entry[S]{t.overflow, t.other})
}

// Overflow returns the series that names past the bound share.
func (t *Table[S]) Overflow() *S { return t.other }
