package resilient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var errBrBoom = errors.New("boom")

// call makes one call through the two-brStep API; it reports whether the
// call was admitted.
func brCall(b *Breaker, err error) bool {
	p, aerr := b.Allow()
	if aerr != nil {
		return false
	}
	b.Record(p, err)
	return true
}

// brDoCall is brCall through Do, with an executor whose only policy is b:
// Do's own path for a lone breaker, which reads its state directly and
// records a success without a Report. context.Canceled is the caller's own
// cancellation, as Record takes it.
func brDoCall(b *Breaker, err error) bool {
	v, _ := brExecutors.LoadOrStore(b, MustNew(WithBreaker(b), WithAttempts(1)))
	ex := v.(*Executor) // one per breaker, so that its cached refusal is used
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, derr := Do(ctx, func(context.Context) (int, error) {
		if errors.Is(err, context.Canceled) {
			cancel()
		}
		return 1, err
	}, ex)
	if !errors.Is(derr, stripMarkers(err)) && !errors.Is(derr, ErrRejected) {
		panic(fmt.Sprintf("Do returned %v for %v", derr, err))
	}
	if errors.Is(derr, ErrRejected) {
		var oe *OpenError
		if !errors.As(derr, &oe) || oe != b.refusal.Load() {
			panic(fmt.Sprintf("Do refused with %v, not the breaker's current refusal", derr))
		}
		return false
	}
	return true
}

// brExecutors holds brDoCall's executor for each breaker.
var brExecutors sync.Map

// brVias are the ways a test's calls reach a breaker: its two-step API, and
// Do's lone-breaker path.
var brVias = []struct {
	name string
	call func(*Breaker, error) bool
}{{"Allow", brCall}, {"Do", brDoCall}}

func brCalls(b *Breaker, n int, err error) {
	for range n {
		brCall(b, err)
	}
}

func TestBreakerInvalidOptions(t *testing.T) {
	nan := func() float64 { var z float64; return z / z }()
	cases := []struct {
		name string
		opts []BreakerOption
		want string
	}{
		{"rate zero", []BreakerOption{WithFailureRate(0)}, "resilient: WithFailureRate: rate must be in (0, 1], got 0"},
		{"rate above one", []BreakerOption{WithFailureRate(1.5)}, "resilient: WithFailureRate: rate must be in (0, 1], got 1.5"},
		{"rate NaN", []BreakerOption{WithFailureRate(nan)}, "resilient: WithFailureRate: rate must be in (0, 1], got NaN"},
		{"rate negative", []BreakerOption{WithFailureRate(-0.1)}, "resilient: WithFailureRate:"},
		{"slow threshold zero", []BreakerOption{WithSlowCalls(0, 0.5)}, "resilient: WithSlowCalls: threshold must be > 0"},
		{"slow rate NaN", []BreakerOption{WithSlowCalls(time.Second, nan)}, "resilient: WithSlowCalls: rate must be in (0, 1]"},
		{"consecutive zero", []BreakerOption{WithConsecutiveFailures(0)}, "resilient: WithConsecutiveFailures: n must be >= 1, got 0"},
		{"count window zero", []BreakerOption{WithCountWindow(0)}, "resilient: WithCountWindow: n must be in [1, 1048576], got 0"},
		{"count window negative", []BreakerOption{WithCountWindow(-5)}, "resilient: WithCountWindow:"},
		{"time window zero", []BreakerOption{WithTimeWindow(0, 10)}, "resilient: WithTimeWindow: d must be > 0, got 0s"},
		{"time window negative", []BreakerOption{WithTimeWindow(-time.Second, 10)}, "resilient: WithTimeWindow: d must be > 0"},
		{"time buckets zero", []BreakerOption{WithTimeWindow(time.Second, 0)}, "resilient: WithTimeWindow: buckets must be in [1, 1000], got 0"},
		{"time bucket too short", []BreakerOption{WithTimeWindow(time.Millisecond, 10)}, "resilient: WithTimeWindow: a bucket (d/buckets) must be at least 1ms"},
		{"min calls zero", []BreakerOption{WithMinCalls(0)}, "resilient: WithMinCalls: n must be >= 1, got 0"},
		{"min calls above window", []BreakerOption{WithCountWindow(10), WithMinCalls(11)}, "resilient: WithMinCalls: n must not exceed the count window (10), got 11"},
		{"min calls above window, any order", []BreakerOption{WithMinCalls(11), WithCountWindow(10)}, "resilient: WithMinCalls:"},
		{"open duration zero", []BreakerOption{WithOpenDuration(0)}, "resilient: WithOpenDuration: d must be > 0, got 0s"},
		{"backoff below open", []BreakerOption{WithOpenDuration(time.Minute), WithOpenBackoff(time.Second, NoJitter)}, "resilient: WithOpenBackoff: max must be >= the open duration (1m0s), got 1s"},
		{"backoff bad jitter", []BreakerOption{WithOpenBackoff(time.Hour, ProportionalJitter(2))}, "resilient: WithOpenBackoff: ProportionalJitter"},
		{"hint max zero", []BreakerOption{WithOpenFromHint(0)}, "resilient: WithOpenFromHint: max must be > 0"},
		{"probes zero", []BreakerOption{WithHalfOpenProbes(0)}, "resilient: WithHalfOpenProbes: n must be in [1, 65535], got 0"},
		{"probes too many", []BreakerOption{WithHalfOpenProbes(1 << 16)}, "resilient: WithHalfOpenProbes:"},
		{"successes zero", []BreakerOption{WithHalfOpenSuccesses(0)}, "resilient: WithHalfOpenSuccesses: m must be in [1, 65535], got 0"},
		{"max wait zero", []BreakerOption{WithHalfOpenMaxWait(0)}, "resilient: WithHalfOpenMaxWait: d must be > 0, got 0s"},
		{"nil listener", []BreakerOption{WithStateListener(nil)}, "resilient: WithStateListener: nil listener"},
		{"nil store", []BreakerOption{WithStore(nil)}, "resilient: WithStore: nil store"},
		{"store without name", []BreakerOption{WithStore(NewMemoryStore())}, "resilient: WithStore: the breaker needs a name"},
		{"nil option", []BreakerOption{nil}, "resilient: NewBreaker: nil option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBreaker(tc.opts...)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), "got %q, want prefix %q", err, tc.want)
			assert.Panics(t, func() { MustNewBreaker(tc.opts...) })
		})
	}
	_, err := New(WithBreaker(nil))
	assert.EqualError(t, err, "resilient: WithBreaker: nil breaker")
}

