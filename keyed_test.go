package resilient_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
)

// Each invalid argument of NewKeyed is an *OptionError that names the
// constructor; both are reported.
func TestNewKeyedInvalid(t *testing.T) {
	tests := []struct {
		name  string
		max   int
		build func(string) int
		want  string
	}{
		{"max zero", 0, func(string) int { return 0 }, "resilient: NewKeyed: max must be >= 1, got 0"},
		{"max negative", -1, func(string) int { return 0 }, "resilient: NewKeyed: max must be >= 1, got -1"},
		{"nil build", 1, nil, "resilient: NewKeyed: nil build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := resilient.NewKeyed(tt.max, tt.build)
			assert.Nil(t, k)
			requireOptionErrors(t, err, "NewKeyed")
			assert.EqualError(t, err, tt.want)
			assert.Panics(t, func() { resilient.MustNewKeyed(tt.max, tt.build) })
		})
	}
	t.Run("both", func(t *testing.T) {
		k, err := resilient.NewKeyed[int](0, nil)
		assert.Nil(t, k)
		requireOptionErrors(t, err, "NewKeyed", "NewKeyed")
		assert.EqualError(t, err, "resilient: NewKeyed: max must be >= 1, got 0\nresilient: NewKeyed: nil build")
	})
}

func TestKeyedBuildsOncePerKey(t *testing.T) {
	var builds atomic.Int64
	k := resilient.MustNewKeyed(10, func(key string) *resilient.Budget {
		builds.Add(1)
		return resilient.MustNewAdaptiveBudget()
	})
	var wg sync.WaitGroup
	got := make([]*resilient.Budget, 64)
	for i := range got {
		wg.Go(func() { got[i] = k.Get("a.example") })
	}
	wg.Wait()
	assert.Equal(t, int64(1), builds.Load())
	for _, b := range got {
		assert.Same(t, got[0], b)
	}
	assert.NotSame(t, got[0], k.Get("b.example"))
	assert.Equal(t, 2, k.Len())
}

// TestKeyedForgetsTheUnused: at its bound, the set forgets a value not used
// since it was built, before those used since.
func TestKeyedForgetsTheUnused(t *testing.T) {
	built := map[string]int{}
	k := resilient.MustNewKeyed(3, func(key string) string {
		built[key]++
		return key
	})
	k.Get("a")
	k.Get("b")
	k.Get("c")
	k.Get("a") // used again
	k.Get("b")
	k.Get("d") // c goes
	assert.Equal(t, 3, k.Len())
	k.Get("a")
	k.Get("b")
	assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, built)
	k.Get("c")
	assert.Equal(t, 2, built["c"], "c was forgotten, and is built anew")
	assert.Equal(t, 3, k.Len())
}

// TestKeyedHammer: many goroutines over more keys than the bound: the set
// never holds more than its bound, and every Get gets its key's value.
func TestKeyedHammer(t *testing.T) {
	const max = 8
	k := resilient.MustNewKeyed(max, func(key string) string { return key })
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprintf("host-%d", (g*7+i)%20)
				require.Equal(t, key, k.Get(key))
				assert.LessOrEqual(t, k.Len(), max)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, max, k.Len())
}

func TestKeyedGetAllocs(t *testing.T) {
	k := resilient.MustNewKeyed(10, func(string) *resilient.ConcurrencyLimiter {
		return resilient.MustNewConcurrencyLimiter()
	})
	k.Get("api.example.com")
	key := "api.example.com"
	allocs := testing.AllocsPerRun(1000, func() { _ = k.Get(key) })
	assert.Zero(t, allocs)
}

// A hit takes no lock: Get of a key the set holds returns while another
// key's value is being built, under the set's lock.
func TestKeyedHitTakesNoLock(t *testing.T) {
	building, unblock := make(chan struct{}), make(chan struct{})
	k := resilient.MustNewKeyed(10, func(key string) *string {
		if key == "slow" {
			close(building)
			<-unblock
		}
		return &key
	})
	known := k.Get("known")
	slow := make(chan *string, 1)
	go func() { slow <- k.Get("slow") }()
	select {
	case <-building: // the set's lock is held until unblock
	case <-time.After(10 * time.Second):
		t.Fatal("the slow key was not built")
	}
	got := make(chan *string, 1)
	go func() { got <- k.Get("known") }()
	select {
	case v := <-got:
		assert.Same(t, known, v)
	case <-time.After(10 * time.Second):
		t.Error("Get of a known key waited for the set's lock")
	}
	close(unblock)
	select {
	case v := <-slow:
		assert.Equal(t, "slow", *v)
	case <-time.After(10 * time.Second):
		t.Fatal("Get of the slow key did not return")
	}
}
