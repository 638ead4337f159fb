package benchmarks

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests prove that every benchmark body does what its name says: the
// same number of attempts for every library, the value handed back, the
// connections and bodies of the HTTP scenarios accounted for. They run
// the very ops the benchmarks time.

// counted wraps w to count its calls.
func counted(w work) (work, *atomic.Int64) {
	var n atomic.Int64
	return func(ctx context.Context) (int, error) {
		n.Add(1)
		return w(ctx)
	}, &n
}

func TestRetryHappyMakesOneAttempt(t *testing.T) {
	for _, l := range retryHappyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call := l.build(w)
			for i := range 5 {
				v, err := call(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, v)
				assert.Equal(t, int64(i+1), n.Load(), "attempts after %d calls", i+1)
			}
		})
	}
}

func TestRetryHappyParallelSharesOnePolicy(t *testing.T) {
	for _, l := range retryHappyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(succeed)
			call := l.build(w)
			const goroutines, calls = 8, 50
			done := make(chan struct{})
			for range goroutines {
				go func() {
					defer func() { done <- struct{}{} }()
					for range calls {
						v, err := call(context.Background())
						assert.NoError(t, err)
						assert.Equal(t, want, v)
					}
				}()
			}
			for range goroutines {
				<-done
			}
			assert.Equal(t, int64(goroutines*calls), n.Load())
		})
	}
}

func TestRetryFlakyMakesThreeAttempts(t *testing.T) {
	for _, l := range retryFlakyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(flaky())
			call := l.build(w)
			for i := range 5 {
				v, err := call(context.Background())
				require.NoError(t, err, "call %d", i+1)
				assert.Equal(t, want, v)
				assert.Equal(t, int64(3*(i+1)), n.Load(), "attempts after %d calls", i+1)
			}
		})
	}
}

// TestRetryFlakyGivesUpAfterThreeAttempts pins the attempt limit: with work
// that always fails, every library stops after exactly three calls.
func TestRetryFlakyGivesUpAfterThreeAttempts(t *testing.T) {
	for _, l := range retryFlakyLibs {
		t.Run(l.name, func(t *testing.T) {
			w, n := counted(func(context.Context) (int, error) { return 0, errTransient })
			call := l.build(w)
			_, err := call(context.Background())
			require.ErrorIs(t, err, errTransient)
			assert.Equal(t, int64(3), n.Load())
		})
	}
}
