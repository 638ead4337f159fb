package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// windowCounts returns the calls and failures in a breaker's shared window.
func windowCounts(t *testing.T, rdb goredis.UniversalClient, name string) (calls, fails int) {
	t.Helper()
	fields, err := rdb.HGetAll(context.Background(), "resilient:{"+name+"}:window").Result()
	require.NoError(t, err)
	for k, v := range fields {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		if strings.HasSuffix(k, ":f") {
			fails += n
		} else {
			calls += n
		}
	}
	return calls, fails
}

// record reports outcomes through b, as an executor would.
func record(t *testing.T, b *Breaker, n int, o resilient.Outcome) {
	t.Helper()
	for range n {
		p, err := b.Admit(context.Background(), 1)
		require.NoError(t, err)
		var e error
		if o == resilient.Fail {
			e = errUpstream
		}
		b.Done(p, resilient.Report{Attempt: 1, Outcome: o, Err: e})
	}
}

// Item 4: a sync whose script ran but whose reply came too late is sent
// again, and applied once: 10 failures stay 10 (they became 20).
func TestLateSyncReplyCountsOnce(t *testing.T) {
	srv := startRedis(t, false)
	p := newFaultProxy(t, srv.Addr())
	b := newTestBreaker(t, p.Client(srv), "late-sync", fast(WithTimeout(100*time.Millisecond),
		WithSyncInterval(30*time.Second), WithMinCalls(1<<30), WithLocalOptions(resilient.WithMinCalls(1<<20)))...)
	record(t, b, 10, resilient.Fail)

	p.Hold()
	require.Error(t, b.sync(context.Background()), "the reply was held")
	p.Release()
	calls, fails := windowCounts(t, srv.Client(), "late-sync")
	require.Equal(t, 10, fails, "the script ran although its reply was held")
	assert.Equal(t, 10, calls)

	record(t, b, 5, resilient.Success)
	require.NoError(t, b.sync(context.Background())) // sends the held batch again
	require.NoError(t, b.sync(context.Background())) // and then the new one
	calls, fails = windowCounts(t, srv.Client(), "late-sync")
	assert.Equal(t, 10, fails)
	assert.Equal(t, 15, calls)
}

// Item 4 for the budget: deposits whose reply came too late are deposited
// once (10 deposits allowed 20 retries).
func TestLateDepositReplyCountsOnce(t *testing.T) {
	srv := startRedis(t, false)
	p := newFaultProxy(t, srv.Addr())
	const burst = 20
	b := newTestBudget(t, p.Client(srv), "late-deposit", WithTimeout(100*time.Millisecond),
		WithSyncInterval(30*time.Second), WithRetryRatio(1), WithRetryBurst(burst), WithMinRetryRate(0))
	for range burst {
		require.NoError(t, b.AllowRetry(2)) // empty the bucket, which starts full
	}
	require.ErrorIs(t, b.AllowRetry(2), resilient.ErrBudgetExhausted)
	for range 10 {
		b.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	}

	p.Hold()
	_, err := b.Available(context.Background())
	require.Error(t, err, "the reply was held")
	p.Release()
	got, err := b.Available(context.Background()) // sends the held batch again
	require.NoError(t, err)
	assert.InDelta(t, 10.0, got, 0.01)

	allowed := 0
	for range 30 {
		if b.AllowRetry(2) == nil {
			allowed++
		}
	}
	assert.Equal(t, 10, allowed)
}

