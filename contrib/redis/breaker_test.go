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

var errUpstream = errors.New("upstream down")

// fast is a configuration with short intervals, for tests on a real Redis.
func fast(extra ...Option) []Option {
	return append([]Option{
		// Generous, so that a busy test machine does not look like a
		// Redis failure; the tests of the timeout set their own.
		WithTimeout(time.Second),
		WithSyncInterval(20 * time.Millisecond),
		WithWindow(10*time.Second, 10),
		WithMinCalls(10),
		WithFailureRate(0.5),
		WithOpenDuration(time.Minute),
		WithKeyTTL(time.Minute),
		WithProbeTTL(time.Minute),
	}, extra...)
}

func newTestBreaker(t *testing.T, rdb goredis.UniversalClient, name string, opts ...Option) *Breaker {
	t.Helper()
	b, err := NewBreaker(rdb, name, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// eventually polls cond every few milliseconds, for at most d.
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, d, 5*time.Millisecond, msg)
}

func TestTwoReplicasShareATrip(t *testing.T) {
	srv := startRedis(t, false)
	// A's local breaker must not open on its own calls first, or A would
	// stop sending them: it needs far more calls than the fleet does.
	a := newTestBreaker(t, srv.Client(), "users", fast(WithLocalOptions(resilient.WithMinCalls(1<<20)))...)
	b := newTestBreaker(t, srv.Client(), "users", fast()...)
	exA := resilient.MustNew(resilient.WithAttempts(1), resilient.WithPolicy(a))
	exB := resilient.MustNew(resilient.WithAttempts(1), resilient.WithPolicy(b))
	ctx := context.Background()

	// Replica A sees only failures, replica B only successes, at a slower
	// pace; B must stop calling once the fleet's window has tripped,
	// although none of its own calls failed.
	var wg sync.WaitGroup
	var bOK, bRefused atomic.Int64
	var bErr atomic.Value
	done := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = exA.Run(ctx, func(context.Context) error { return errUpstream })
		}
	})
	wg.Go(func() {
		defer close(done)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			err := exB.Run(ctx, func(context.Context) error { return nil })
			if err != nil {
				bErr.Store(err)
				bRefused.Add(1)
				return
			}
			bOK.Add(1)
			time.Sleep(time.Millisecond) // pacing of the traffic, not synchronisation
		}
	})
	waitGroup(t, &wg, 30*time.Second, "the two replicas' traffic")

	require.Equal(t, int64(1), bRefused.Load(), "replica B was never refused")
	err := bErr.Load().(error)
	assert.ErrorIs(t, err, resilient.ErrOpen)
	var oe *resilient.OpenError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "users", oe.Name)
	assert.Equal(t, resilient.StateOpen, b.State())
	assert.Equal(t, resilient.StateOpen, b.Local().State())
	assert.Zero(t, b.Local().Metrics().Failures, "B's own calls never failed")
	assert.Greater(t, bOK.Load(), int64(0))
	assert.Contains(t, oe.Cause.Error(), errUpstream.Error(), "the cause travels with the shared state")
	assert.InDelta(t, time.Minute.Seconds(), oe.RetryAfter().Seconds(), 5)
}

// trip makes b's fleet open: 10 failures, then a sync, and waits until b
// sees the fleet open.
func trip(t *testing.T, b *Breaker) {
	t.Helper()
	for range 10 {
		p, err := b.Admit(context.Background(), 1)
		require.NoError(t, err)
		b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
	}
	require.NoError(t, b.sync(context.Background()))
	eventually(t, 2*time.Second, func() bool { return b.State() == resilient.StateOpen }, "the fleet did not open")
}

