package redis

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errRedis = errors.New("i/o timeout")

// The degraded / recovered state machine, step by step, in fake time: a
// call is its error and how long it took.
func TestHealthHysteresis(t *testing.T) {
	const timeout = 50 * time.Millisecond
	type call struct {
		took time.Duration
		err  error
	}
	ok := func(d time.Duration) call { return call{took: d} }
	fail := call{took: timeout, err: errRedis}
	tests := []struct {
		name  string
		after int
		calls []call
		want  []EventKind // after the calls
		deg   bool
	}{
		{"one timeout does not degrade", 3, []call{fail}, nil, false},
		{"timeouts scattered among answers never degrade", 3,
			[]call{fail, fail, ok(time.Millisecond), fail, fail, ok(40 * time.Millisecond), fail, fail}, nil, false},
		{"a slow answer is an answer: it resets the run", 3,
			[]call{fail, fail, ok(49 * time.Millisecond), fail, fail}, nil, false},
		{"three in a row degrade, once", 3, []call{fail, fail, fail, fail, fail}, []EventKind{EventDegraded}, true},
		{"degraded after one when asked", 1, []call{fail}, []EventKind{EventDegraded}, true},
		{"a slow answer does not recover", 3,
			[]call{fail, fail, fail, ok(25 * time.Millisecond), ok(49 * time.Millisecond)}, []EventKind{EventDegraded}, true},
		{"a prompt answer recovers", 3,
			[]call{fail, fail, fail, ok(30 * time.Millisecond), ok(24 * time.Millisecond)},
			[]EventKind{EventDegraded, EventRecovered}, false},
		{"degrading again needs a new run of failures", 3,
			[]call{fail, fail, fail, ok(time.Millisecond), fail, fail},
			[]EventKind{EventDegraded, EventRecovered}, false},
		{"and happens after it", 3,
			[]call{fail, fail, fail, ok(time.Millisecond), fail, fail, fail},
			[]EventKind{EventDegraded, EventRecovered, EventDegraded}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log eventLog
				c, err := newConfig([]Option{WithTimeout(timeout), WithDegradeAfter(tt.after), log.hook()})
				require.NoError(t, err)
				h := newHealth("budget", "users", c)
				for _, c := range tt.calls {
					time.Sleep(c.took) // the call's own time, in the bubble's clock
					h.observe("retry", c.took, c.err)
				}
				assert.Equal(t, tt.want, log.kinds())
				assert.Equal(t, tt.deg, h.degraded.Load())
			})
		})
	}
}

// Events carry the component, the name, the operation, the error that
// degraded it and the (fake) time of the change; degradedFor counts from
// the degradation.
func TestHealthEventsAndDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log eventLog
		c, err := newConfig([]Option{WithTimeout(50 * time.Millisecond), log.hook()})
		require.NoError(t, err)
		h := newHealth("breaker", "users", c)
		start := time.Now()
		for range 3 {
			time.Sleep(50 * time.Millisecond)
			h.observe("sync", 50*time.Millisecond, errRedis)
		}
		degradedAt := time.Now()
		assert.Equal(t, 150*time.Millisecond, degradedAt.Sub(start))
		time.Sleep(2 * time.Second)
		assert.Equal(t, 2*time.Second, h.degradedFor())
		h.observe("probe", time.Millisecond, nil)
		assert.Zero(t, h.degradedFor())

		events := log.all()
		require.Len(t, events, 2)
		assert.Equal(t, Event{Kind: EventDegraded, Component: "breaker", Name: "users", Op: "sync", Err: errRedis, At: degradedAt}, events[0])
		assert.Equal(t, Event{Kind: EventRecovered, Component: "breaker", Name: "users", Op: "probe", At: degradedAt.Add(2 * time.Second)}, events[1])
	})
}

// Many goroutines observing at once: one event per change, in the order of
// the changes, never two hooks at once; a hook that calls back into the
// tracker (as one that calls the component would) does not deadlock.
func TestHealthEventsAreSerialised(t *testing.T) {
	var h *health
	var mu sync.Mutex
	var kinds []EventKind
	inHook := 0
	c, err := newConfig([]Option{WithDegradeAfter(1), WithEventHook(func(ev Event) {
		mu.Lock()
		inHook++
		assert.Equal(t, 1, inHook, "two hooks at once")
		kinds = append(kinds, ev.Kind)
		mu.Unlock()
		h.observe("control", time.Millisecond, nil) // re-entry
		mu.Lock()
		inHook--
		mu.Unlock()
	})})
	require.NoError(t, err)
	h = newHealth("breaker", "users", c)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				if (i+g)%2 == 0 {
					h.observe("sync", time.Millisecond, errRedis)
				} else {
					h.observe("sync", time.Millisecond, nil)
				}
			}
		})
	}
	waitGroup(t, &wg, 30*time.Second, "the observers")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, kinds)
	for i, k := range kinds {
		want := EventDegraded
		if i%2 == 1 {
			want = EventRecovered
		}
		require.Equal(t, want, k, "event %d", i)
	}
}

// Item 5 of the fleet issue, against a real Redis behind a proxy: one
// reply in three arriving after the timeout (a healthy Redis on a starved
// machine) made a component flip degraded / recovered on every third
// call. Now it stays healthy; a Redis that really stops answering degrades
// it after three calls, after which retries do not wait for Redis; answers
// that come back slow keep it degraded; prompt ones recover it.
func TestHysteresisAgainstAHiccupingRedis(t *testing.T) {
	srv := startRedis(t, false)
	p := newFaultProxy(t, srv.Addr())
	const timeout = 200 * time.Millisecond
	var log eventLog
	b := newTestBudget(t, p.Client(srv), "hiccup", WithTimeout(timeout), WithSyncInterval(50*time.Millisecond),
		WithRetryBurst(1000), log.hook())

	p.Delays(3*timeout, 0, 0)
	for range 12 {
		require.NoError(t, b.AllowRetry(2))
	}
	assert.Empty(t, log.kinds(), "a hiccup in three calls degraded the budget")
	assert.False(t, b.Degraded())

	p.Delays(3 * timeout)
	for range 3 {
		require.NoError(t, b.AllowRetry(2))
	}
	log.waitFor(t, 1, 5*time.Second)
	require.True(t, b.Degraded())
	took := within(t, 5*time.Second, "retries while degraded", func() {
		for range 100 {
			_ = b.AllowRetry(2)
		}
	})
	assert.Less(t, took, timeout, "100 retries while degraded waited for Redis")

	// Slow answers (over half the timeout) from the background flush: still
	// degraded after several of them.
	p.Delays(timeout * 3 / 4)
	before := p.Replies()
	eventually(t, 10*time.Second, func() bool { return p.Replies() >= before+5 }, "the flush did not reach Redis")
	assert.True(t, b.Degraded(), "a slow answer recovered the budget")

	p.Delays()
	log.waitFor(t, 2, 5*time.Second)
	assert.False(t, b.Degraded())
	assert.Equal(t, []EventKind{EventDegraded, EventRecovered}, log.kinds())
}