// A probe report delivered twice (its first reply lost) counts once: two
// successes are needed, one success sent twice does not close the fleet.
func TestProbeReportDeliveredTwiceCountsOnce(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBreaker(t, srv.Client(), "twice", fast(WithHalfOpenProbes(2), WithSyncInterval(30*time.Second))...)
	trip(t, b)
	halfOpen(t, b)
	p, err := b.Admit(context.Background(), 1)
	require.NoError(t, err)
	require.NotZero(t, p.Token&tokProbe)
	member := b.member(p.Token >> tokShift)
	for range 2 {
		r, err := b.run(context.Background(), "probe-done", probeDoneScript,
			member, resultSuccess, b.cfg.successes, b.openMS, b.openMaxMS, b.ttlMS, "", b.probeMS, b.cfg.probes)
		require.NoError(t, err)
		assert.Equal(t, resilient.StateHalfOpen, r.state)
		assert.Equal(t, int64(2), r.free)
	}
}

// A permit released before its admission ran (the admission was sent
// before a stall; its caller gave up on the reply and released it) leaves
// a tombstone: the admission, when the server gets to it, is not granted.
func TestReleaseBeforeTheAdmissionRunsLeavesATombstone(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBreaker(t, srv.Client(), "tomb", fast(WithSyncInterval(30*time.Second))...)
	trip(t, b)
	halfOpen(t, b)
	ctx := context.Background()
	_, err := b.run(ctx, "probe-done", probeDoneScript,
		"late", resultRelease, b.cfg.successes, b.openMS, b.openMaxMS, b.ttlMS, "", b.probeMS, b.cfg.probes)
	require.NoError(t, err)
	r, err := b.run(ctx, "probe", probeScript, "late", b.probeMS, b.cfg.probes, b.ttlMS)
	require.NoError(t, err)
	assert.Zero(t, r.extra, "a released permit was granted")
	assert.Equal(t, int64(1), r.free, "the slot stays free")
	r, err = b.run(ctx, "probe", probeScript, "other", b.probeMS, b.cfg.probes, b.ttlMS)
	require.NoError(t, err)
	assert.Equal(t, int64(1), r.extra, "another permit is granted")
	ttl, err := srv.Client().PTTL(ctx, "resilient:{tomb}:released").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Duration(0))
	assert.LessOrEqual(t, ttl, b.cfg.probeTTL, "the tombstones outlive no permit")
}

// countedClient returns a client of srv and a count of the commands it
// sends (one per Redis call, whether or not Redis is there).
func countedClient(t *testing.T, srv *redisServer) (*goredis.Client, *countingHook) {
	rdb := srv.Client()
	h := &countingHook{}
	rdb.AddHook(h)
	return rdb, h
}

// Item 2: while the fleet is half-open with its slots taken, a refusal
// costs no round trip (it cost one each, 1,100 scripts/s fleet-wide): the
// replica knows from its last reply that the slots are taken. When the
// slot frees, the replica learns it at its next sync.
func TestHalfOpenRefusalsCostNoRoundTrip(t *testing.T) {
	srv := startRedis(t, false)
	opts := fast(WithSyncInterval(30 * time.Second))
	a := newTestBreaker(t, srv.Client(), "slots", opts...)
	rdb, cmds := countedClient(t, srv)
	b := newTestBreaker(t, rdb, "slots", opts...)
	trip(t, a)
	halfOpen(t, a)
	probe, err := a.Admit(context.Background(), 1)
	require.NoError(t, err)
	require.NotZero(t, probe.Token&tokProbe, "A holds the only slot")

	require.NoError(t, b.sync(context.Background()))
	require.Equal(t, resilient.StateHalfOpen, b.State())
	before := cmds.n.Load()
	for range 1000 {
		_, err := b.Admit(context.Background(), 1)
		require.ErrorIs(t, err, resilient.ErrOpen)
	}
	assert.Equal(t, before, cmds.n.Load(), "refusals made Redis calls")
	// A's own calls meanwhile: its probe is in flight, they are refused
	// at once too.
	for range 100 {
		_, err := a.Admit(context.Background(), 1)
		require.ErrorIs(t, err, resilient.ErrOpen)
	}

	a.Done(probe, resilient.Report{Attempt: 1, Outcome: resilient.Ignore}) // frees the slot
	require.NoError(t, b.sync(context.Background()))
	p, err := b.Admit(context.Background(), 1)
	require.NoError(t, err, "the freed slot was not seen")
	assert.NotZero(t, p.Token&tokProbe)
	b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	assert.Equal(t, resilient.StateClosed, b.State())
}