func TestTripReachesOtherReplicaWithinTheSyncInterval(t *testing.T) {
	srv := startRedis(t, false)
	const interval = 50 * time.Millisecond
	a := newTestBreaker(t, srv.Client(), "orders", fast(WithSyncInterval(interval))...)
	b := newTestBreaker(t, srv.Client(), "orders", fast(WithSyncInterval(interval))...)
	for range 10 {
		p, err := a.Admit(context.Background(), 1)
		require.NoError(t, err)
		a.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
	}
	// A's next sync trips the fleet (≤ 1 interval); B's next sync reads it
	// (≤ 1 more). Two intervals, plus scheduling slack on a busy machine.
	start := time.Now()
	eventually(t, 2*time.Second, func() bool { return b.State() == resilient.StateOpen }, "B never saw the trip")
	t.Logf("B saw the trip after %v (sync interval %v)", time.Since(start), interval)
	_, err := b.Admit(context.Background(), 1)
	assert.ErrorIs(t, err, resilient.ErrOpen)
}

func TestFleetWideProbeLimit(t *testing.T) {
	srv := startRedis(t, false)
	const probes, replicas, workers = 3, 4, 8
	// Open long enough for every replica to see it on a loaded machine.
	opts := fast(WithOpenDuration(time.Second), WithHalfOpenProbes(probes))
	rs := make([]*Breaker, replicas)
	for i := range rs {
		rs[i] = newTestBreaker(t, srv.Client(), "search", opts...)
	}
	// Trip the fleet from replica 0, and wait for every replica to see it.
	trip(t, rs[0])
	eventually(t, 2*time.Second, func() bool {
		for _, r := range rs {
			if r.State() != resilient.StateOpen {
				return false
			}
		}
		return true
	}, "the fleet did not open")

	// Once the open duration has passed, every worker of every replica
	// hammers Admit and keeps what it is given: never more than probes in
	// total.
	var mu sync.Mutex
	var held []struct {
		r *Breaker
		p resilient.Permit
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for _, r := range rs {
		for range workers {
			wg.Go(func() {
				for time.Now().Before(stop) {
					p, err := r.Admit(context.Background(), 1)
					if err == nil {
						mu.Lock()
						held = append(held, struct {
							r *Breaker
							p resilient.Permit
						}{r, p})
						mu.Unlock()
					} else {
						assert.ErrorIs(t, err, resilient.ErrOpen)
					}
					time.Sleep(time.Millisecond) // pacing, not synchronisation
				}
			})
		}
	}
	waitGroup(t, &wg, 30*time.Second, "the workers")
	require.Len(t, held, probes, "fleet-wide probes admitted")

	// The probes succeed: the fleet closes, for every replica.
	for _, h := range held {
		h.r.Done(h.p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	}
	eventually(t, 2*time.Second, func() bool {
		for _, r := range rs {
			if r.State() != resilient.StateClosed || r.Local().State() != resilient.StateClosed {
				return false
			}
		}
		return true
	}, "the fleet did not close after its probes succeeded")
}

func TestProbePermitOfADeadReplicaExpires(t *testing.T) {
	srv := startRedis(t, false)
	opts := fast(WithOpenDuration(time.Minute), WithProbeTTL(300*time.Millisecond))
	dead := newTestBreaker(t, srv.Client(), "pay", opts...)
	live := newTestBreaker(t, srv.Client(), "pay", opts...)
	trip(t, dead)
	halfOpen(t, dead)
	eventually(t, 2*time.Second, func() bool { return live.State() == resilient.StateHalfOpen }, "live did not see the half-open state")
	// The dead replica takes the only probe and never reports it.
	var grantedAt time.Time
	eventually(t, 2*time.Second, func() bool {
		before := time.Now()
		p, err := dead.Admit(context.Background(), 1)
		grantedAt = before
		return err == nil && p.Token&tokProbe != 0
	}, "no fleet-wide probe was admitted")
	require.NoError(t, dead.Close())

	_, err := live.Admit(context.Background(), 1)
	require.ErrorIs(t, err, resilient.ErrOpen, "the slot is held")
	eventually(t, 3*time.Second, func() bool {
		p, err := live.Admit(context.Background(), 1)
		if err != nil {
			return false
		}
		live.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		return true
	}, "the dead replica's probe slot was never freed")
	assert.GreaterOrEqual(t, time.Since(grantedAt), 290*time.Millisecond, "freed before its TTL")
	eventually(t, 2*time.Second, func() bool { return live.State() == resilient.StateClosed }, "not closed")
}

// halfOpen makes the fleet's breaker half-open at once, as the end of its
// open duration would, and waits until b has seen it: tests need not wait
// for an open duration, nor race one.
func halfOpen(t *testing.T, b *Breaker) {
	t.Helper()
	r, err := b.run(context.Background(), "control", controlScript, int(resilient.StateHalfOpen), b.openMS, b.ttlMS, b.cfg.probes)
	require.NoError(t, err)
	b.apply(r)
	eventually(t, 2*time.Second, func() bool {
		return b.State() == resilient.StateHalfOpen && b.Local().State() == resilient.StateHalfOpen
	}, "the fleet did not turn half-open")
}

func TestFailedProbeReopensTheFleet(t *testing.T) {
	srv := startRedis(t, false)
	// Open for a minute: B cannot miss the reopening, however late it
	// syncs on a busy machine.
	opts := fast(WithOpenDuration(time.Minute))
	a := newTestBreaker(t, srv.Client(), "cart", opts...)
	b := newTestBreaker(t, srv.Client(), "cart", opts...)
	trip(t, a)
	halfOpen(t, a)
	eventually(t, 2*time.Second, func() bool { return b.State() == resilient.StateHalfOpen }, "B did not see the half-open state")
	probe, err := a.Admit(context.Background(), 1)
	require.NoError(t, err)
	require.NotZero(t, probe.Token&tokProbe, "a fleet-wide probe")
	a.Done(probe, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errors.New("still down")})
	assert.Equal(t, resilient.StateOpen, a.State(), "the probe's failure reopens at once")
	eventually(t, 2*time.Second, func() bool { return b.State() == resilient.StateOpen && b.Local().State() == resilient.StateOpen },
		"B did not learn of the reopening")
	_, err = b.Admit(context.Background(), 1)
	var oe *resilient.OpenError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "still down", oe.Cause.Error())
}