func TestBreakerValidEdges(t *testing.T) {
	for _, opts := range [][]BreakerOption{
		{WithFailureRate(1)},
		{WithCountWindow(1)},
		{WithCountWindow(10), WithMinCalls(10)},
		{WithTimeWindow(time.Millisecond, 1), WithMinCalls(1000)},
		{WithHalfOpenProbes(MaxProbes), WithHalfOpenSuccesses(MaxProbes)},
		{WithOpenDuration(time.Second), WithOpenBackoff(time.Second, FullJitter)},
	} {
		_, err := NewBreaker(opts...)
		assert.NoError(t, err)
	}
}

// brStep is one step of a state-machine table.
type brStep struct {
	ok, fail, ignore int           // calls made (admitted or not)
	wait             time.Duration // fake time passed
	want             State
	rejected         int // how many of this brStep's calls must be refused
}

func brRunSteps(t *testing.T, b *Breaker, call func(*Breaker, error) bool, steps []brStep) {
	t.Helper()
	for i, s := range steps {
		refused := 0
		for range s.ok {
			if !call(b, nil) {
				refused++
			}
		}
		for range s.fail {
			if !call(b, errBrBoom) {
				refused++
			}
		}
		for range s.ignore {
			if !call(b, context.Canceled) {
				refused++
			}
		}
		if s.wait > 0 {
			time.Sleep(s.wait)
			synctest.Wait()
		}
		assert.Equal(t, s.want, b.State(), "step %d", i)
		assert.Equal(t, s.rejected, refused, "step %d: refused", i)
	}
}

func TestBreakerStateMachine(t *testing.T) {
	base := []BreakerOption{WithCountWindow(10), WithMinCalls(4), WithFailureRate(0.5), WithOpenDuration(10 * time.Second)}
	opts := func(more ...BreakerOption) []BreakerOption { return append(base[:len(base):len(base)], more...) }
	cases := []struct {
		name  string
		opts  []BreakerOption
		steps []brStep
	}{
		{"below min calls stays closed", opts(), []brStep{
			{fail: 3, want: StateClosed},
		}},
		{"rate reached at min calls opens", opts(), []brStep{
			{ok: 2, fail: 1, want: StateClosed},
			{fail: 1, want: StateOpen},
			{ok: 3, want: StateOpen, rejected: 3},
		}},
		{"rate below threshold stays closed", opts(), []brStep{
			{ok: 6, fail: 3, want: StateClosed},
		}},
		{"old failures leave the count window", opts(), []brStep{
			{fail: 3, ok: 7, want: StateClosed},
			{ok: 10, want: StateClosed},
			{fail: 4, want: StateClosed}, // 4 of the last 10
			{fail: 1, want: StateOpen},
		}},
		{"ignored calls count neither way", opts(), []brStep{
			{ignore: 20, fail: 3, want: StateClosed},
			// The fourth call counted, a success, brings the window to its
			// minimum: 3 of 4 failed.
			{ok: 1, ignore: 5, want: StateOpen, rejected: 5},
		}},
		{"consecutive failures open without min calls", opts(WithMinCalls(10), WithConsecutiveFailures(3)), []brStep{
			{fail: 2, want: StateClosed},
			{ok: 1, want: StateClosed}, // a success breaks the run
			{fail: 2, want: StateClosed},
			{fail: 1, want: StateOpen},
		}},
		{"open turns half-open by itself", opts(), []brStep{
			{fail: 4, want: StateOpen},
			{wait: 9 * time.Second, want: StateOpen},
			{wait: time.Second, want: StateHalfOpen},
		}},
		{"probe success closes", opts(), []brStep{
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen},
			{ok: 1, want: StateClosed},
			{fail: 3, want: StateClosed}, // a fresh window
		}},
		{"probe failure reopens for the open duration", opts(), []brStep{
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen},
			{fail: 1, want: StateOpen},
			{wait: 9 * time.Second, want: StateOpen},
			{wait: time.Second, want: StateHalfOpen},
		}},
		{"ignored probe changes nothing", opts(), []brStep{
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen},
			{ignore: 3, want: StateHalfOpen},
			{ok: 1, want: StateClosed},
		}},
		{"several successes needed", opts(WithHalfOpenSuccesses(3)), []brStep{
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen},
			{ok: 2, want: StateHalfOpen},
			{ok: 1, want: StateClosed},
		}},
		{"time window: successes dilute failures", opts(WithTimeWindow(10*time.Second, 10)), []brStep{
			{ok: 5, fail: 4, want: StateClosed},
			{fail: 1, want: StateOpen}, // 5 of 10
		}},
		{"time window: old calls leave it", opts(WithTimeWindow(10*time.Second, 10)), []brStep{
			{ok: 20, fail: 3, wait: 10 * time.Second, want: StateClosed},
			{fail: 1, want: StateClosed}, // below min calls again
			{ok: 1, fail: 2, want: StateOpen},
		}},
		{"time window: a success breaks a run", opts(WithTimeWindow(10*time.Second, 10), WithMinCalls(10), WithConsecutiveFailures(3)), []brStep{
			{fail: 2, want: StateClosed},
			{ok: 1, want: StateClosed},
			{fail: 2, want: StateClosed},
			{fail: 1, want: StateOpen},
		}},
		{"open backoff doubles up to max", opts(WithOpenBackoff(35*time.Second, NoJitter)), []brStep{
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen}, // first opening: 10s
			{fail: 1, wait: 19 * time.Second, want: StateOpen},     // one failed round: 20s
			{wait: time.Second, want: StateHalfOpen},
			{fail: 1, wait: 34 * time.Second, want: StateOpen}, // two: 40s capped at 35s
			{wait: time.Second, want: StateHalfOpen},
			{ok: 1, want: StateClosed},
			{fail: 4, wait: 10 * time.Second, want: StateHalfOpen}, // reset by success
		}},
	}
	for _, via := range brVias {
		for _, tc := range cases {
			t.Run(via.name+"/"+tc.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					b, err := NewBreaker(tc.opts...)
					require.NoError(t, err)
					brRunSteps(t, b, via.call, tc.steps)
					b.Reset()
				})
			})
		}
	}
}

func TestBreakerTimeWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := NewBreaker(WithTimeWindow(10*time.Second, 10), WithMinCalls(4), WithFailureRate(0.5))
		require.NoError(t, err)
		brCalls(b, 3, errBrBoom)
		m := b.Metrics()
		assert.Equal(t, 3, m.Calls)
		assert.Equal(t, 3, m.Failures)
		assert.InDelta(t, 1.0, m.FailureRate, 1e-9)

		// Calls leave the window between 9s and 10s after they were made.
		time.Sleep(9 * time.Second)
		synctest.Wait()
		assert.Equal(t, 3, b.Metrics().Calls, "still inside the window at 9s")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, 0, b.Metrics().Calls, "gone at 10s")

		// An empty window stops its timer; the next call starts it again.
		w := b.win.Load()
		assert.False(t, w.ticking.Load(), "an idle window holds no timer")
		brCalls(b, 3, errBrBoom)
		assert.True(t, w.ticking.Load())
		assert.Equal(t, StateClosed, b.State())
		brCall(b, errBrBoom)
		assert.Equal(t, StateOpen, b.State())
		assert.Equal(t, 4, b.Metrics().Failures, "an open breaker shows the counts that tripped it")
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, 4, b.Metrics().Failures, "counts of a retired window freeze")
		assert.Equal(t, StateHalfOpen, b.State())
	})
}

func TestBreakerTimeWindowSpreadsOverBuckets(t *testing.T) {
	for _, via := range brVias {
		t.Run(via.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := MustNewBreaker(WithTimeWindow(4*time.Second, 4), WithMinCalls(1))
				for i := range 6 {
					via.call(b, nil)
					assert.Equal(t, min(i+1, 4), b.Metrics().Calls, "after %d seconds", i)
					time.Sleep(time.Second)
					synctest.Wait()
				}
				time.Sleep(4 * time.Second)
				synctest.Wait()
				assert.Equal(t, 0, b.Metrics().Calls)
				assert.False(t, b.win.Load().ticking.Load())
			})
		})
	}
}

func TestBreakerSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithCountWindow(4), WithMinCalls(4), WithSlowCalls(time.Second, 0.5), WithOpenDuration(time.Second))
		assert.True(t, b.NeedsDuration())
		ok := func(d time.Duration) {
			p, err := b.Allow()
			require.NoError(t, err)
			b.Done(p, Report{Outcome: Success, Duration: d})
		}
		ok(10 * time.Millisecond)
		ok(time.Second) // slow, though it succeeded
		ok(999 * time.Millisecond)
		assert.Equal(t, StateClosed, b.State())
		assert.Equal(t, 1, b.Metrics().SlowCalls)
		ok(2 * time.Second)
		assert.Equal(t, StateOpen, b.State())
		m := b.Metrics()
		assert.InDelta(t, 0.5, m.SlowCallRate, 1e-9)
		assert.Equal(t, 0, m.Failures)

		// A slow probe is a failed probe.
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())
		ok(3 * time.Second)
		assert.Equal(t, StateOpen, b.State())
		b.Reset()
	})
	assert.False(t, MustNewBreaker().NeedsDuration(), "no slow-call threshold: no clock")
}

func TestBreakerOpenFromHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(10*time.Second), WithOpenFromHint(time.Minute))
		p, err := b.Allow()
		require.NoError(t, err)
		b.Done(p, Report{Outcome: Retry, Err: RetryAfter(errBrBoom, 3*time.Second)})
		require.Equal(t, StateOpen, b.State())

		_, err = b.Allow()
		var oe *OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, 3*time.Second, oe.RetryAfter())
		assert.Equal(t, errBrBoom, oe.Cause, "the cause is the caller's error, markers removed")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Equal(t, StateHalfOpen, b.State())

		// A hint beyond the cap is capped.
		p, err = b.Allow()
		require.NoError(t, err)
		b.Done(p, Report{Outcome: Fail, Err: RetryAfter(errBrBoom, time.Hour)})
		_, err = b.Allow()
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, time.Minute, oe.RetryAfter())
		b.Reset()
	})
}

func TestBreakerOpenBackoffJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(10*time.Second),
			WithOpenBackoff(time.Hour, ProportionalJitter(0.2)))
		brCall(b, errBrBoom)
		want := 10 * time.Second
		for round := range 4 {
			until := b.Snapshot().OpenUntil
			d := time.Until(until)
			assert.GreaterOrEqual(t, d, want*8/10, "round %d", round)
			assert.Less(t, d, want*12/10, "round %d", round)
			time.Sleep(d)
			synctest.Wait()
			require.Equal(t, StateHalfOpen, b.State())
			brCall(b, errBrBoom) // a failed probe
			want *= 2
		}
		b.Reset()
	})
}

func TestBreakerHalfOpenMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec brRecorder
		b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(10*time.Second),
			WithHalfOpenMaxWait(5*time.Second), WithStateListener(rec.listen))
		brCall(b, errBrBoom)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())

		// Idle half-open: no probe, no timer, it waits for a call.
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())

		hung, err := b.Allow() // a probe that will never report in time
		require.NoError(t, err)
		_, err = b.Allow()
		require.ErrorIs(t, err, ErrOpen, "one probe at a time")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Equal(t, StateOpen, b.State())
		events := rec.get()
		last := events[len(events)-1]
		assert.ErrorIs(t, last.Cause, ErrProbeTimeout)
		assert.Equal(t, 1, last.Metrics.Probes)

		b.Record(hung, nil) // late: ignored
		assert.Equal(t, StateOpen, b.State())
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())
		assert.Equal(t, 0, b.Metrics().Probes, "the late result did not touch the new round")
		b.Reset()
	})
}

func TestBreakerStaleResultsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithCountWindow(4), WithMinCalls(2), WithOpenDuration(time.Second))
		var old []Permit
		for range 3 {
			p, err := b.Allow()
			require.NoError(t, err)
			old = append(old, p)
		}
		brCalls(b, 2, errBrBoom)
		require.Equal(t, StateOpen, b.State())
		time.Sleep(time.Second)
		synctest.Wait()
		brCall(b, nil)
		require.Equal(t, StateClosed, b.State())
		for _, p := range old { // admitted two generations ago
			b.Record(p, errBrBoom)
		}
		b.Record(Permit{}, errBrBoom) // never admitted
		m := b.Metrics()
		assert.Equal(t, 0, m.Calls)
		assert.Equal(t, StateClosed, m.State)

		// A second report of a lone probe finds no probe in flight: ignored.
		brCalls(b, 2, errBrBoom)
		time.Sleep(time.Second)
		synctest.Wait()
		p, err := b.Allow()
		require.NoError(t, err)
		b.Done(p, Report{Outcome: Ignore})
		b.Done(p, Report{Outcome: Ignore})
		assert.Equal(t, 0, b.Metrics().Probes)
		q, err := b.Allow()
		require.NoError(t, err)
		_, err = b.Allow()
		assert.ErrorIs(t, err, ErrOpen)
		b.Record(q, nil)
		assert.Equal(t, StateClosed, b.State())
	})
}

func TestBreakerManual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithBreakerName("users"), WithCountWindow(4), WithMinCalls(2))

		b.ForceOpen()
		assert.Equal(t, StateForcedOpen, b.State())
		_, err := b.Allow()
		var oe *OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, StateForcedOpen, oe.State)
		assert.Equal(t, `resilient: breaker "users": forced-open`, err.Error())
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		assert.Equal(t, StateForcedOpen, b.State(), "stays open until reset")

		b.Disable()
		assert.Equal(t, StateDisabled, b.State())
		brCalls(b, 10, errBrBoom)
		m := b.Metrics()
		assert.Equal(t, StateDisabled, m.State, "never opens")
		assert.Equal(t, 4, m.Calls, "still measuring")
		assert.Equal(t, 4, m.Failures)
		assert.Equal(t, 10, m.ConsecutiveFailures)

		b.Reset()
		assert.Equal(t, StateClosed, b.State())
		assert.Equal(t, 0, b.Metrics().Calls, "a fresh window")
		brCalls(b, 2, errBrBoom)
		assert.Equal(t, StateOpen, b.State())
		b.Reset()
		assert.Equal(t, StateClosed, b.State())
		b.mu.Lock()
		assert.Nil(t, b.timer, "a closed breaker holds no timer")
		b.mu.Unlock()
	})
}