// Item 3: once the budget knows Redis is away, a retry is judged by the
// local budget at once, with no Redis call (each one waited the full
// timeout, even with the connection refused).
func TestRetriesWhileDegradedMakeNoRedisCall(t *testing.T) {
	srv := startRedis(t, false)
	rdb, cmds := countedClient(t, srv)
	const timeout = 200 * time.Millisecond
	b := newTestBudget(t, rdb, "away", WithTimeout(timeout), WithSyncInterval(30*time.Second), WithRetryBurst(2000))
	srv.Stop()
	for range DefaultDegradeAfter {
		require.NoError(t, b.AllowRetry(2))
	}
	require.True(t, b.Degraded())
	before := cmds.n.Load()
	took := within(t, 10*time.Second, "1000 retries", func() {
		for range 1000 {
			assert.NoError(t, b.AllowRetry(2))
		}
	})
	assert.Equal(t, before, cmds.n.Load(), "retries made Redis calls while Redis was known to be away")
	assert.Less(t, took, timeout)
}

// And the breaker's probe reports, while degraded, wait for the next sync
// that reaches Redis instead of a timeout each.
func TestProbeReportWhileDegradedMakesNoRedisCall(t *testing.T) {
	srv := startRedis(t, false)
	rdb, cmds := countedClient(t, srv)
	b := newTestBreaker(t, rdb, "away", fast(WithSyncInterval(30*time.Second), WithTimeout(200*time.Millisecond))...)
	trip(t, b)
	halfOpen(t, b)
	probe, err := b.Admit(context.Background(), 1)
	require.NoError(t, err)
	require.NotZero(t, probe.Token&tokProbe)
	srv.Freeze()
	for range DefaultDegradeAfter {
		_ = b.sync(context.Background())
	}
	require.True(t, b.Degraded())
	before := cmds.n.Load()
	took := within(t, 10*time.Second, "the report", func() {
		b.Done(probe, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	})
	assert.Equal(t, before, cmds.n.Load())
	assert.Less(t, took, 200*time.Millisecond)
	assert.Equal(t, resilient.StateClosed, b.Local().State(), "the local breaker learnt it at once")

	srv.Thaw()
	eventually(t, 5*time.Second, func() bool { return b.sync(context.Background()) == nil && !b.Degraded() }, "no recovery")
	assert.Equal(t, resilient.StateClosed, b.State(), "the report was delivered with the sync")
}

// The fleet breaker and budget composed with hedging, retries and hooks,
// on two replicas, while the fleet is half-open: with Redis answering,
// never more calls in flight at the upstream than the fleet's probes
// (hedges are attempts, and each needs a slot; a hedge that loses is
// released); Redis frozen mid-way, every call still returns within its
// bound; thawed, both replicas recover; the hooks saw every attempt.
func TestHedgingBudgetAndHooksThroughAStall(t *testing.T) {
	srv := startRedis(t, false)
	// A timeout no loaded machine misses: a Redis call that failed would be
	// decided locally, without a fleet-wide slot, by design.
	const probes, timeout = 2, time.Second
	opts := fast(WithTimeout(timeout), WithHalfOpenProbes(probes),
		WithHalfOpenSuccesses(resilient.MaxProbes), // stays half-open however many probes succeed
		WithRetryBurst(1000))
	var attempts, runs atomic.Int64
	hooks := resilient.WithHooks(resilient.Hooks{OnAttempt: func(resilient.AttemptEvent) { attempts.Add(1) }})
	var inFlight, most atomic.Int64
	var degradedSeen atomic.Bool
	fn := func(ctx context.Context) (struct{}, error) {
		runs.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if !degradedSeen.Load() {
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
		}
		select {
		case <-time.After(10 * time.Millisecond): // the upstream's latency
			return struct{}{}, nil
		case <-ctx.Done():
			return struct{}{}, ctx.Err()
		}
	}
	type replica struct {
		br *Breaker
		bu *Budget
		ex *resilient.Executor
	}
	var rs []replica
	for range 2 {
		br := newTestBreaker(t, srv.Client(), "combo", opts...)
		bu := newTestBudget(t, srv.Client(), "combo", opts...)
		ex := resilient.MustNew(resilient.WithAttempts(3), resilient.WithBackoff(resilient.Constant(time.Millisecond)),
			resilient.WithHedge(3*time.Millisecond, 2), resilient.WithPolicy(bu, br), hooks)
		rs = append(rs, replica{br, bu, ex})
	}
	trip(t, rs[0].br)
	halfOpen(t, rs[0].br)
	eventually(t, 2*time.Second, func() bool { return rs[1].br.State() == resilient.StateHalfOpen }, "not half-open")

	// Every call's duration is bounded: each attempt's Redis calls (an
	// admission, a report, a retry) within the timeout, 3 attempts.
	const bound = 3*(3*timeout+10*time.Millisecond) + time.Second
	var slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range rs {
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					_, err := resilient.DoHedged(context.Background(), fn, r.ex)
					if d := int64(time.Since(start)); d > slowest.Load() {
						slowest.Store(d)
					}
					if err != nil {
						assert.True(t, errors.Is(err, resilient.ErrOpen) || errors.Is(err, resilient.ErrBudgetExhausted), "%v", err)
						time.Sleep(time.Millisecond) // pacing after a refusal, not synchronisation
					}
				}
			})
		}
	}
	stopCalls := sync.OnceFunc(func() {
		close(stop)
		waitGroup(t, &wg, 30*time.Second, "the callers")
	})
	defer stopCalls()

	served := runs.Load()
	eventually(t, 5*time.Second, func() bool { return runs.Load() > served+50 }, "the probes did not run")
	assert.LessOrEqual(t, most.Load(), int64(probes), "more calls in flight than the fleet's probes")
	t.Logf("half-open, Redis answering: %d calls ran, at most %d at once", runs.Load()-served, most.Load())

	degradedSeen.Store(true) // fallback decisions are local, per replica, while Redis is frozen
	srv.Freeze()
	eventually(t, 10*time.Second, func() bool { return rs[0].br.Degraded() && rs[1].br.Degraded() }, "not degraded")
	srv.Thaw()
	eventually(t, 10*time.Second, func() bool {
		for _, r := range rs {
			if r.br.Degraded() || r.bu.Degraded() {
				return false
			}
		}
		return true
	}, "no recovery")
	stopCalls()
	assert.Less(t, time.Duration(slowest.Load()), bound, "a call waited too long")
	assert.Equal(t, runs.Load(), attempts.Load(), "the hooks saw every attempt that ran")
}

// Regression: a probe admission whose caller's context ended during the
// Redis call (a hedge that lost) fell back to a local permit, and the
// attempt ran without a fleet-wide slot (3 calls in flight with 2 probes,
// in TestHedgingBudgetAndHooksThroughAStall). It is refused now, and
// leaves the local breaker's probe free.
func TestProbeAdmissionOfAGoneCallerIsRefused(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBreaker(t, srv.Client(), "gone", fast(WithSyncInterval(30*time.Second))...)
	trip(t, b)
	halfOpen(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 { // more than the local breaker's probes (1)
		_, err := b.Admit(ctx, 1)
		require.ErrorIs(t, err, context.Canceled)
	}
	p, err := b.Admit(context.Background(), 1)
	require.NoError(t, err, "the local probe was not given back")
	assert.NotZero(t, p.Token&tokProbe, "a fleet-wide probe")
	b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
}