func TestManualControlsAreFleetWide(t *testing.T) {
	srv := startRedis(t, false)
	a := newTestBreaker(t, srv.Client(), "inv", fast()...)
	b := newTestBreaker(t, srv.Client(), "inv", fast()...)
	ctx := context.Background()
	tests := []struct {
		name  string
		do    func(context.Context) error
		state resilient.State
	}{
		{"force open", a.ForceOpen, resilient.StateForcedOpen},
		{"reset", a.Reset, resilient.StateClosed},
		{"disable", a.Disable, resilient.StateDisabled},
		{"reset again", a.Reset, resilient.StateClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.do(ctx))
			eventually(t, 2*time.Second, func() bool {
				return b.State() == tt.state && b.Local().State() == tt.state
			}, "replica B did not follow")
		})
	}
	// Disabled: failures are counted but never open it.
	require.NoError(t, a.Disable(ctx))
	eventually(t, 2*time.Second, func() bool { return b.State() == resilient.StateDisabled }, "not disabled")
	for range 20 {
		p, err := b.Admit(ctx, 1)
		require.NoError(t, err)
		b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
	}
	require.NoError(t, b.sync(ctx))
	assert.Equal(t, resilient.StateDisabled, b.State())
}

// Regression (a CI run hung ten minutes): the test read the events as soon
// as Degraded turned, before the hook had recorded one, and indexed them
// holding the hook's lock; the panic left the breaker's goroutine stuck in
// the hook and Close waiting for it. With a slow hook, that order is
// certain.
func TestRedisStoppedThenRestarted(t *testing.T) {
	for _, slow := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run("hook takes "+slow.String(), func(t *testing.T) { testRedisStoppedThenRestarted(t, slow) })
	}
}

