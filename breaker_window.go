package resilient

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// window is a breaker's sliding window of outcomes: the last n calls (a
// ring), or the calls of the last d (buckets moved on by a timer). Every
// method is safe for concurrent use; recording takes no lock.
//
// A window belongs to one closed (or disabled) period of its breaker. It is
// replaced, never cleared, when a new one starts, so the only writes it can
// receive after that are late ones, which nobody reads.
type window struct {
	// gen is the breaker generation whose results the window counts (see
	// Breaker.Done), or retiredGen once the period it measures has ended. A
	// result is counted only if the window it loaded has its generation:
	// since a fresh window is published with its generation already set,
	// a result of an earlier generation can only reach a window nobody
	// reads any more.
	gen atomic.Uint64
	// br is the breaker, which a time window asks to judge its rates at
	// each tick.
	br *Breaker
	// lastFail is a recent failure, the cause given when the window is
	// judged without a failure at hand (a success that brings a count
	// window to its minimum, a time window's tick). A count window keeps
	// it only until it holds its minimum, after which every judgment has
	// its own failure.
	lastFail atomic.Pointer[failure]

	// consec counts failures since the last success.
	consec atomic.Int64

	// Count window: ring[i % n] holds call i's outcome bits; next counts
	// the calls recorded; fails and slows count the ring's bits. A ring
	// that is full and holds only plain successes is left untouched by
	// another success: the last n calls are then successes either way, so
	// the success path only reads shared memory.
	ring         []atomic.Uint32
	n            uint64
	next         atomic.Uint64
	fails, slows atomic.Int64

	// Time window: buckets[head] receives calls; a timer moves head on
	// every tick and clears the bucket it moves to, and runs only while
	// ticking (set by the first call recorded into an idle window, cleared
	// by the tick that finds the window empty). Plain successes are counted
	// in pending, striped over cache lines so that parallel callers do not
	// contend on one counter; each tick adds them to the bucket it closes.
	buckets []bucket
	pending []stripe
	head    atomic.Uint32
	ticks   atomic.Uint64 // ticks so far: the epoch of the bucket at head
	tick    time.Duration
	ticking atomic.Bool
	mu      sync.Mutex // guards timer and retired
	timer   *time.Timer
	retired bool
}

type bucket struct {
	calls, fails, slows atomic.Int64
}

// failure is a failed call's error, without markers, and its hint.
type failure struct {
	err  error
	hint time.Duration
	// epoch is the tick of a time window's bucket the failure was kept
	// in. Decision: the epoch, not the bucket's index, which comes round
	// again: a failure kept in a bucket since cleared would stand in the
	// way of the new ones and be named the cause of an opening it had no
	// part in.
	epoch uint64
}

// retiredGen is the generation of a window whose period has ended: no
// result matches it.
const retiredGen = ^uint64(0)

// stripe is a counter on cache lines of its own.
type stripe struct {
	n atomic.Int64
	_ [120]byte // two cache lines: no two stripes share one, however the slice is aligned
}

// pendingStripes is how many stripes a time window counts successes in (a
// power of two).
const pendingStripes = 8

// Outcome bits of a ring slot (0: empty).
const (
	slotFilled = 1 << iota
	slotFail
	slotSlow
)

// newWindow makes a window for b's generation gen.
func newWindow(b *Breaker, gen uint64) *window {
	c := b.cfg
	var w *window
	if c.countN > 0 {
		w = &window{ring: make([]atomic.Uint32, c.countN), n: uint64(c.countN)}
	} else {
		w = &window{
			buckets: make([]bucket, c.buckets),
			pending: make([]stripe, pendingStripes),
			tick:    c.timeD / time.Duration(c.buckets),
		}
	}
	w.br = b
	w.gen.Store(gen)
	return w
}

// success records a plain success (neither failed nor slow): the hot path.
// It reports whether the success brought a count window to n calls.
func (w *window) success(n int) bool {
	if w.consec.Load() != 0 {
		w.consec.Store(0)
	}
	if w.ring != nil {
		if w.fails.Load() == 0 && w.slows.Load() == 0 && w.next.Load() >= w.n {
			return false // calm
		}
		return w.put(slotFilled)+1 == uint64(n)
	}
	w.pending[stripeOf()].n.Add(1)
	w.startTicking()
	return false
}

// calm reports whether the window is a count window full of plain
// successes, with no failure run in progress: another success leaves it as
// it is, whatever generation admitted it, so it need not be recorded. The
// failure run is checked on its own: a success and a failure recorded at
// the same moment can leave the ring full of successes with consec at 1
// (the success's slot written after the failure's, its reset of consec
// before the failure's add), and only a recorded success clears it.
func (w *window) calm() bool {
	return w.ring != nil && w.consec.Load() == 0 && w.fails.Load() == 0 && w.slows.Load() == 0 && w.next.Load() >= w.n
}

// stripeOf picks the caller's stripe from the address of its stack, which
// differs from one goroutine to another and stays put while a goroutine
// runs: concurrent callers mostly count on stripes of their own, so the
// count scales with cores, at the cost of no random draw. Goroutine stacks
// are at least 2 KiB apart, hence the shift; the multiplication spreads
// neighbouring stacks over the stripes.
func stripeOf() int {
	var here byte
	a := uint64(uintptr(unsafe.Pointer(&here))) >> 11
	return int((a * 0x9e3779b97f4a7c15) >> (64 - 3)) // 3 = log2(pendingStripes)
}

