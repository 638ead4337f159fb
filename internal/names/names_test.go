package names

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type series struct{ name string }

func newSeries(name string) *series { return &series{name: name} }

func TestTableBoundsNames(t *testing.T) {
	tab := New(2, "_other", newSeries)
	a := tab.Get("a")
	assert.Same(t, a, tab.Get("a"), "one series per name")
	b := tab.Get("b")
	c := tab.Get("c")
	assert.Equal(t, "_other", c.name, "past max, names share the overflow")
	assert.Same(t, c, tab.Get("d"))
	all := tab.All()
	require.Len(t, all, 3)
	assert.Equal(t, []Entry[series]{{"a", a}, {"b", b}, {"_other", c}}, all)
}

func TestTableConcurrentGets(t *testing.T) {
	tab := New(50, "_other", newSeries)
	var wg sync.WaitGroup
	got := make([][]*series, 16)
	for g := range got {
		wg.Go(func() {
			for i := range 100 {
				got[g] = append(got[g], tab.Get(fmt.Sprint(i)))
			}
		})
	}
	wg.Wait()
	for g := range got {
		assert.Equal(t, got[0], got[g], "every goroutine sees the same series")
	}
	assert.Len(t, tab.All(), 51)
	assert.Zero(t, testing.AllocsPerRun(100, func() { tab.Get("7"); tab.Get("unknown") }))
}

// TestTableLastPlaceRace pins a bug: a name that took the table's last
// place between a caller's map read and its check of the full flag was
// handed the overflow series by that caller, and its own series by others.
func TestTableLastPlaceRace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	for run := range 2000 {
		tab := New(50, "_other", newSeries)
		var wg sync.WaitGroup
		got := make([][]*series, 16)
		for g := range got {
			wg.Go(func() {
				for i := range 100 {
					got[g] = append(got[g], tab.Get(fmt.Sprint(i)))
				}
			})
		}
		wg.Wait()
		for i := range 100 {
			for g := range got {
				if got[g][i] != got[0][i] {
					t.Fatalf("run %d, name %d: goroutine 0 got %q, goroutine %d got %q", run, i, got[0][i].name, g, got[g][i].name)
				}
			}
		}
	}
}

// TestTableCleansNames pins a bug of the adapters: a name that is not
// valid UTF-8 got a series whose label was cleaned in one place and not in
// another, and two invalid names that clean to one string got two series
// with one label value (a duplicate series in an exposition).
func TestTableCleansNames(t *testing.T) {
	var made []string
	tab := New(10, "_other", func(name string) *series {
		made = append(made, name)
		return newSeries(name)
	})
	a := tab.Get("api\xff")
	assert.Equal(t, "api\uFFFD", a.name, "the series is made for the clean name")
	assert.Same(t, a, tab.Get("api\xfe"), "names that clean to one string share a series")
	assert.Same(t, a, tab.Get("api\uFFFD"), "and so does the clean name itself")
	assert.Same(t, a, tab.Get("api\xff"))
	b := tab.Get("b")
	assert.Equal(t, []string{"_other", "api\uFFFD", "b"}, made, "one series per clean name")
	assert.Equal(t, []Entry[series]{{"api\uFFFD", a}, {"b", b}, {"_other", tab.Overflow()}}, tab.All(),
		"each series listed once, under its clean name")
	assert.Zero(t, testing.AllocsPerRun(100, func() { tab.Get("api\xfe") }), "a known invalid name is one map read")
}

// TestTableBoundsInvalidNames: invalid names take places too, so that a
// program making up invalid names cannot grow the table without bound.
func TestTableBoundsInvalidNames(t *testing.T) {
	tab := New(3, "_other", newSeries)
	a := tab.Get("a\xff") // two places: the name and its clean form
	assert.Same(t, a, tab.Get("a\xfe"), "a third place, for a name of a known series")
	for i := range 100 {
		assert.Same(t, tab.Overflow(), tab.Get(string([]byte{'a', byte(0x80 + i)})), "past max, invalid names share the overflow")
	}
	assert.Same(t, a, tab.Get("a\uFFFD"), "known names keep their series")
	assert.Len(t, tab.All(), 2)
	assert.Len(t, *tab.m.Load(), 3, "at most max names are kept")

	tab = New(2, "_other", newSeries)
	tab.Get("x")
	assert.Same(t, tab.Overflow(), tab.Get("y\xff"), "an invalid name with a new clean form needs two places")
	assert.Same(t, tab.Overflow(), tab.Get("z"), "and once one addition did not fit, the table is full")
}