func testRedisStoppedThenRestarted(t *testing.T, slow time.Duration) {
	srv := startRedis(t, false)
	log := eventLog{slow: slow}
	a := newTestBreaker(t, srv.Client(), "geo", fast(log.hook(), WithMinCalls(5))...)
	ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithPolicy(a))
	ctx := context.Background()
	require.NoError(t, ex.Run(ctx, func(context.Context) error { return nil }))

	srv.Stop()
	// Calls keep working on local state, and quickly: the success path
	// never waits for Redis.
	for range 50 {
		start := time.Now()
		require.NoError(t, ex.Run(ctx, func(context.Context) error { return nil }))
		// Far below the timeout (1s) that a call waiting for Redis would
		// take; TestRoundTripsPerCall counts the commands.
		assert.Less(t, time.Since(start), 500*time.Millisecond)
	}
	events := log.waitFor(t, 1, 5*time.Second)
	assert.True(t, a.Degraded())
	require.Equal(t, []EventKind{EventDegraded}, log.kinds(), "one event per change")
	assert.Equal(t, "breaker", events[0].Component)
	assert.Equal(t, "geo", events[0].Name)
	assert.Error(t, events[0].Err)

	// The local breaker alone still protects the upstream.
	opened := false
	for range 100 {
		if err := ex.Run(ctx, func(context.Context) error { return errUpstream }); errors.Is(err, resilient.ErrOpen) {
			opened = true
			break
		}
	}
	assert.True(t, opened, "the local breaker opens while Redis is away")
	assert.Equal(t, resilient.StateOpen, a.Local().State())
	a.Local().Reset()

	srv.Start()
	log.waitFor(t, 2, 5*time.Second)
	assert.False(t, a.Degraded())
	assert.Equal(t, []EventKind{EventDegraded, EventRecovered}, log.kinds())

	// Resynchronised: a fleet-wide change made by another replica reaches it.
	other := newTestBreaker(t, srv.Client(), "geo", fast()...)
	require.NoError(t, other.ForceOpen(ctx))
	eventually(t, 2*time.Second, func() bool { return a.State() == resilient.StateForcedOpen }, "no resync")
	assert.ErrorIs(t, ex.Run(ctx, func(context.Context) error { return nil }), resilient.ErrOpen)
}

