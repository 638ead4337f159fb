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
// idle time, and, when a new key would exceed the size bound, one not used
// recently (see below). Either way, a breaker that is open or forced open
// is kept over the others, because its state is a promise to its callers
// (a fresh breaker would let a failing upstream be called again); it is
// forgotten only when every breaker is in that state. A breaker forgotten and asked
// for again is built anew, closed (or from the store, with [WithStore]).
//
// Decision: use is tracked in coarse ticks of half the idle time, set by a
// timer that runs only while the set is not empty, not by reading the
// clock on each Get. A breaker is forgotten after between idle and 1.5×
// idle without use, and least-recently-used is judged to that precision.
//
// Decision: the breaker to forget for a new key is found by a clock hand
// that sweeps the set's breakers in turn, from where it last stopped, and
// forgets the first one not used in the current tick (the clock
// approximation of least recently used), not by searching the whole set
// for the oldest. Once the hand has looked at every breaker in a tick, all
// were used in it, and it forgets the next one it meets. So making room
// costs the same at 100,000 breakers as at 10 (a search of the whole set
// took 9 ms there, under the lock that every new key takes): each breaker
// is looked at about once per tick, plus the open ones the hand steps
// over.
type Breakers struct {
	cfg   *breakerConfig
	max   int
	idle  time.Duration
	m     sync.Map // string → *keyedBreaker
	epoch atomic.Int64

	mu sync.Mutex // guards inserts, removals and the fields below
	// ring holds every breaker in the set, in no particular order, for the
	// clock: hand is the index it looks at next, swept how many breakers
	// it has looked at since the tick sweptEpoch began.
	ring       []*keyedBreaker
	hand       int
	swept      int
	sweptEpoch int64
	looked     uint64 // breakers the clock has looked at, in all: its work
	timer      *time.Timer
	ticker     bool
}

type keyedBreaker struct {
	br   *Breaker
	key  string
	idx  int          // in the set's ring; guarded by the set's mu
	used atomic.Int64 // the set's epoch when last used
}

// NewBreakers builds a set of at most max breakers (max >= 1), forgetting
// those unused for idle (idle > 0), each built with opts as [NewBreaker]
// would, with its key as its name (or "name/key" when opts name the set
// with [WithBreakerName]). An invalid argument or option is an error that
// names it.
func NewBreakers(max int, idle time.Duration, opts ...BreakerOption) (*Breakers, error) {
	var errs []error // every invalid argument and option is reported
	if max < 1 {
		errs = append(errs, optionError("NewBreakers", "max must be >= 1, got %d", max))
	}
	if idle <= 0 {
		errs = append(errs, optionError("NewBreakers", "idle must be > 0, got %v", idle))
	}
	// The store needs a name; keys provide it, so validate with one.
	c, err := newBreakerConfig(append(opts[:len(opts):len(opts)], breakerOptionFunc(func(c *breakerConfig) error {
		if c.name == "" {
			c.name = "key"
		}
		return nil
	})))
	if err != nil {
		errs = append(errs, err)
	}
	if errs != nil {
		return nil, joinErrors(errs)
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
	return len(s.ring)
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
	if len(s.ring) >= s.max {
		s.evictOneLocked()
	}
	k := &keyedBreaker{br: br, key: key, idx: len(s.ring)}
	k.used.Store(s.epoch.Load())
	s.m.Store(key, k)
	s.ring = append(s.ring, k)
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

// evictOneLocked forgets one breaker to make room: the first the clock's
// hand finds that is not worth keeping and was not used in the current
// tick; once the hand has looked at every breaker in this tick, the first
// not worth keeping; and when every breaker is worth keeping, the first
// the hand found.
func (s *Breakers) evictOneLocked() {
	e := s.epoch.Load()
	if s.sweptEpoch != e {
		s.sweptEpoch, s.swept = e, 0
	}
	var first, kept *keyedBreaker // the first seen not worth keeping, and worth it
	for range len(s.ring) {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		k := s.ring[s.hand]
		s.hand++
		s.looked++
		if keep(k.br) {
			if kept == nil {
				kept = k
			}
			continue
		}
		// Decision: after a whole sweep in this tick, every breaker left
		// was used in it (or is kept): they are equally recent at the
		// tick's precision, so the next one will do, and sweeping again
		// would only cost time.
		if s.swept >= len(s.ring) || k.used.Load() < e {
			s.removeLocked(k)
			return
		}
		s.swept++
		if first == nil {
			first = k
		}
	}
	switch { // the hand went round: every breaker was used in this tick
	case first != nil:
		s.removeLocked(first)
	case kept != nil: // every breaker is worth keeping: the bound holds
		s.removeLocked(kept)
	}
}

// removeLocked forgets k. A forgotten breaker keeps working for callers
// that still hold it; its timers, if any, end on their own.
func (s *Breakers) removeLocked(k *keyedBreaker) {
	s.m.CompareAndDelete(k.key, k)
	last := s.ring[len(s.ring)-1]
	s.ring[k.idx], last.idx = last, k.idx
	s.ring[len(s.ring)-1] = nil
	s.ring = s.ring[:len(s.ring)-1]
}

// onTick advances the epoch and forgets breakers unused for two ticks or
// more; it runs every idle/2 while the set is not empty.
func (s *Breakers) onTick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.epoch.Add(1)
	// From the end, so that the breaker a removal moves into a hole has
	// already been looked at.
	for i := len(s.ring) - 1; i >= 0; i-- {
		if k := s.ring[i]; k.used.Load() <= e-3 && !keep(k.br) {
			s.removeLocked(k)
		}
	}
	if len(s.ring) == 0 {
		s.ring, s.hand = nil, 0 // an empty set holds nothing
		s.ticker = false
		return
	}
	s.timer.Reset(s.idle / 2)
}