// record records a call that failed, was slow, or both; f is the failure,
// if it failed, and minCalls the breaker's minimum number of calls.
// keepFailure keeps f as lastFail when a judgment without a failure at hand
// may need it: a count window until it holds its minimum, a time window
// once per bucket. Decision: not on every failure, because keeping one
// allocates (f escapes), and a failure path that allocates on every
// attempt would cost the retries of every call.
func (w *window) keepFailure(f failure, minCalls int) {
	if w.ring != nil {
		if w.next.Load() < uint64(minCalls) {
			kept := f
			w.lastFail.Store(&kept)
		}
		return
	}
	epoch := w.ticks.Load()
	if last := w.lastFail.Load(); last == nil || last.epoch != epoch {
		kept := f
		kept.epoch = epoch
		w.lastFail.Store(&kept)
	}
}

func (w *window) record(fail, slow bool, f failure, minCalls int) {
	if fail {
		w.consec.Add(1)
		w.keepFailure(f, minCalls)
	} else if w.consec.Load() != 0 {
		w.consec.Store(0)
	}
	if w.ring != nil {
		v := uint32(slotFilled)
		if fail {
			v |= slotFail
		}
		if slow {
			v |= slotSlow
		}
		w.put(v)
		return
	}
	bk := &w.buckets[w.head.Load()]
	bk.calls.Add(1)
	if fail {
		bk.fails.Add(1)
	}
	if slow {
		bk.slows.Add(1)
	}
	w.startTicking()
}

// put writes one outcome into the ring and adjusts the counts by the
// outcome it replaces. It returns the outcome's index: the calls recorded
// before it.
func (w *window) put(v uint32) uint64 {
	i := w.next.Add(1) - 1
	old := w.ring[i%w.n].Swap(v)
	if d := int64(v>>1&1) - int64(old>>1&1); d != 0 {
		w.fails.Add(d)
	}
	if d := int64(v>>2&1) - int64(old>>2&1); d != 0 {
		w.slows.Add(d)
	}
	return i
}

// counts returns the calls, failures and slow calls in the window.
func (w *window) counts() (calls, fails, slows int64) {
	if w.ring != nil {
		return int64(min(w.next.Load(), w.n)), w.fails.Load(), w.slows.Load()
	}
	for i := range w.buckets {
		bk := &w.buckets[i]
		calls += bk.calls.Load()
		fails += bk.fails.Load()
		slows += bk.slows.Load()
	}
	for i := range w.pending {
		calls += w.pending[i].n.Load()
	}
	return calls, fails, slows
}

// startTicking starts the time window's timer if it is not running. The
// check is a plain load: after the first call, the hot path writes only its
// bucket.
func (w *window) startTicking() {
	if w.ticking.Load() || !w.ticking.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retired {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.tick, w.onTick)
	} else {
		w.timer.Reset(w.tick)
	}
}

// onTick moves the window on by one bucket, keeps ticking while the
// window holds calls, and then has the breaker judge the window's rates,
// which may have reached their thresholds with no failure recorded (see
// Breaker.judge).
func (w *window) onTick() {
	if w.advance() {
		w.br.judge(w, w.gen.Load(), failure{})
	}
}

// advance is onTick's move; it reports whether the window is still live.
func (w *window) advance() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retired {
		return false
	}
	// Successes counted since the last tick belong to the bucket closing
	// now; one counted while we flush belongs to the next, and is flushed
	// at the next tick.
	var n int64
	for i := range w.pending {
		n += w.pending[i].n.Swap(0)
	}
	if n != 0 {
		w.buckets[w.head.Load()].calls.Add(n)
	}
	h := (w.head.Load() + 1) % uint32(len(w.buckets))
	bk := &w.buckets[h]
	bk.calls.Store(0)
	bk.fails.Store(0)
	bk.slows.Store(0)
	w.ticks.Add(1)
	w.head.Store(h)
	if c, _, _ := w.counts(); c > 0 {
		w.timer.Reset(w.tick)
		return true
	}
	// Stop, then look again: a call recorded meanwhile either sees ticking
	// false and restarts the timer itself, or is seen here (its add comes
	// before its load of ticking; our store before our sum).
	w.ticking.Store(false)
	if c, _, _ := w.counts(); c > 0 && w.ticking.CompareAndSwap(false, true) {
		w.timer.Reset(w.tick)
	}
	return true
}

// retire stops the window for good: it counts no more results, and a time
// window's counts freeze and its timer stops. The breaker's lock is held.
func (w *window) retire() {
	w.gen.Store(retiredGen)
	if w.ring != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.retired = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// totals counts a breaker's results and refusals since it was built, on
// stripes (see stripeOf), so that parallel callers seldom write the same
// cache line.
type totals struct {
	stripes [pendingStripes]totalStripe
}

type totalStripe struct {
	calls, fails, rejects atomic.Uint64
	_                     [104]byte // with the counters, two cache lines
}

// call, reject and sum do nothing on a nil *totals (a breaker built
// without WithTotals).
func (t *totals) call(fail bool) {
	if t == nil {
		return
	}
	s := &t.stripes[stripeOf()]
	s.calls.Add(1)
	if fail {
		s.fails.Add(1)
	}
}

func (t *totals) reject() {
	if t != nil {
		t.stripes[stripeOf()].rejects.Add(1)
	}
}

func (t *totals) sum() (calls, fails, rejects uint64) {
	if t == nil {
		return 0, 0, 0
	}
	for i := range t.stripes {
		s := &t.stripes[i]
		calls += s.calls.Load()
		fails += s.fails.Load()
		rejects += s.rejects.Load()
	}
	return calls, fails, rejects
}