// A Redis that accepts connections but never answers must not stall the
// caller beyond the timeout.
func TestSlowRedisIsBoundedByTheTimeout(t *testing.T) {
	hole := blackHole(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: hole, ContextTimeoutEnabled: true, MaxRetries: -1,
		DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	var degraded atomic.Int64
	start := time.Now()
	b, err := NewBreaker(rdb, "slow", fast(WithTimeout(30*time.Millisecond), WithDegradeAfter(1),
		WithEventHook(func(Event) { degraded.Add(1) }))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	assert.Less(t, time.Since(start), time.Second, "NewBreaker waited too long")
	assert.True(t, b.Degraded())
	assert.Equal(t, int64(1), degraded.Load())
	p, err := b.Admit(context.Background(), 1)
	require.NoError(t, err)
	b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
}

func TestNewBreakerRefusesInvalidArguments(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	noCtxTimeout := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = noCtxTimeout.Close() })
	tests := []struct {
		name string
		rdb  goredis.UniversalClient
		key  string
		opts []Option
		want string
	}{
		{"nil client", nil, "x", nil, "resilient: NewBreaker: nil client"},
		{"no context timeouts", noCtxTimeout, "x", nil, "ContextTimeoutEnabled"},
		{"empty name", rdb, "", nil, "resilient: NewBreaker: name must not be empty"},
		{"nil option", rdb, "x", []Option{nil}, "resilient: redis: nil option"},
		{"timeout", rdb, "x", []Option{WithTimeout(0)}, "resilient: WithTimeout: d must be > 0, got 0s"},
		{"interval", rdb, "x", []Option{WithSyncInterval(0)}, "resilient: WithSyncInterval:"},
		{"rate", rdb, "x", []Option{WithFailureRate(1.5)}, "resilient: WithFailureRate: rate must be in (0, 1], got 1.5"},
		{"min calls", rdb, "x", []Option{WithMinCalls(0)}, "resilient: WithMinCalls:"},
		{"window", rdb, "x", []Option{WithWindow(time.Millisecond, 10)}, "resilient: WithWindow:"},
		{"buckets", rdb, "x", []Option{WithWindow(time.Second, 0)}, "resilient: WithWindow: buckets"},
		{"open", rdb, "x", []Option{WithOpenDuration(0)}, "resilient: WithOpenDuration:"},
		{"backoff", rdb, "x", []Option{WithOpenBackoff(time.Second)}, "resilient: WithOpenBackoff: max must be >= the open duration"},
		{"probes", rdb, "x", []Option{WithHalfOpenProbes(0)}, "resilient: WithHalfOpenProbes:"},
		{"successes", rdb, "x", []Option{WithHalfOpenSuccesses(-1)}, "resilient: WithHalfOpenSuccesses:"},
		{"probe ttl", rdb, "x", []Option{WithProbeTTL(0)}, "resilient: WithProbeTTL:"},
		{"key ttl", rdb, "x", []Option{WithKeyTTL(time.Second)}, "resilient: WithKeyTTL: d must be at least"},
		{"prefix", rdb, "x", []Option{WithPrefix("a{b")}, "resilient: WithPrefix:"},
		{"hook", rdb, "x", []Option{WithEventHook(nil)}, "resilient: WithEventHook: nil hook"},
		{"degrade after", rdb, "x", []Option{WithDegradeAfter(0)}, "resilient: WithDegradeAfter: n must be >= 1, got 0"},
		{"degrade after, negative", rdb, "x", []Option{WithDegradeAfter(-3)}, "resilient: WithDegradeAfter: n must be >= 1, got -3"},
		{"local option", rdb, "x", []Option{WithLocalOptions(resilient.WithConsecutiveFailures(0))}, "resilient: WithConsecutiveFailures:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b *Breaker
			var err error
			require.NotPanics(t, func() { b, err = NewBreaker(tt.rdb, tt.key, tt.opts...) })
			assert.Nil(t, b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	assert.Panics(t, func() { MustNewBreaker(rdb, "") })
}

func TestSuccessPathAllocatesNothing(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBreaker(t, srv.Client(), "hot", fast()...)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		p, err := b.Admit(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
	})
	assert.Zero(t, allocs)
	ex := resilient.MustNew(resilient.WithPolicy(b))
	fn := func(context.Context) error { return nil }
	allocs = testing.AllocsPerRun(1000, func() { _ = ex.Run(ctx, fn) })
	assert.Zero(t, allocs)
}

// Counts batched by many goroutines on two replicas all reach the shared
// window, exactly once.
func TestBatchedCountsAreNotLost(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	opts := fast(WithMinCalls(1<<30), WithLocalOptions(resilient.WithMinCalls(1<<20)))
	rs := []*Breaker{newTestBreaker(t, rdb, "count", opts...), newTestBreaker(t, rdb, "count", opts...)}
	const workers, calls = 8, 300
	var wg sync.WaitGroup
	for _, r := range rs {
		for w := range workers {
			wg.Go(func() {
				for i := range calls {
					p, err := r.Admit(context.Background(), 1)
					if !assert.NoError(t, err) {
						return
					}
					rep := resilient.Report{Attempt: 1, Outcome: resilient.Success}
					if (i+w)%3 == 0 {
						rep = resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream}
					}
					r.Done(p, rep)
				}
			})
		}
	}
	waitGroup(t, &wg, 30*time.Second, "the workers")
	for _, r := range rs {
		require.NoError(t, r.Close()) // the last flush
	}
	fields, err := rdb.HGetAll(context.Background(), "resilient:{count}:window").Result()
	require.NoError(t, err)
	var total, fails int64
	for k, v := range fields {
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
		if strings.HasSuffix(k, ":f") {
			fails += n
		} else {
			total += n
		}
	}
	assert.Equal(t, int64(2*workers*calls), total)
	assert.Equal(t, int64(2*workers*calls/3), fails)
}

// Results of calls admitted before a change of state are not counted in
// the new window.
func TestLateResultsDoNotPolluteTheNewWindow(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	a := newTestBreaker(t, rdb, "late", fast()...)
	ctx := context.Background()
	var ps []resilient.Permit
	for range 10 {
		p, err := a.Admit(ctx, 1)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	require.NoError(t, a.Reset(ctx)) // a new generation, fleet-wide
	for _, p := range ps {
		a.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
	}
	require.NoError(t, a.sync(ctx))
	assert.Equal(t, resilient.StateClosed, a.State())
	n, err := rdb.HLen(ctx, "resilient:{late}:window").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "late failures reached the shared window")
	assert.Zero(t, a.Local().Metrics().Failures, "late failures reached the local window")
}

func TestCountsOfAnOutageLongerThanTheWindowAreDropped(t *testing.T) {
	tests := []struct {
		name    string
		window  time.Duration
		outage  time.Duration
		flushed bool
	}{
		{"outage shorter than the window: flushed on recovery", 10 * time.Second, 0, true},
		{"outage longer than the window: dropped", 100 * time.Millisecond, 300 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startRedis(t, false)
			rdb := srv.Client()
			b := newTestBreaker(t, rdb, "outage", fast(WithWindow(tt.window, 2))...)
			srv.Stop()
			for range 5 {
				p, err := b.Admit(context.Background(), 1)
				require.NoError(t, err)
				b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
			}
			eventually(t, 2*time.Second, b.Degraded, "no degradation noticed")
			if tt.outage > 0 {
				stopped := time.Now()
				// The outage itself: time passing is what is tested.
				eventually(t, 2*time.Second, func() bool { return time.Since(stopped) > tt.outage }, "")
			}
			srv.Start()
			eventually(t, 3*time.Second, func() bool { return !b.Degraded() }, "no recovery")
			require.NoError(t, b.sync(context.Background()))
			fields, err := rdb.HGetAll(context.Background(), "resilient:{outage}:window").Result()
			require.NoError(t, err)
			var fails int
			for k, v := range fields {
				if strings.HasSuffix(k, ":f") {
					n, _ := strconv.Atoi(v)
					fails += n
				}
			}
			if tt.flushed {
				assert.Equal(t, 5, fails)
			} else {
				assert.Zero(t, fails)
			}
		})
	}
}