func TestBreakerOpenError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithBreakerName("users"), WithConsecutiveFailures(1), WithOpenDuration(3*time.Second))
		brCall(b, io.ErrUnexpectedEOF)
		_, err := b.Allow()
		require.ErrorIs(t, err, ErrOpen)
		assert.NotErrorIs(t, err, io.ErrUnexpectedEOF, "a refusal does not match the cause")
		var oe *OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "users", oe.Name)
		assert.Equal(t, StateOpen, oe.State)
		assert.Equal(t, io.ErrUnexpectedEOF, oe.Cause)
		assert.Equal(t, `resilient: breaker "users": open, retry in 3s: unexpected EOF`, err.Error())
		time.Sleep(time.Second)
		assert.Equal(t, 2*time.Second, oe.RetryAfter())
		assert.Equal(t, 2*time.Second, hintOf(err), "a refusal is a hint for outer executors")

		time.Sleep(2 * time.Second)
		synctest.Wait()
		p, err := b.Allow()
		require.NoError(t, err)
		_, err = b.Allow()
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, StateHalfOpen, oe.State)
		assert.Equal(t, time.Duration(0), oe.RetryAfter())
		assert.Equal(t, `resilient: breaker "users": half-open, probes in flight: unexpected EOF`, err.Error())
		b.Record(p, nil)

		anon := &OpenError{State: StateForcedOpen}
		assert.Equal(t, "resilient: breaker: forced-open", anon.Error())
	})
}

func TestBreakerStateText(t *testing.T) {
	for s := StateClosed; s < numStates; s++ {
		txt, err := s.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, s.String(), string(txt))
		var back State
		require.NoError(t, back.UnmarshalText(txt))
		assert.Equal(t, s, back)
	}
	_, err := numStates.MarshalText()
	assert.Error(t, err)
	assert.Equal(t, "state(5)", numStates.String())
	var s State
	assert.EqualError(t, s.UnmarshalText([]byte("ajar")), `resilient: unknown breaker state "ajar"`)
}

func TestBreakerListeners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			b      atomic.Pointer[Breaker]
			rec    brRecorder
			mu     sync.Mutex
			inside []State
		)
		b.Store(MustNewBreaker(WithBreakerName("api"), WithCountWindow(4), WithMinCalls(4), WithOpenDuration(time.Second),
			WithStateListener(func(tr Transition) {
				rec.listen(tr)
				if b := b.Load(); b != nil { // calling back into the breaker does not deadlock
					mu.Lock()
					inside = append(inside, b.State())
					mu.Unlock()
					_ = b.Metrics()
					_ = b.Snapshot()
					if tr.To == StateHalfOpen {
						b.ForceOpen() // a change made by a listener comes after this event
					}
				}
			})))
		events := rec.get()
		require.Len(t, events, 1, "one initial event")
		assert.Equal(t, Transition{Name: "api", From: StateClosed, To: StateClosed, At: time.Now(),
			Metrics: BreakerMetrics{Since: time.Now()}}, events[0])

		brCalls(b.Load(), 1, nil)
		brCalls(b.Load(), 3, errBrBoom)
		events = rec.get()
		require.Len(t, events, 2)
		trip := events[1]
		assert.Equal(t, StateClosed, trip.From)
		assert.Equal(t, StateOpen, trip.To)
		assert.Equal(t, errBrBoom, trip.Cause)
		assert.Equal(t, 4, trip.Metrics.Calls, "the counts that tripped it")
		assert.Equal(t, 3, trip.Metrics.Failures)
		assert.InDelta(t, 0.75, trip.Metrics.FailureRate, 1e-9)
		assert.Equal(t, 3, trip.Metrics.ConsecutiveFailures)

		time.Sleep(time.Second)
		synctest.Wait()
		events = rec.get()
		require.Len(t, events, 4)
		assert.Equal(t, StateHalfOpen, events[2].To)
		assert.Equal(t, time.Second, events[2].Metrics.InState, "time spent open")
		assert.Equal(t, StateForcedOpen, events[3].To)
		assert.Equal(t, StateHalfOpen, events[3].From)
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []State{StateOpen, StateHalfOpen, StateForcedOpen}, inside,
			"each listener call sees the state its event led to, or a later one")
	})
}

func TestBreakerListenerPanicDoesNotStopDelivery(t *testing.T) {
	var n int
	b := MustNewBreaker(WithStateListener(func(tr Transition) {
		n++
		if tr.To == StateForcedOpen {
			panic("listener")
		}
	}))
	assert.Panics(t, b.ForceOpen)
	b.Reset()
	assert.Equal(t, 3, n)
	assert.Equal(t, StateClosed, b.State())
}

func TestBreakerStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		opts := []BreakerOption{WithBreakerName("users"), WithStore(store), WithConsecutiveFailures(2), WithOpenDuration(time.Minute)}
		b := MustNewBreaker(opts...)
		_, ok, err := store.Load(t.Context(), "users")
		require.NoError(t, err)
		assert.False(t, ok, "nothing saved before a change")

		brCalls(b, 2, errBrBoom)
		require.Equal(t, StateOpen, b.State())
		s, ok, err := store.Load(t.Context(), "users")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, Snapshot{Version: 1, State: StateOpen, Since: time.Now(), OpenUntil: time.Now().Add(time.Minute), Cause: "boom"}, s)
		assert.Equal(t, s, b.Snapshot())

		// A restart 20s later: open for the 40s left.
		time.Sleep(20 * time.Second)
		b2, err := NewBreaker(opts...)
		require.NoError(t, err)
		assert.Equal(t, StateOpen, b2.State())
		_, err = b2.Allow()
		var oe *OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, 40*time.Second, oe.RetryAfter())
		assert.EqualError(t, oe.Cause, "boom")
		assert.Equal(t, 20*time.Second, b2.Metrics().InState, "time in state survives")
		time.Sleep(40 * time.Second)
		synctest.Wait()
		assert.Equal(t, StateHalfOpen, b2.State())
		s, _, _ = store.Load(t.Context(), "users")
		assert.Equal(t, StateHalfOpen, s.State, "saved on every change")

		// A restart after the open duration passed: half-open at once.
		time.Sleep(time.Hour)
		require.NoError(t, store.Save(t.Context(), "users", Snapshot{Version: 1, State: StateOpen, OpenUntil: time.Now().Add(-time.Second)}))
		b3 := MustNewBreaker(opts...)
		assert.Equal(t, StateHalfOpen, b3.State())
		brCall(b3, nil)
		assert.Equal(t, StateClosed, b3.State())

		for _, st := range []State{StateForcedOpen, StateDisabled, StateClosed, StateHalfOpen} {
			require.NoError(t, store.Save(t.Context(), "users", Snapshot{Version: 1, State: st}))
			assert.Equal(t, st, MustNewBreaker(opts...).State())
		}
		b.Reset()
		b2.Reset()
	})
}

type failingStore struct{ err error }

func (s failingStore) Load(context.Context, string) (Snapshot, bool, error) {
	return Snapshot{}, false, s.err
}
func (s failingStore) Save(context.Context, string, Snapshot) error { return s.err }

func TestBreakerStoreErrors(t *testing.T) {
	_, err := NewBreaker(WithBreakerName("x"), WithStore(failingStore{errBrBoom}))
	require.ErrorIs(t, err, errBrBoom)
	assert.EqualError(t, err, `resilient: WithStore: load "x": boom`)

	store := NewMemoryStore()
	require.NoError(t, store.Save(t.Context(), "x", Snapshot{Version: 99}))
	_, err = NewBreaker(WithBreakerName("x"), WithStore(store))
	assert.EqualError(t, err, `resilient: breaker "x": snapshot version 99, want 1`)

	b := MustNewBreaker()
	assert.Error(t, b.Restore(Snapshot{Version: 1, State: numStates}))
	assert.Equal(t, StateClosed, b.State(), "a bad snapshot changes nothing")
}

func TestBreakerSnapshotJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	s := Snapshot{Version: 1, State: StateOpen, Since: at, OpenUntil: at.Add(30 * time.Second), Rounds: 2, Cause: "connection refused"}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":1,"state":"open","since":"2026-01-02T15:04:05Z","open_until":"2026-01-02T15:04:35Z","rounds":2,"cause":"connection refused"}`, string(b))
	var back Snapshot
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, s, back)

	b, err = json.Marshal(Snapshot{Version: 1, State: StateClosed, Since: at})
	require.NoError(t, err)
	assert.JSONEq(t, `{"v":1,"state":"closed","since":"2026-01-02T15:04:05Z"}`, string(b))
}

func TestBreakerRestoreAtRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec brRecorder
		b := MustNewBreaker(WithStateListener(rec.listen))
		require.NoError(t, b.Restore(Snapshot{Version: 1, State: StateOpen, OpenUntil: time.Now().Add(5 * time.Second), Cause: "elsewhere"}))
		assert.Equal(t, StateOpen, b.State())
		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, StateHalfOpen, b.State())
		assert.Equal(t, []State{StateClosed, StateOpen, StateHalfOpen}, rec.states())
		b.Reset()
	})
}

func TestBreakerThroughDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithCountWindow(10), WithMinCalls(3), WithOpenDuration(time.Minute))
		ex := MustNew(WithBreaker(b), WithAttempts(5), WithBackoff(Constant(time.Millisecond)))
		n := 0
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			n++
			return 0, errBrBoom
		}, ex)
		require.Error(t, err)
		assert.Equal(t, 3, n, "the breaker counts attempts and opens after the third")
		var de *Error
		require.ErrorAs(t, err, &de)
		assert.Equal(t, ReasonRejected, de.Reason)
		assert.Equal(t, 3, de.Attempts)
		assert.ErrorIs(t, err, ErrOpen)
		assert.ErrorIs(t, err, errBrBoom, "the last attempt's error is kept")

		// Open: refused at once, fn never called, not retried.
		n = 0
		_, err = Do(t.Context(), func(context.Context) (int, error) { n++; return 1, nil }, ex)
		require.ErrorAs(t, err, &de)
		assert.Equal(t, 0, n)
		assert.Equal(t, 0, de.Attempts)
		assert.ErrorIs(t, err, ErrOpen)
		assert.ErrorIs(t, err, ErrRejected)

		// The caller's cancellation counts neither way.
		b.Reset()
		ctx, cancel := context.WithCancel(t.Context())
		_, err = Do(ctx, func(context.Context) (int, error) { cancel(); return 0, context.Canceled }, ex)
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 0, b.Metrics().Calls)

		// Success counts.
		v, err := Do(t.Context(), func(context.Context) (int, error) { return 7, nil }, ex)
		require.NoError(t, err)
		assert.Equal(t, 7, v)
		assert.Equal(t, 1, b.Metrics().Calls)
	})
}

