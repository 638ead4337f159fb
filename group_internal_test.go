package resilient

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

// TestGroupNaNKeysLeaveNothing: regression: a key not equal to itself (a
// NaN, or a struct holding one) was put in the group's map and never
// deleted, since no lookup can match it; a long-running program whose keys
// came from computed floats grew its map for ever. Such a call runs on its
// own and leaves nothing behind.
func TestGroupNaNKeysLeaveNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	type key struct {
		id string
		f  float64
	}
	g := &Group[key, int]{}
	nan := math.NaN()
	var calls atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			v, shared, err := g.DoShared(context.Background(), key{"a", nan}, func(context.Context) (int, error) {
				return int(calls.Add(1)), nil
			})
			assert.NoError(t, err)
			assert.False(t, shared, "no key equals a NaN key: nothing to share")
			assert.Positive(t, v)
		})
	}
	wg.Wait()
	assert.EqualValues(t, 64, calls.Load(), "each call ran on its own")
	g.mu.Lock()
	defer g.mu.Unlock()
	assert.Empty(t, g.m, "nothing left in the map")
}