// A reply that ran earlier on the server than one already applied (a sync
// and a probe's report crossing on two connections) changes nothing; a
// Redis that lost its data, and starts again from generation 0, is
// followed.
func TestStaleRepliesAreNotApplied(t *testing.T) {
	srv := startRedis(t, false)
	b := newTestBreaker(t, srv.Client(), "order", fast(WithSyncInterval(30*time.Second))...)
	start := b.view.Load()
	base := time.Now().UnixMilli() + 10_000 // after every reply of the real server so far
	steps := []struct {
		name  string
		r     reply
		state resilient.State
		gen   uint64
	}{
		{"newer: applied", reply{state: resilient.StateClosed, gen: 7, serverMS: base}, resilient.StateClosed, 7},
		{"older: ignored", reply{state: resilient.StateHalfOpen, gen: 6, serverMS: base - 5}, resilient.StateClosed, 7},
		{"same ms, older gen: ignored", reply{state: resilient.StateHalfOpen, gen: 6, serverMS: base}, resilient.StateClosed, 7},
		{"same ms, newer gen: applied", reply{state: resilient.StateOpen, gen: 8, left: time.Minute, serverMS: base}, resilient.StateOpen, 8},
		{"data lost: gen 0 later, applied", reply{state: resilient.StateClosed, gen: 0, serverMS: base + 5}, resilient.StateClosed, 0},
		{"server clock stepped back: applied", reply{state: resilient.StateForcedOpen, gen: 1, serverMS: base - 60_000}, resilient.StateForcedOpen, 1},
	}
	require.NotEqual(t, uint64(7), start.gen)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.r.arrivedAt = time.Now()
			b.apply(st.r)
			v := b.view.Load()
			assert.Equal(t, st.state, v.state)
			assert.Equal(t, st.gen, v.gen)
			assert.Equal(t, st.state, b.Local().State())
		})
	}
}

