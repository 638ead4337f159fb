package redis

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The target of the fleet issue: after a Redis stall of any length, the
// fleet serves again within one open duration of Redis's return, or of the
// upstream's, whichever is later. A 2s stall with probes in flight used to
// refuse every call for about 28s: the probes' reports timed out and
// their permits held the slots for the probe TTL (30s), and an admission
// whose reply came late held one more.
//
// Four replicas (each with its own client, as processes would have) share
// a breaker with 3 probe slots. Two replicas hold probes and a third asks
// for the last slot when Redis freezes (SIGSTOP): the admission reaches the
// kernel, the server grants it when it resumes, and its caller has given
// up on it. The held probes end during the stall, their reports time out.
// Every replica calls the upstream all along. Redis resumes after the
// stall; the upstream is healthy, or down until 600ms after Redis's return
// (then the probes failed during the stall). Served means: a call
// succeeded while the replica knew the fleet closed.
func TestFleetServesWithinOneOpenDurationOfRedisReturn(t *testing.T) {
	const (
		openDur  = 1500 * time.Millisecond
		timeout  = 100 * time.Millisecond
		replicas = 4
	)
	tests := []struct {
		stall       time.Duration
		upstreamLag time.Duration // the upstream returns this long after Redis; 0: never down
	}{
		{250 * time.Millisecond, 0}, // shorter than it takes to degrade
		{3 * time.Second, 0},        // longer than the open duration
		{250 * time.Millisecond, 600 * time.Millisecond},
		{3 * time.Second, 600 * time.Millisecond},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("stall %v, upstream healthy", tt.stall)
		if tt.upstreamLag > 0 {
			name = fmt.Sprintf("stall %v, upstream back %v after Redis", tt.stall, tt.upstreamLag)
		}
		t.Run(name, func(t *testing.T) {
			srv := startRedis(t, false)
			opts := fast(WithOpenDuration(openDur), WithHalfOpenProbes(3), WithProbeTTL(30*time.Second),
				WithTimeout(timeout), WithSyncInterval(20*time.Millisecond))
			rs := make([]*Breaker, replicas)
			exs := make([]*resilient.Executor, replicas)
			for i := range rs {
				rs[i] = newTestBreaker(t, srv.Client(), "stall", opts...)
				exs[i] = resilient.MustNew(resilient.WithAttempts(1), resilient.WithPolicy(rs[i]))
			}
			trip(t, rs[0])
			halfOpen(t, rs[0])
			for _, r := range rs {
				require.NoError(t, r.sync(context.Background()))
				require.Equal(t, resilient.StateHalfOpen, r.State())
			}
			var held []resilient.Permit
			for _, r := range rs[:2] {
				p, err := r.Admit(context.Background(), 1)
				require.NoError(t, err)
				require.NotZero(t, p.Token&tokProbe, "a fleet-wide probe")
				held = append(held, p)
			}
			require.NoError(t, rs[2].sync(context.Background()))

			// The upstream: down from the stall until upstreamLag after
			// Redis's return, in the scenarios where it fails.
			var upAt atomic.Int64 // unix ns from which it answers; 0: always
			if tt.upstreamLag > 0 {
				upAt.Store(time.Now().Add(time.Hour).UnixNano())
			}
			upstream := func(context.Context) error {
				if time.Now().UnixNano() < upAt.Load() {
					return errUpstream
				}
				return nil
			}
			report := resilient.Report{Attempt: 1, Outcome: resilient.Success}
			if tt.upstreamLag > 0 {
				report = resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: errUpstream}
			}

			srv.Freeze()
			frozen := time.Now()
			p, err := rs[2].Admit(context.Background(), 1)
			require.NoError(t, err, "the local breaker admits a call whose admission timed out")
			assert.Zero(t, p.Token&tokProbe)
			rs[2].Done(p, report)
			for i, p := range held {
				rs[i].Done(p, report)
			}

			// Every replica calls the upstream, all along.
			var back atomic.Int64 // unix ns: max(Redis's return, the upstream's)
			back.Store(time.Now().Add(time.Hour).UnixNano())
			served := make([]atomic.Int64, replicas) // unix ns of the first call served after back
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i, ex := range exs {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						err := ex.Run(context.Background(), upstream)
						now := time.Now().UnixNano()
						if err == nil && now >= back.Load() && rs[i].State() == resilient.StateClosed {
							served[i].CompareAndSwap(0, now)
						}
						time.Sleep(2 * time.Millisecond) // pacing of the traffic, not synchronisation
					}
				})
			}
			stopDrivers := sync.OnceFunc(func() {
				close(stop)
				waitGroup(t, &wg, 30*time.Second, "the replicas' traffic")
			})
			defer stopDrivers()

			time.Sleep(tt.stall - time.Since(frozen)) // the stall itself: time passing is what is tested
			srv.Thaw()
			returned := time.Now()
			backAt := returned.Add(tt.upstreamLag)
			if tt.upstreamLag > 0 {
				upAt.Store(backAt.UnixNano())
			}
			back.Store(backAt.UnixNano())

			eventually(t, openDur+10*time.Second, func() bool {
				for i := range served {
					if served[i].Load() == 0 {
						return false
					}
				}
				return true
			}, "the fleet did not serve again")
			stopDrivers()
			var worst time.Duration
			for i := range served {
				worst = max(worst, time.Duration(served[i].Load()-backAt.UnixNano()))
			}
			t.Logf("every replica served %v after the later of Redis's and the upstream's return (open duration %v)", worst, openDur)
			assert.LessOrEqual(t, worst, openDur)
			assert.Equal(t, resilient.StateClosed, rs[0].State())
			n, err := srv.Client().ZCard(context.Background(), "resilient:{stall}:probes").Result()
			require.NoError(t, err)
			assert.Zero(t, n, "probe slots are held in a closed fleet")
		})
	}
}
