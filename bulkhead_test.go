package resilient_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
)

// Each invalid argument or option of NewBulkhead is an *OptionError that
// names it, with the exact message; several are all reported, the limit's
// with the options'.
func TestBulkheadInvalid(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		opt    resilient.BulkheadOption
		option string
		want   string // after "resilient: option: "
	}{
		{"limit zero", 0, nil, "NewBulkhead", "limit must be >= 1, got 0"},
		{"limit negative", -2, nil, "NewBulkhead", "limit must be >= 1, got -2"},
		{"wait negative", 1, resilient.WithSlotWait(-time.Millisecond), "WithSlotWait", "d must be >= 0, got -1ms"},
		{"nil option", 1, nil, "NewBulkhead", "nil option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []resilient.BulkheadOption{tt.opt}
			if tt.opt == nil && tt.name != "nil option" {
				opts = nil
			}
			b, err := resilient.NewBulkhead(tt.limit, opts...)
			assert.Nil(t, b)
			requireOptionErrors(t, err, tt.option)
			assert.EqualError(t, err, "resilient: "+tt.option+": "+tt.want)
			assert.Panics(t, func() { resilient.MustNewBulkhead(tt.limit, opts...) })
		})
	}
	t.Run("several", func(t *testing.T) {
		b, err := resilient.NewBulkhead(0, resilient.WithSlotWait(-1), nil)
		assert.Nil(t, b)
		requireOptionErrors(t, err, "NewBulkhead", "WithSlotWait", "NewBulkhead")
	})
	_, err := resilient.New(resilient.WithBulkhead(nil))
	requireOptionErrors(t, err, "WithBulkhead")
	assert.EqualError(t, err, "resilient: WithBulkhead: nil bulkhead")
}

// TestBulkheadFullFailsFast: a full bulkhead without a wait refuses at once,
// without calling fn, with a typed error.
func TestBulkheadFullFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBulkhead(2)
		ex := resilient.MustNew(resilient.WithBulkhead(b))
		require.NoError(t, b.Acquire(t.Context()))
		require.NoError(t, b.Acquire(t.Context()))
		require.Equal(t, 2, b.InFlight())
		start := time.Now()
		var calls int
		_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
			calls++
			return 1, nil
		}, ex)
		assert.Zero(t, calls)
		assert.Zero(t, time.Since(start))
		require.ErrorIs(t, err, resilient.ErrBulkheadFull)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		b.Release()
		v, err := resilient.Do(t.Context(), protectSucceeding, ex)
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		assert.Equal(t, 1, b.InFlight(), "the call gave its slot back")
		assert.Equal(t, 2, b.Limit())
	})
}

// TestBulkheadWait: a full bulkhead with a wait admits an attempt whose slot
// comes free in time, and refuses it after exactly the wait otherwise.
func TestBulkheadWait(t *testing.T) {
	tests := []struct {
		name    string
		freeAt  time.Duration // when the held slot is released
		wait    time.Duration
		wantErr error
		waited  time.Duration
	}{
		{"freed in time", 30 * time.Millisecond, 50 * time.Millisecond, nil, 30 * time.Millisecond},
		{"not freed in time", 80 * time.Millisecond, 50 * time.Millisecond, resilient.ErrBulkheadFull, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			synctest.Test(t, func(t *testing.T) {
				b := resilient.MustNewBulkhead(1, resilient.WithSlotWait(tt.wait))
				require.NoError(t, b.Acquire(t.Context()))
				go func() {
					time.Sleep(tt.freeAt)
					b.Release()
				}()
				start := time.Now()
				err := b.Acquire(t.Context())
				assert.Equal(t, tt.waited, time.Since(start))
				if tt.wantErr != nil {
					assert.ErrorIs(t, err, tt.wantErr)
				} else {
					require.NoError(t, err)
					b.Release()
				}
				synctest.Wait()
				time.Sleep(tt.freeAt)
				assert.Zero(t, b.InFlight())
			})
		})
	}
}

// TestBulkheadWaitEndsWithContext: a wait for a slot ends when the caller's
// context does, with its error.
func TestBulkheadWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBulkhead(1, resilient.WithSlotWait(time.Hour))
		require.NoError(t, b.Acquire(t.Context()))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		err := b.Acquire(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))

		cancel()
		assert.ErrorIs(t, b.Acquire(ctx), context.DeadlineExceeded, "a done context does not queue")
		b.Release()
		assert.Zero(t, b.InFlight())
	})
}

