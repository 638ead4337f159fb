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
