package resilient

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestBreakersInvalid(t *testing.T) {
	cases := []struct {
		name string
		max  int
		idle time.Duration
		opts []BreakerOption
		want string
	}{
		{"max zero", 0, time.Minute, nil, "resilient: NewBreakers: max must be >= 1, got 0"},
		{"idle zero", 1, 0, nil, "resilient: NewBreakers: idle must be > 0, got 0s"},
		{"bad option", 1, time.Minute, []BreakerOption{WithFailureRate(2)}, "resilient: WithFailureRate: rate must be in (0, 1], got 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewBreakers(tc.max, tc.idle, tc.opts...)
			assert.Nil(t, s)
			assert.EqualError(t, err, tc.want)
			assert.Panics(t, func() { MustNewBreakers(tc.max, tc.idle, tc.opts...) })
		})
	}
	_, err := NewBreakers(1, time.Minute, WithStore(NewMemoryStore()))
	assert.NoError(t, err, "keys name the breakers of a set")
}

func TestBreakersGet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := MustNewBreakers(10, time.Minute, WithConsecutiveFailures(1))
		a := s.Get("a.example")
		assert.Same(t, a, s.Get("a.example"))
		assert.NotSame(t, a, s.Get("b.example"))
		assert.Equal(t, "a.example", a.Name())
		assert.Equal(t, 2, s.Len())

		brCall(a, errBrBoom)
		assert.Equal(t, StateOpen, a.State(), "built from the set's options")
		assert.Equal(t, StateClosed, s.Get("b.example").State(), "each key its own breaker")

		named := MustNewBreakers(1, time.Minute, WithBreakerName("users"))
		assert.Equal(t, "users/h1", named.Get("h1").Name())

		// A listener of the set's breakers may use the set.
		var set atomic.Pointer[Breakers]
		var seen []int
		set.Store(MustNewBreakers(10, time.Minute, WithStateListener(func(Transition) {
			seen = append(seen, set.Load().Len())
		})))
		set.Load().Get("x")
		set.Load().Get("y")
		assert.Equal(t, []int{1, 2}, seen, "told of each new breaker once, after it joined the set")
		a.Reset()
	})
}

func TestBreakersConcurrentGet(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := MustNewBreakers(1000, time.Hour)
	var wg sync.WaitGroup
	got := make([][]*Breaker, 50)
	for g := range got {
		wg.Go(func() {
			for k := range 20 {
				got[g] = append(got[g], s.Get(fmt.Sprint("host", k)))
			}
		})
	}
	wg.Wait()
	for g := range got {
		for k := range got[g] {
			assert.Same(t, got[0][k], got[g][k], "one breaker per key")
		}
	}
	assert.Equal(t, 20, s.Len())
	assert.Zero(t, testing.AllocsPerRun(1000, func() { s.Get("host3") }), "Get of a known key")
	s.mu.Lock()
	s.timer.Stop()
	s.mu.Unlock()
}

func TestBreakersBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := MustNewBreakers(3, 10*time.Second)
		a := s.Get("a")
		s.Get("b")
		s.Get("c")
		time.Sleep(5 * time.Second) // one tick: a, b, c were used in the tick before
		synctest.Wait()
		s.Get("b")
		s.Get("c")
		s.Get("d") // a is the least recently used
		assert.Equal(t, 3, s.Len())
		assert.NotSame(t, a, s.Get("a"), "a was forgotten and is built anew")

		// An open breaker is kept over closed ones, even if used least
		// recently.
		s2 := MustNewBreakers(2, 10*time.Second)
		open := s2.Get("open")
		open.ForceOpen()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		s2.Get("x")
		s2.Get("y") // forgets x, not open
		assert.Same(t, open, s2.Get("open"))
		assert.Equal(t, 2, s2.Len())

		// When every breaker is worth keeping, the bound still holds.
		s2.Get("y").ForceOpen()
		s2.Get("z")
		assert.Equal(t, 2, s2.Len())
		s2.Get("z").Reset()
		s2.Get("y").Reset()
		open.Reset()
	})
}

func TestBreakersIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := MustNewBreakers(10, 10*time.Second)
		idle := s.Get("idle")
		busy := s.Get("busy")
		held := s.Get("held")
		held.ForceOpen()
		for i := range 4 { // 20s: busy is used every 5s
			time.Sleep(5 * time.Second)
			synctest.Wait()
			s.Get("busy")
			if i == 1 {
				assert.Equal(t, 3, s.Len(), "10s unused: kept")
			}
		}
		assert.Equal(t, 2, s.Len(), "idle forgotten after between 10s and 15s unused")
		assert.NotSame(t, idle, s.Get("idle"))
		assert.Same(t, busy, s.Get("busy"))
		assert.Same(t, held, s.Get("held"), "a forced-open breaker is kept")

		held.Reset()
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, 0, s.Len())
		s.mu.Lock()
		assert.False(t, s.ticker, "an empty set holds no timer")
		s.mu.Unlock()

		s.Get("again")
		assert.Equal(t, 1, s.Len())
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, 0, s.Len())
	})
}

func TestBreakersStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore()
		s := MustNewBreakers(10, time.Hour, WithBreakerName("http"), WithStore(store), WithConsecutiveFailures(1))
		brCall(s.Get("h1"), errBrBoom)
		snap, ok, err := store.Load(t.Context(), "http/h1")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, StateOpen, snap.State)

		restarted := MustNewBreakers(10, time.Hour, WithBreakerName("http"), WithStore(store))
		assert.Equal(t, StateOpen, restarted.Get("h1").State())

		failing := MustNewBreakers(10, time.Hour, WithStore(failingStore{errBrBoom}))
		assert.Equal(t, StateClosed, failing.Get("h1").State(), "a store failure starts closed")

		require.NoError(t, store.Save(t.Context(), "http/bad", Snapshot{Version: 42}))
		assert.Equal(t, StateClosed, restarted.Get("bad").State(), "an unreadable snapshot starts closed")
		s.Get("h1").Reset()
		restarted.Get("h1").Reset()
	})
}

func TestBreakersHammer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const max = 8
	s := MustNewBreakers(max, time.Hour)
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			for i := range 300 {
				br := s.Get(fmt.Sprint("k", (g*7+i)%32))
				if !brCall(br, nil) {
					t.Error("a closed breaker refused a call")
					return
				}
				if n := s.Len(); n > max {
					t.Errorf("%d breakers held, max %d", n, max)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, max, s.Len())
	n := 0
	s.m.Range(func(any, any) bool { n++; return true })
	assert.Equal(t, max, n, "the count matches the map")
	s.mu.Lock()
	s.timer.Stop()
	s.mu.Unlock()
}

// checkRing fails unless the set's ring and map hold the same breakers,
// each at the index it records.
func checkRing(t *testing.T, s *Breakers) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	inMap := 0
	s.m.Range(func(any, any) bool { inMap++; return true })
	assert.Equal(t, len(s.ring), inMap, "the ring and the map hold as many")
	for i, k := range s.ring {
		assert.Equal(t, i, k.idx, "ring[%d] knows its index", i)
		v, ok := s.m.Load(k.key)
		if assert.True(t, ok, "ring[%d] (%s) is in the map", i, k.key) {
			assert.Same(t, k, v.(*keyedBreaker))
		}
	}
}

// Making room for a new key in a full set looks at about one breaker per
// new key, plus one sweep of the set per tick, however large the set: a
// search of the whole set for the least recently used took 9 ms a key at
// 100,000 keys.
func TestBreakersMakingRoomIsConstantWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10_000
		s := MustNewBreakers(n, time.Hour)
		for i := range n {
			br := s.Get(fmt.Sprint("host", i))
			if i%10 == 0 {
				br.ForceOpen() // kept over the others: the hand steps over them
			}
		}
		// Every breaker was used in this tick: the worst case, in which a
		// search finds no breaker older than the others.
		const added = 3 * n
		for i := range added {
			s.Get(fmt.Sprint("new", i))
		}
		assert.Equal(t, n, s.Len())
		s.mu.Lock()
		looked := s.looked
		s.mu.Unlock()
		assert.LessOrEqual(t, looked, uint64(n+2*added), "breakers looked at to make room for %d keys", added)
		checkRing(t, s)
		s.m.Range(func(_, v any) bool { v.(*keyedBreaker).br.Reset(); return true })
	})
}

// Within a tick, the hand forgets a breaker not used in it before the ones
// that were, wherever it finds it; once every breaker was used in the tick,
// the next one it meets.
func TestBreakersForgetsOneNotUsedThisTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := MustNewBreakers(4, 10*time.Second)
		a, b, c, d := s.Get("a"), s.Get("b"), s.Get("c"), s.Get("d")
		time.Sleep(5 * time.Second) // one tick
		synctest.Wait()
		s.Get("a")
		s.Get("b")
		s.Get("d")
		s.Get("e") // c was not used in this tick
		assert.Same(t, a, s.Get("a"))
		assert.Same(t, b, s.Get("b"))
		assert.Same(t, d, s.Get("d"))
		assert.NotSame(t, c, s.Get("c"), "c was forgotten and is built anew")
		assert.Equal(t, 4, s.Len())
		checkRing(t, s)
	})
}

// Breakers come and go (new keys, ticks forgetting idle ones, open ones
// kept) from many goroutines at once; the bound holds and the set stays
// consistent.
func TestBreakersChurnHammer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const max = 16
	s := MustNewBreakers(max, 2*time.Millisecond, WithConsecutiveFailures(1), WithOpenDuration(time.Millisecond))
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 500 {
				br := s.Get(fmt.Sprint("k", (g*31+i)%97))
				var err error
				if i%13 == 0 {
					err = errBrBoom
				}
				brCall(br, err)
				if n := s.Len(); n > max {
					t.Errorf("%d breakers held, max %d", n, max)
					return
				}
			}
		})
	}
	wg.Wait()
	checkRing(t, s)
	// The set empties itself once nothing is used, and stops its timer.
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.ticker
	}, 10*time.Second, time.Millisecond)
	assert.Zero(t, s.Len())
}

// A hit takes no lock: Get of a key the set holds returns while the set's
// lock is held (by an insert, a removal, a tick).
func TestBreakersHitTakesNoLock(t *testing.T) {
	s := MustNewBreakers(10, time.Hour)
	br := s.Get("known")
	s.mu.Lock()
	got := make(chan *Breaker, 1)
	go func() { got <- s.Get("known") }()
	select {
	case b := <-got:
		assert.Same(t, br, b)
		s.timer.Stop()
		s.mu.Unlock()
	case <-time.After(10 * time.Second):
		s.timer.Stop()
		s.mu.Unlock()
		<-got // returns once the lock is free
		t.Fatal("Get of a known key waited for the set's lock")
	}
}