// TestBulkheadFIFO: waiters are served in order of arrival.
func TestBulkheadFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBulkhead(1, resilient.WithSlotWait(time.Hour))
		require.NoError(t, b.Acquire(t.Context()))
		var mu sync.Mutex
		var order []int
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				if assert.NoError(t, b.Acquire(t.Context())) {
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					time.Sleep(time.Millisecond)
					b.Release()
				}
			})
			synctest.Wait() // i is queued before i+1 arrives
		}
		b.Release()
		wg.Wait()
		assert.Equal(t, []int{0, 1, 2, 3, 4}, order)
	})
}

// TestBulkheadSlotPerAttempt: no slot is held through a backoff wait, and a
// retry that finds the bulkhead full ends the call with the last error.
func TestBulkheadSlotPerAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := resilient.MustNewBulkhead(1)
		ex := resilient.MustNew(resilient.WithBulkhead(b), resilient.WithAttempts(3),
			resilient.WithBackoff(resilient.Constant(time.Second)), resilient.WithJitter(resilient.NoJitter))
		done := make(chan error)
		go func() {
			_, err := resilient.Do(t.Context(), protectFailing, ex)
			done <- err
		}()
		synctest.Wait() // first attempt failed; the call is in its backoff wait
		assert.Zero(t, b.InFlight(), "no slot held while waiting")
		require.NoError(t, b.Acquire(t.Context()), "a fresh caller gets the slot")
		err := <-done
		require.ErrorIs(t, err, resilient.ErrBulkheadFull)
		assert.ErrorIs(t, err, errProtectUpstream, "the last attempt's error is kept")
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 1, re.Attempts)
		b.Release()
	})
}

// TestBulkheadHammer: under many goroutines and executors sharing one
// bulkhead, never more than the limit run at once, every waiter with a long
// enough wait is served (no wake-up is lost), and every slot comes back.
func TestBulkheadHammer(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name  string
		wait  time.Duration
		limit int
	}{
		{"fail fast", 0, 4},
		{"waiting", time.Minute, 3},
		{"one slot", time.Minute, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := resilient.MustNewBulkhead(tt.limit, resilient.WithSlotWait(tt.wait))
			exs := []*resilient.Executor{
				resilient.MustNew(resilient.WithBulkhead(b), resilient.WithAttempts(1)),
				resilient.MustNew(resilient.WithBulkhead(b), resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0))),
			}
			var running, peak, ok, full atomic.Int64
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 200 {
						ctx := context.Background()
						var cancel context.CancelFunc = func() {}
						if i%17 == 0 { // some waiters give up early
							ctx, cancel = context.WithCancel(ctx)
							cancel()
						}
						_, err := resilient.Do(ctx, func(context.Context) (int, error) {
							n := running.Add(1)
							for {
								p := peak.Load()
								if n <= p || peak.CompareAndSwap(p, n) {
									break
								}
							}
							for range 3 {
								runtime.Gosched() // let others contend for the slot
							}
							running.Add(-1)
							return 1, nil
						}, exs[(g+i)%2])
						cancel()
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, resilient.ErrBulkheadFull):
							full.Add(1)
						case errors.Is(err, context.Canceled):
						default:
							t.Errorf("unexpected error: %v", err)
						}
					}
				})
			}
			wg.Wait()
			assert.LessOrEqual(t, peak.Load(), int64(tt.limit))
			assert.Zero(t, b.InFlight())
			assert.Positive(t, ok.Load())
			if tt.wait == 0 {
				assert.Positive(t, full.Load(), "the hammer never filled the bulkhead")
			} else {
				assert.Zero(t, full.Load(), "a waiter was not woken")
			}
			assert.Equal(t, int64(tt.limit), peak.Load(), "the hammer never filled the bulkhead")
			t.Logf("ok %d, full %d, peak %d", ok.Load(), full.Load(), peak.Load())
		})
	}
}

func TestBulkheadSuccessPathAllocs(t *testing.T) {
	b := resilient.MustNewBulkhead(8)
	ex := resilient.MustNew(resilient.WithBulkhead(b))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = resilient.Do(ctx, protectSucceeding, ex)
	})
	assert.Zero(t, allocs)
	assert.Zero(t, b.InFlight())
}