func TestBreakerPanicReleasesPermit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(time.Second))
		ex := MustNew(WithBreaker(b))
		boom := func(context.Context) (int, error) { panic("kaboom") }
		assert.PanicsWithValue(t, "kaboom", func() { _, _ = Do(t.Context(), boom, ex) })
		assert.Equal(t, StateOpen, b.State(), "the panic was recorded as a failure")
		var oe *OpenError
		_, err := b.Allow()
		require.ErrorAs(t, err, &oe)
		assert.ErrorIs(t, oe.Cause, ErrPanicked)

		// In half-open, a panicking probe gives its slot back (reopening).
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())
		assert.Panics(t, func() { _, _ = Do(t.Context(), boom, ex) })
		assert.Equal(t, StateOpen, b.State())
		assert.Equal(t, 0, b.Metrics().Probes)
		b.Reset()
	})
}

func TestBreakerHotPathAllocs(t *testing.T) {
	b := MustNewBreaker(WithCountWindow(10))
	ok := func() {
		p, err := b.Allow()
		if err != nil {
			panic(err)
		}
		b.Record(p, nil)
	}
	for range 20 {
		ok()
	}
	assert.Zero(t, testing.AllocsPerRun(1000, ok), "closed success")

	tb := MustNewBreaker(WithTimeWindow(time.Minute, 10))
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		p, _ := tb.Allow()
		tb.Record(p, nil)
	}), "closed success, time window")
	tb.Reset()

	b.ForceOpen()
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		if _, err := b.Allow(); err == nil {
			panic("admitted")
		}
	}), "open rejection")
	b.Reset()

	ex := MustNew(WithBreaker(b))
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = Do(ctx, fn, ex) }), "through Do")
	b.ForceOpen()
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		if _, err := Do(ctx, fn, ex); err == nil {
			panic("admitted")
		}
	}), "refused through Do")
	b.Reset()

	tex := MustNew(WithBreaker(tb))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = Do(ctx, fn, tex) }), "through Do, time window")
	tb.Reset()

	// Regression: each failure kept itself as the window's last failure,
	// which made it escape: two allocations for two failures then a
	// success. Failures are counted without allocating, in both windows.
	flaky := func(ex *Executor) func() {
		return func() {
			n := 0
			_, _ = Do(ctx, func(context.Context) (int, error) {
				if n++; n < 3 {
					return 0, errBrBoom
				}
				return 1, nil
			}, ex)
		}
	}
	for name, br := range map[string]*Breaker{
		"count": MustNewBreaker(WithCountWindow(100), WithMinCalls(10), WithFailureRate(1)),
		"time":  MustNewBreaker(WithTimeWindow(time.Hour, 10), WithMinCalls(10), WithFailureRate(1)),
	} {
		rex := MustNew(WithBreaker(br), WithAttempts(3), WithBackoff(Constant(0)))
		for range 20 {
			flaky(rex)()
		}
		assert.Zero(t, testing.AllocsPerRun(1000, flaky(rex)), "two failures then a success, %s window", name)
		br.stop()
	}
}

// TestBreakerStaleSuccessIgnored checks Do's direct success path: a success
// admitted in an earlier closed period is not counted in the current one.
func TestBreakerStaleSuccessIgnored(t *testing.T) {
	for _, win := range []BreakerOption{WithCountWindow(4), WithTimeWindow(time.Minute, 6)} {
		synctest.Test(t, func(t *testing.T) {
			b := MustNewBreaker(win, WithMinCalls(1), WithOpenDuration(time.Second))
			old := wordGen(b.word.Load()) << 1
			brCall(b, errBrBoom)
			time.Sleep(time.Second)
			synctest.Wait()
			brCall(b, nil) // the probe closes it
			require.Equal(t, StateClosed, b.State())
			b.closedSuccess(old)
			assert.Equal(t, 0, b.Metrics().Calls)
			b.closedSuccess(wordGen(b.word.Load()) << 1)
			assert.Equal(t, 1, b.Metrics().Calls)
			b.Reset()
		})
	}
}

// TestBreakerCalmWindowKeepsFailureRun replays a success and a failure
// recorded at the same moment on a full count window: the success clears
// consec before the failure adds to it, and writes its slot after the
// failure's. The ring then holds only successes, with consec at 1: the next
// success through Do must still be recorded, to end that run, or one later
// failure would count as the second in a row.
func TestBreakerCalmWindowKeepsFailureRun(t *testing.T) {
	b := MustNewBreaker(WithCountWindow(2), WithMinCalls(2), WithConsecutiveFailures(2), WithFailureRate(1))
	brDoCall(b, nil)
	brDoCall(b, nil)
	w := b.win.Load()
	w.consec.Add(1)              // the failure's add
	w.put(slotFilled | slotFail) // the failure's slot
	w.put(slotFilled)            // the two successes' slots, written last
	w.put(slotFilled)
	require.Zero(t, w.fails.Load())
	require.EqualValues(t, 1, w.consec.Load())
	for range 10 {
		brDoCall(b, nil)
	}
	assert.Zero(t, b.Metrics().ConsecutiveFailures, "a success ends the run")
	brDoCall(b, errBrBoom)
	assert.Equal(t, StateClosed, b.State(), "one failure after ten successes")
}

