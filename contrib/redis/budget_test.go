package redis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestBudget(t *testing.T, rdb goredis.UniversalClient, name string, opts ...Option) *Budget {
	t.Helper()
	b, err := NewBudget(rdb, name, append([]Option{WithTimeout(time.Second), WithSyncInterval(20 * time.Millisecond)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestTwoReplicasDrainOneBudget(t *testing.T) {
	srv := startRedis(t, false)
	const burst = 5
	opts := []Option{WithRetryBurst(burst), WithRetryRatio(0.1), WithMinRetryRate(0)}
	rs := []*Budget{newTestBudget(t, srv.Client(), "users", opts...), newTestBudget(t, srv.Client(), "users", opts...)}

	// Many goroutines on both replicas ask for retries: the fleet gets the
	// burst, in total.
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for _, r := range rs {
		for range 8 {
			wg.Go(func() {
				for range 5 {
					switch err := r.AllowRetry(2); {
					case err == nil:
						allowed.Add(1)
					default:
						assert.ErrorIs(t, err, resilient.ErrBudgetExhausted)
						refused.Add(1)
					}
				}
			})
		}
	}
	waitGroup(t, &wg, 30*time.Second, "the replicas' retries")
	assert.Equal(t, int64(burst), allowed.Load())
	assert.Equal(t, int64(2*8*5-burst), refused.Load())
	for _, r := range rs {
		assert.False(t, r.Degraded())
	}

	// Requests on both replicas refill it, at the ratio, fleet-wide.
	for i := range 30 {
		rs[i%2].Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	}
	rs[0].Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Ignore}) // no deposit
	rs[1].Done(resilient.Permit{}, resilient.Report{Attempt: 2, Outcome: resilient.Fail})   // a retry: no deposit
	eventually(t, 2*time.Second, func() bool {
		got, err := rs[0].Available(context.Background())
		return err == nil && got > 2.99 && got < 3.01
	}, "30 requests at 0.1 did not deposit 3 retries")
	require.NoError(t, rs[1].AllowRetry(2))
	got, err := rs[0].Available(context.Background())
	require.NoError(t, err)
	assert.InDelta(t, 2.0, got, 0.01)
}

func TestSharedBudgetThroughExecutors(t *testing.T) {
	srv := startRedis(t, false)
	const burst = 4
	opts := []Option{WithRetryBurst(burst), WithMinRetryRate(0)}
	var retries atomic.Int64
	hooks := resilient.WithHooks(resilient.Hooks{OnRetry: func(resilient.RetryEvent) { retries.Add(1) }})
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for range 2 {
		b := newTestBudget(t, srv.Client(), "orders", opts...)
		// More attempts than the fleet has retries (4, and 0.8 deposited):
		// a call that got every retry still ends refused, not exhausted.
		ex := resilient.MustNew(resilient.WithAttempts(burst+2), resilient.WithBackoff(resilient.Constant(time.Millisecond)),
			resilient.WithPolicy(b), hooks)
		for range 4 {
			wg.Go(func() {
				err := ex.Run(context.Background(), func(context.Context) error { return errUpstream })
				if resilient.RejectedBy(err) == resilient.PolicyBudget {
					rejected.Add(1)
				}
			})
		}
	}
	waitGroup(t, &wg, 30*time.Second, "the calls")
	assert.Equal(t, int64(burst), retries.Load(), "retries across both replicas")
	assert.Equal(t, int64(8), rejected.Load(), "every call ends refused by the budget")
}

func TestBudgetFloorIsFleetWide(t *testing.T) {
	srv := startRedis(t, false)
	opts := []Option{WithRetryBurst(1), WithMinRetryRate(2)}
	a := newTestBudget(t, srv.Client(), "floor", opts...)
	b := newTestBudget(t, srv.Client(), "floor", opts...)
	allowed := 0
	for i := range 10 {
		if []*Budget{a, b}[i%2].AllowRetry(2) == nil {
			allowed++
		}
	}
	// One from the bucket, two from the floor (it holds a second's worth);
	// a refill during the test may add one.
	assert.GreaterOrEqual(t, allowed, 3)
	assert.LessOrEqual(t, allowed, 4)
}

// With a slow hook too: see TestRedisStoppedThenRestarted.
func TestBudgetFallsBackWhileRedisIsAway(t *testing.T) {
	for _, slow := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run("hook takes "+slow.String(), func(t *testing.T) { testBudgetFallsBackWhileRedisIsAway(t, slow) })
	}
}

func testBudgetFallsBackWhileRedisIsAway(t *testing.T, slow time.Duration) {
	srv := startRedis(t, false)
	log := eventLog{slow: slow}
	b := newTestBudget(t, srv.Client(), "geo", WithRetryBurst(2), WithMinRetryRate(0), log.hook())
	require.NoError(t, b.AllowRetry(2))
	srv.Stop()

	// The local budget decides: it holds its own burst of 2.
	start := time.Now()
	assert.NoError(t, b.AllowRetry(2))
	assert.NoError(t, b.AllowRetry(2))
	assert.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, b.Degraded())
	b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})

	srv.Start()
	events := log.waitFor(t, 2, 5*time.Second)
	assert.False(t, b.Degraded())
	require.Len(t, events, 2)
	assert.Equal(t, EventDegraded, events[0].Kind)
	assert.Equal(t, "budget", events[0].Component)
	assert.Equal(t, EventRecovered, events[1].Kind)
	// Redis came back empty: the shared budget starts full, with the
	// deposit made while away.
	got, err := b.Available(context.Background())
	require.NoError(t, err)
	assert.InDelta(t, 2.0, got, 0.01)
}

func TestBudgetOnAHungRedisIsBoundedByTheTimeout(t *testing.T) {
	rdb := goredis.NewClient(&goredis.Options{Addr: blackHole(t), ContextTimeoutEnabled: true, MaxRetries: -1,
		DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	b := newTestBudget(t, rdb, "slow", WithTimeout(30*time.Millisecond), WithDegradeAfter(1))
	start := time.Now()
	assert.NoError(t, b.AllowRetry(2), "the local budget allows it")
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	assert.True(t, b.Degraded())
}

func TestNewBudgetRefusesInvalidArguments(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	tests := []struct {
		name string
		key  string
		opts []Option
		want string
	}{
		{"empty name", "", nil, "resilient: NewBudget: name must not be empty"},
		{"ratio", "x", []Option{WithRetryRatio(0)}, "resilient: WithRetryRatio: r must be in (0, 1], got 0"},
		{"burst", "x", []Option{WithRetryBurst(0)}, "resilient: WithRetryBurst:"},
		{"floor", "x", []Option{WithMinRetryRate(-1)}, "resilient: WithMinRetryRate:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBudget(rdb, tt.key, tt.opts...)
			assert.Nil(t, b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := NewBudget(nil, "x")
	assert.ErrorContains(t, err, "resilient: NewBudget: nil client")
	assert.Panics(t, func() { MustNewBudget(rdb, "") })
}

func TestBudgetSuccessPathAllocatesNothing(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBudget(t, srv.Client(), "hot")
	ex := resilient.MustNew(resilient.WithPolicy(b))
	fn := func(context.Context) error { return nil }
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = ex.Run(ctx, fn) }))
}
