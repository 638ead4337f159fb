package resilient

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Breakers is a bounded set of [Breaker]s keyed by a string (a host, a
// route), all built from one configuration: [Breakers.Get] makes a key's
// breaker on its first use. It is safe for concurrent use; getting an
// existing breaker takes no lock, reads no clock and allocates nothing.
//
// The set forgets breakers it need not remember: one left unused for the
// idle time, and, when a new key would exceed the size bound, the one used
// least recently. Either way, a breaker that is open or forced open is kept
// over the others, because its state is a promise to its callers (a fresh
// breaker would let a failing upstream be called again); it is forgotten
// only when every breaker is in that state. A breaker forgotten and asked
// for again is built anew, closed (or from the store, with [WithStore]).
//
// Decision: use is tracked in coarse ticks of half the idle time, set by a
// timer that runs only while the set is not empty, not by reading the
// clock on each Get. A breaker is forgotten after between idle and 1.5×
// idle without use, and least-recently-used is judged to that precision.
type Breakers struct {
	cfg   *breakerConfig
	max   int
	idle  time.Duration
	m     sync.Map // string → *keyedBreaker
	epoch atomic.Int64

	mu     sync.Mutex // guards inserts, removals, n and timer
	n      int
	timer  *time.Timer
	ticker bool
}

type keyedBreaker struct {
	br   *Breaker
	used atomic.Int64 // the set's epoch when last used
}

// NewBreakers builds a set of at most max breakers (max >= 1), forgetting
// those unused for idle (idle > 0), each built with opts as [NewBreaker]
// would, with its key as its name (or "name/key" when opts name the set
// with [WithBreakerName]). An invalid argument or option is an error that
// names it.
func NewBreakers(max int, idle time.Duration, opts ...BreakerOption) (*Breakers, error) {
	if max < 1 {
		return nil, optionError("NewBreakers", "max must be >= 1, got %d", max)
	}
	if idle <= 0 {
		return nil, optionError("NewBreakers", "idle must be > 0, got %v", idle)
	}
	// The store needs a name; keys provide it, so validate with one.
	c, err := newBreakerConfig(append(opts[:len(opts):len(opts)], breakerOptionFunc(func(c *breakerConfig) error {
		if c.name == "" {
			c.name = "key"
		}
		return nil
	})))
	if err != nil {
		return nil, err
	}
	if c.name == "key" {
		c.name = ""
	}
	return &Breakers{cfg: c, max: max, idle: idle}, nil
}

// MustNewBreakers is like [NewBreakers] but panics on an invalid argument.
func MustNewBreakers(max int, idle time.Duration, opts ...BreakerOption) *Breakers {
	s, err := NewBreakers(max, idle, opts...)
	if err != nil {
		panic(err)
	}
	return s
}

// Get returns key's breaker, building it on first use. With [WithStore],
// a new breaker loads its state; if the store fails, it starts closed, as
// it would in a fresh process.
func (s *Breakers) Get(key string) *Breaker {
	if v, ok := s.m.Load(key); ok {
		k := v.(*keyedBreaker)
		if e := s.epoch.Load(); k.used.Load() != e {
			k.used.Store(e)
		}
		return k.br
	}
	return s.insert(key)
}

// Len returns how many breakers the set holds.
func (s *Breakers) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *Breakers) insert(key string) *Breaker {
	c := *s.cfg
	if c.name != "" {
		c.name += "/" + key
	} else {
		c.name = key
	}
	// The store is read and the breaker built outside the set's lock, so a
	// slow store delays only this key's first caller.
	var snap *Snapshot
	if c.store != nil {
		// Decision: a store failure does not make Get fail (it has no error
		// to return); the breaker starts closed, like a fresh process.
		if sn, ok, err := c.store.Load(context.Background(), c.name); err == nil && ok {
			snap = &sn
		}
	}
	br, err := buildBreaker(&c, snap)
	if err != nil { // a snapshot that cannot be restored
		br, _ = buildBreaker(&c, nil)
	}

	s.mu.Lock()
	if v, ok := s.m.Load(key); ok { // another caller was first
		s.mu.Unlock()
		br.stop()
		return v.(*keyedBreaker).br
	}
	if s.n >= s.max {
		s.evictLocked(nil, true)
	}
	k := &keyedBreaker{br: br}
	k.used.Store(s.epoch.Load())
	s.m.Store(key, k)
	s.n++
	if !s.ticker {
		s.ticker = true
		if s.timer == nil {
			s.timer = time.AfterFunc(s.idle/2, s.onTick)
		} else {
			s.timer.Reset(s.idle / 2)
		}
	}
	s.mu.Unlock()
	// Listeners hear of the new breaker outside the set's lock: they may
	// use the set.
	br.dispatch()
	return br
}

// keep reports whether a breaker's state is worth keeping over others'.
func keep(br *Breaker) bool {
	st := br.State()
	return st == StateOpen || st == StateForcedOpen
}

// evictLocked forgets breakers: every one that idle accepts, or, when one
// is true, only the least recently used of them, preferring those not
// worth keeping.
func (s *Breakers) evictLocked(idle func(*keyedBreaker) bool, one bool) {
	if one {
		var victim, victimKept any
		var best, bestKept int64
		s.m.Range(func(key, v any) bool {
			k := v.(*keyedBreaker)
			u := k.used.Load()
			if keep(k.br) {
				if victimKept == nil || u < bestKept {
					victimKept, bestKept = key, u
				}
			} else if victim == nil || u < best {
				victim, best = key, u
			}
			return true
		})
		if victim == nil {
			victim = victimKept
		}
		if victim != nil {
			s.removeLocked(victim)
		}
		return
	}
	s.m.Range(func(key, v any) bool {
		if k := v.(*keyedBreaker); idle(k) && !keep(k.br) {
			s.removeLocked(key)
		}
		return true
	})
}

func (s *Breakers) removeLocked(key any) {
	// A forgotten breaker keeps working for callers that still hold it;
	// its timers, if any, end on their own.
	if _, ok := s.m.LoadAndDelete(key); ok {
		s.n--
	}
}

// onTick advances the epoch and forgets breakers unused for two ticks or
// more; it runs every idle/2 while the set is not empty.
func (s *Breakers) onTick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.epoch.Add(1)
	s.evictLocked(func(k *keyedBreaker) bool { return k.used.Load() <= e-3 }, false)
	if s.n == 0 {
		s.ticker = false
		return
	}
	s.timer.Reset(s.idle / 2)
}