func TestBreakerHotPathWritesNothing(t *testing.T) {
	b := MustNewBreaker(WithCountWindow(4))
	brCalls(b, 4, nil)
	w := b.win.Load()
	before := w.next.Load()
	brCalls(b, 100, nil)
	assert.Equal(t, before, w.next.Load(), "a full window of successes is not written to")
	brCall(b, errBrBoom)
	brCalls(b, 4, nil)
	assert.Equal(t, 0, b.Metrics().Failures, "successes push the failure out")
	assert.Equal(t, 4, b.Metrics().Calls)
}

// TestBreakerProbeHammer proves that half-open never has more than N
// probes in flight, and exactly N when callers crowd in.
func TestBreakerProbeHammer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const probes, goroutines = 3, 300
	b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(time.Millisecond),
		WithHalfOpenProbes(probes), WithHalfOpenSuccesses(MaxProbes), WithHalfOpenMaxWait(time.Hour))
	brCall(b, errBrBoom)
	require.Eventually(t, func() bool { return b.State() == StateHalfOpen }, 5*time.Second, time.Millisecond)

	// Phase 1: everyone at once, probes held: exactly N admitted.
	var (
		start    = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted []Permit
		refused  int
	)
	for range goroutines {
		wg.Go(func() {
			<-start
			p, err := b.Allow()
			mu.Lock()
			if err != nil {
				refused++
			} else {
				admitted = append(admitted, p)
			}
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	assert.Len(t, admitted, probes)
	assert.Equal(t, goroutines-probes, refused)
	for _, p := range admitted {
		b.Done(p, Report{Outcome: Ignore})
	}

	// Phase 2: churn. Probes report success or ignore (never closing), and
	// some rounds end by a failure and reopen. In flight per generation
	// never exceeds N.
	var inflight [1 << 12]atomic32
	var peak atomic32
	for g := range goroutines {
		wg.Go(func() {
			for i := range 200 {
				p, err := b.Allow()
				if err != nil {
					continue
				}
				slot := &inflight[(p.Token>>1)%uint64(len(inflight))]
				n := slot.add(1)
				if n > probes {
					t.Errorf("%d probes in flight", n)
				}
				peak.max(n)
				slot.add(-1)
				switch {
				case (g+i)%97 == 0:
					b.Done(p, Report{Outcome: Fail, Err: errBrBoom})
				case i%2 == 0:
					b.Done(p, Report{Outcome: Success})
				default:
					b.Done(p, Report{Outcome: Ignore})
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.load(), int32(probes))
	b.Reset()
}

// brRecorder records a breaker's events; safe for concurrent use.
type brRecorder struct {
	mu     sync.Mutex
	events []Transition
}

func (r *brRecorder) listen(tr Transition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, tr)
}

func (r *brRecorder) get() []Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transition(nil), r.events...)
}

func (r *brRecorder) states() []State {
	var s []State
	for _, e := range r.get() {
		s = append(s, e.To)
	}
	return s
}

type atomic32 struct {
	mu sync.Mutex
	n  int32
}

func (a *atomic32) add(d int32) int32 { a.mu.Lock(); defer a.mu.Unlock(); a.n += d; return a.n }
func (a *atomic32) load() int32       { a.mu.Lock(); defer a.mu.Unlock(); return a.n }
func (a *atomic32) max(v int32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n = max(a.n, v)
}

func TestBreakerZeroPermitNeverCounts(t *testing.T) {
	b := MustNewBreaker(WithConsecutiveFailures(1))
	b.Record(Permit{}, errBrBoom)
	b.Done(Permit{Token: tokenProbe}, Report{Outcome: Fail})
	assert.Equal(t, StateClosed, b.State())
	assert.Equal(t, 0, b.Metrics().Calls)
}

func TestBreakerThroughDoMeasuresSlowCallsAndHints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithCountWindow(2), WithMinCalls(2), WithSlowCalls(time.Second, 1),
			WithOpenFromHint(time.Hour))
		ex := MustNew(WithBreaker(b), WithAttempts(1))
		slow := func(context.Context) (int, error) {
			time.Sleep(2 * time.Second)
			return 1, nil
		}
		for range 2 {
			_, err := Do(t.Context(), slow, ex)
			require.NoError(t, err)
		}
		m := b.Metrics()
		assert.Equal(t, 2, m.SlowCalls, "the executor measured each attempt for the breaker")
		assert.Equal(t, StateOpen, m.State)
		b.Reset()

		// A server's hint, carried by the attempt's error, sets the open
		// duration.
		hinted := MustNewBreaker(WithConsecutiveFailures(1), WithOpenFromHint(time.Hour))
		ex = MustNew(WithBreaker(hinted), WithAttempts(1))
		_, err := Do(t.Context(), func(context.Context) (int, error) {
			return 0, RetryAfter(errBrBoom, 42*time.Second)
		}, ex)
		require.ErrorIs(t, err, errBrBoom)
		assert.Equal(t, time.Now().Add(42*time.Second), hinted.Snapshot().OpenUntil)
		hinted.Reset()
	})
}
