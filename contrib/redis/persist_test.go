package redis

import (
	"context"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenStateSurvivesReplicaAndRedisRestarts(t *testing.T) {
	srv := startRedis(t, true)
	a := newTestBreaker(t, srv.Client(), "users", fast()...)
	trip(t, a)
	require.NoError(t, a.Close())

	// A replica started later starts open, for what is left of the open
	// duration: at once, before its first interval.
	b := newTestBreaker(t, srv.Client(), "users", fast()...)
	assert.Equal(t, resilient.StateOpen, b.State())
	assert.Equal(t, resilient.StateOpen, b.Local().State())
	require.NoError(t, b.Close())

	// And so does one started after Redis itself restarted.
	srv.Stop()
	srv.Start()
	c := newTestBreaker(t, srv.Client(), "users", fast()...)
	assert.False(t, c.Degraded())
	assert.Equal(t, resilient.StateOpen, c.State())
	_, err := c.Admit(context.Background(), 1)
	var oe *resilient.OpenError
	require.ErrorAs(t, err, &oe)
	assert.Greater(t, oe.RetryAfter(), 50*time.Second)
	assert.LessOrEqual(t, oe.RetryAfter(), time.Minute)
	assert.Equal(t, errUpstream.Error(), oe.Cause.Error())
}

func TestStoreKeepsABreakersSnapshot(t *testing.T) {
	srv := startRedis(t, true)
	// A generous timeout: a loaded machine must not look like a Redis failure.
	store, err := NewStore(srv.Client(), WithKeyTTL(time.Minute), WithTimeout(time.Second))
	require.NoError(t, err)
	ctx := context.Background()

	_, ok, err := store.Load(ctx, "never")
	require.NoError(t, err)
	assert.False(t, ok)

	br := resilient.MustNewBreaker(resilient.WithBreakerName("users"), resilient.WithStore(store),
		resilient.WithOpenDuration(time.Minute), resilient.WithCountWindow(2), resilient.WithMinCalls(2))
	for range 2 {
		p, err := br.Allow()
		require.NoError(t, err)
		br.Record(p, errUpstream)
	}
	require.Equal(t, resilient.StateOpen, br.State())

	srv.Stop()
	srv.Start()
	again, err := resilient.NewBreaker(resilient.WithBreakerName("users"), resilient.WithStore(store),
		resilient.WithOpenDuration(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, resilient.StateOpen, again.State())
	_, err = again.Allow()
	var oe *resilient.OpenError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, errUpstream.Error(), oe.Cause.Error())
	assert.Greater(t, oe.RetryAfter(), 50*time.Second)

	ttl, err := srv.Client().PTTL(ctx, "resilient:{users}:snapshot").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0))
	assert.LessOrEqual(t, ttl, time.Minute)

	srv.Stop()
	_, _, err = store.Load(ctx, "users")
	assert.Error(t, err, "a store that cannot reach Redis says so")
	assert.Error(t, store.Save(ctx, "users", br.Snapshot()))
}

func TestKeysCarryTTLsAndExpireWhenUnused(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	ctx := context.Background()
	const ttl = 400 * time.Millisecond
	opts := []Option{
		WithTimeout(time.Second), WithSyncInterval(20 * time.Millisecond), WithKeyTTL(ttl), WithWindow(200*time.Millisecond, 2),
		WithOpenDuration(100 * time.Millisecond), WithProbeTTL(100 * time.Millisecond), WithMinCalls(5),
		WithPrefix("test"),
	}
	br := newTestBreaker(t, rdb, "users", opts...)
	bu := newTestBudget(t, rdb, "users", opts...)
	for range 3 {
		p, err := br.Admit(ctx, 1)
		require.NoError(t, err)
		br.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	}
	require.NoError(t, br.sync(ctx))
	require.NoError(t, bu.AllowRetry(2))

	keys := []string{"test:{users}:state", "test:{users}:window", "test:{users}:budget"}
	for _, k := range keys {
		d, err := rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		assert.Greater(t, d, time.Duration(0), k)
		assert.LessOrEqual(t, d, ttl, k)
	}
	require.NoError(t, br.Close())

	// Each sync renews the state's TTL: the TTL is seen running down, then
	// back up after a sync. The background sync (every TTL) renews it too,
	// which proves the same.
	slow := newTestBreaker(t, rdb, "users", append(opts, WithSyncInterval(ttl))...)
	eventually(t, 5*time.Second, func() bool {
		d, err := rdb.PTTL(ctx, keys[0]).Result()
		return err == nil && d > 0 && d < ttl/2
	}, "the TTL did not run down")
	require.NoError(t, slow.sync(ctx))
	d, err := rdb.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.Greater(t, d, ttl/2, "the TTL was not renewed")

	// Unused, everything goes away.
	require.NoError(t, slow.Close())
	require.NoError(t, bu.Close())
	eventually(t, 3*time.Second, func() bool {
		n, err := rdb.Exists(ctx, keys...).Result()
		return err == nil && n == 0
	}, "keys outlived their TTL")
	n, err := rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing else was left behind")
}

func TestWindowBucketsArePruned(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	ctx := context.Background()
	br := newTestBreaker(t, rdb, "prune", fast(WithWindow(100*time.Millisecond, 2), WithMinCalls(1<<30))...)
	// Outcomes over many buckets' time: the window hash holds at most
	// buckets+1 buckets (two fields each), never more.
	deadline := time.Now().Add(600 * time.Millisecond)
	maxFields := int64(0)
	for time.Now().Before(deadline) {
		p, err := br.Admit(ctx, 1)
		require.NoError(t, err)
		br.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
		require.NoError(t, br.sync(ctx))
		n, err := rdb.HLen(ctx, "resilient:{prune}:window").Result()
		require.NoError(t, err)
		maxFields = max(maxFields, n)
	}
	assert.LessOrEqual(t, maxFields, int64(2*3))
	assert.Equal(t, resilient.StateClosed, br.State(), "never judged below the minimum calls")
}