// Traffic with every outcome on several replicas, while the fleet is
// forced open and reset under it: no race, no deadlock, and the fleet
// converges once the changes stop.
func TestHammerWithManualChanges(t *testing.T) {
	srv := startRedis(t, false)
	opts := fast(WithOpenDuration(20*time.Millisecond), WithHalfOpenProbes(2), WithMinCalls(5))
	rs := make([]*Breaker, 3)
	for i := range rs {
		rs[i] = newTestBreaker(t, srv.Client(), "hammer", opts...)
	}
	outcomes := []resilient.Outcome{resilient.Success, resilient.Success, resilient.Fail, resilient.Retry, resilient.Ignore}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// The workers stop however the test ends: a failed require below must
	// not leave them running into the next tests.
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		waitGroup(t, &wg, 30*time.Second, "the workers")
	})
	defer stopWorkers()
	for _, r := range rs {
		for w := range 6 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					p, err := r.Admit(context.Background(), 1)
					if err != nil {
						assert.ErrorIs(t, err, resilient.ErrOpen)
						continue
					}
					o := outcomes[(i+w)%len(outcomes)]
					var e error
					if o == resilient.Fail || o == resilient.Retry {
						e = errUpstream
					}
					r.Done(p, resilient.Report{Attempt: 1, Outcome: o, Err: e})
				}
			})
		}
	}
	for i := range 20 {
		r := rs[i%len(rs)]
		if i%2 == 0 {
			assert.NoError(t, r.ForceOpen(context.Background()))
		} else {
			assert.NoError(t, r.Reset(context.Background()))
		}
	}
	require.NoError(t, rs[0].Disable(context.Background()))
	stopWorkers()
	eventually(t, 2*time.Second, func() bool {
		for _, r := range rs {
			if r.State() != resilient.StateDisabled || r.Local().State() != resilient.StateDisabled {
				return false
			}
		}
		return true
	}, "the replicas did not converge")
}

func TestOpenBackoffDoublesPerFailedRound(t *testing.T) {
	srv := startRedis(t, false)
	const open = 100 * time.Millisecond
	b := newTestBreaker(t, srv.Client(), "backoff", fast(WithOpenDuration(open), WithOpenBackoff(4*open))...)
	trip(t, b)
	for round, want := range []time.Duration{2 * open, 4 * open, 4 * open} {
		var probe resilient.Permit
		eventually(t, 3*time.Second, func() bool {
			p, err := b.Admit(context.Background(), 1)
			probe = p
			return err == nil && p.Token&tokProbe != 0
		}, "no probe")
		b.Done(probe, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream})
		_, err := b.Admit(context.Background(), 1)
		var oe *resilient.OpenError
		require.ErrorAs(t, err, &oe, "round %d", round)
		assert.Greater(t, oe.RetryAfter(), want-open/2, "round %d", round)
		assert.LessOrEqual(t, oe.RetryAfter(), want, "round %d", round)
	}
}

// Regression: Close cancelled the context of a sync under way, and the
// counts it had taken were dropped if the cancellation beat the call to
// Redis (seen as 4716 calls out of 4800 under load).
func TestCloseDuringASyncLosesNoCounts(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	const breakers, calls = 40, 50
	for i := range breakers {
		b, err := NewBreaker(rdb, "close-race", WithTimeout(time.Second), WithSyncInterval(time.Millisecond),
			WithMinCalls(1<<30), WithLocalOptions(resilient.WithMinCalls(1<<20)), WithKeyTTL(time.Minute))
		require.NoError(t, err)
		for range calls {
			p, err := b.Admit(context.Background(), 1)
			require.NoError(t, err)
			b.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})
		}
		if i%2 == 1 {
			time.Sleep(time.Duration(i%5) * 100 * time.Microsecond) // spread Close over the sync's phases
		}
		require.NoError(t, b.Close())
	}
	fields, err := rdb.HGetAll(context.Background(), "resilient:{close-race}:window").Result()
	require.NoError(t, err)
	var total int
	for k, v := range fields {
		if strings.HasSuffix(k, ":c") {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			total += n
		}
	}
	assert.Equal(t, breakers*calls, total)
}
