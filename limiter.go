package resilient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrConcurrencyLimit is the error a [ConcurrencyLimiter] refuses an attempt
// with when its limit of attempts in flight is reached and no slot comes
// free within its wait. The call it ends returns an [*Error] with
// [ReasonRejected] that matches it and [ErrRejected]; [RejectedBy] names it
// [PolicyConcurrency]. The refusal itself allocates nothing.
var ErrConcurrencyLimit = errors.New("resilient: concurrency limit reached")

// Defaults of a [ConcurrencyLimiter] built without options.
const (
	DefaultInitialLimit = 20
	DefaultMinLimit     = 1
	DefaultMaxLimit     = 1000
)

// ConcurrencyLimiter limits how many attempts are in flight against an
// upstream, like a [Bulkhead], but finds the limit itself: it raises the
// limit while the upstream's latency stays near its minimum, and lowers it
// when latency climbs (a queue is forming upstream) or attempts fail. So it
// settles near the upstream's real capacity, the concurrency beyond which
// more in flight adds only waiting, and follows it as it changes: callers
// get the upstream's throughput without its queue. It follows Netflix's
// concurrency-limits, with two algorithms: [WithGradient2] (the default,
// driven by latency) and [WithAIMD] (driven by failures and a latency
// threshold).
//
// An attempt takes a slot before it runs and gives it back when it ends;
// when the limit is reached it waits for a slot up to the limiter's wait
// ([WithLimitWait]; default 0: it is refused at once), then is refused with
// [ErrConcurrencyLimit]. The limiter measures each attempt's latency itself,
// from its admission to its end, and learns from each one but those
// classified [Ignore] (the caller's own cancellation, a hedge that lost).
//
// The limit changes once per window of samples: at least [WithMinSamples]
// attempts, and at least as many as the limit (about one round trip at the
// limit). A window in which fewer than half the slots were used says
// nothing about capacity and leaves the limit as it is.
//
// Decision: a slot is held per attempt, as a [Bulkhead]'s is, so no slot is
// held through a backoff wait.
//
// The zero value is not usable; build one with [NewConcurrencyLimiter]. A
// ConcurrencyLimiter is a [Policy] ([WithConcurrencyLimit]), safe for
// concurrent use, meant to be shared by every executor that calls one
// upstream ([Keyed] keeps one per host). An admitted attempt costs two clock
// reads and a few atomic operations, no lock and no allocation; the lock is
// taken once per window, by the attempt that closes it.
type ConcurrencyLimiter struct {
	inflight atomic.Int64
	// limit is the limit in force: min <= limit <= max. learned is the
	// limit the algorithm found: the same but during a probe.
	limit   atomic.Int64
	learned atomic.Int64
	wait    time.Duration
	queue   waitQueue
	epoch   time.Time

	// The window being collected. Its counters are reset one by one when it
	// closes, so a sample that lands meanwhile may be split between two
	// windows: a skew of one sample, harmless to a mean.
	samples atomic.Int64 // attempts sampled
	sum     atomic.Int64 // their latency, ns
	drops   atomic.Int64 // of them, failed ([Retry]) or slower than AIMD's threshold
	peak    atomic.Int64 // the most attempts in flight at once
	target  atomic.Int64 // samples that close the window
	// probeFrom: attempts admitted before it (ns since epoch) are not
	// sampled while a probe's window is collected (see gradient2).
	probeFrom atomic.Int64

	mu         sync.Mutex // closes windows; guards the fields below
	algo       limitAlgorithm
	est        float64 // the limit, unrounded
	min, max   int
	minSamples int
	slow       time.Duration // AIMD's latency threshold; 0: none
	probing    bool
	settling   bool // the window after a probe, which refills the queue
}

// limitAlgorithm computes the next limit from a window's statistics.
type limitAlgorithm interface {
	// update returns the limit after window w, and whether to probe the
	// upstream's latency at a lower limit for the next window.
	update(w sampleWindow, limit float64) (next float64, probe bool)
	// probed learns the result of a probe.
	probed(w sampleWindow)
}

// sampleWindow is what a limiter learned from one window of samples.
type sampleWindow struct {
	samples int64         // attempts sampled
	mean    time.Duration // their mean latency
	drops   int64         // of them, failed or too slow
	peak    int64         // the most attempts in flight at once
}

// ConcurrencyOption configures a [ConcurrencyLimiter] built by
// [NewConcurrencyLimiter].
type ConcurrencyOption func(*ConcurrencyLimiter) error

// WithInitialLimit sets the limit the limiter starts with: n must be >= 1;
// the default is [DefaultInitialLimit] (20). It is brought within the
// bounds of [WithLimitBounds].
func WithInitialLimit(n int) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if n < 1 {
			return optionError("WithInitialLimit", "n must be >= 1, got %d", n)
		}
		c.est = float64(n)
		return nil
	}
}

// WithLimitBounds bounds the limit to [min, max]: 1 <= min <= max. The
// defaults are [DefaultMinLimit] (1) and [DefaultMaxLimit] (1000).
func WithLimitBounds(min, max int) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if min < 1 || max < min {
			return optionError("WithLimitBounds", "need 1 <= min <= max, got min %d, max %d", min, max)
		}
		c.min, c.max = min, max
		return nil
	}
}

// WithLimitWait sets how long an attempt may wait for a slot when the limit
// is reached before it is refused with [ErrConcurrencyLimit]. d must be >=
// 0; 0, the default, refuses at once. Waiters are served in order of
// arrival.
func WithLimitWait(d time.Duration) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if d < 0 {
			return optionError("WithLimitWait", "d must be >= 0, got %v", d)
		}
		c.wait = d
		return nil
	}
}

// WithMinSamples sets the fewest attempts a window holds before the limit
// may change: n must be >= 1; the default is 50. A window also holds at
// least as many attempts as the limit. Larger windows react more slowly and
// are less fooled by noisy latency: with the default, the limit holds its
// own against latencies that vary by ±90% from one attempt to the next.
func WithMinSamples(n int) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if n < 1 {
			return optionError("WithMinSamples", "n must be >= 1, got %d", n)
		}
		c.minSamples = n
		return nil
	}
}

// AIMD configures the additive-increase, multiplicative-decrease algorithm
// ([WithAIMD]), the one TCP's congestion control made famous: the limit
// grows by one per window while nothing goes wrong, and is multiplied by
// Backoff after a window in which an attempt failed ([Retry]: a 503, a 429,
// a timeout) or took longer than Slow. It reacts to failures, and to
// latency only through Slow, which is the latency the caller is willing to
// see: set it a little above the upstream's latency when it is not loaded.
type AIMD struct {
	// Slow is the latency above which an attempt counts as a failure; 0
	// counts failures only. Must be >= 0.
	Slow time.Duration
	// Backoff multiplies the limit after a window with failures: in [0.5,
	// 1); 0 means the default, 0.9.
	Backoff float64
}

// WithAIMD makes the limiter use the AIMD algorithm (see [AIMD]).
func WithAIMD(a AIMD) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if a.Backoff == 0 {
			a.Backoff = 0.9
		}
		var bad []string // every invalid field is reported
		if a.Slow < 0 {
			bad = append(bad, fmt.Sprintf("Slow must be >= 0, got %v", a.Slow))
		}
		if !(a.Backoff >= 0.5 && a.Backoff < 1) {
			bad = append(bad, fmt.Sprintf("Backoff must be in [0.5, 1), got %v", a.Backoff))
		}
		if bad != nil {
			return optionError("WithAIMD", "%s", strings.Join(bad, "; "))
		}
		c.algo, c.slow = &aimd{backoff: a.Backoff}, a.Slow
		return nil
	}
}

// Gradient2 configures the latency-driven algorithm ([WithGradient2]), after
// Netflix's Gradient2. Once per window it compares the window's mean latency
// with the upstream's baseline latency, measured when it is not loaded:
//
//	gradient = Tolerance · baseline / latency
//
// The set point is a gradient of 1: latency at Tolerance times the
// baseline. Above it (the latency is lower) and with nothing failed, the
// limit grows by up to Smoothing·√limit per window, less as the latency
// nears the set point, so that it settles instead of overshooting. Below it,
// the limit shrinks by Smoothing·(1 − gradient) of itself, at most
// Smoothing/2 per window. A window in which a share f of the attempts failed
// has a gradient of at most 1 − f. In an upstream whose latency grows with
// its queue beyond its capacity C, the limit settles near Tolerance·C.
//
// Decision: the baseline is measured by probes, not kept as a long-term
// average of the latency as Netflix's Gradient2 does. A long-term average
// follows a lasting queue up, so a limit that is too high (one that started
// high, or an upstream that lost capacity) makes its own queue look normal
// and never comes down. Instead, the first window, and then one window in
// every ProbeEvery in which the limit was reached, runs at half the limit:
// the queue drains, and the mean latency of the attempts admitted during it
// is measured. The baseline is the mean of the last three probes (noise in
// one probe moves it by a third), started anew when a probe finds less
// than two thirds of it (the queue that was measured is draining). The
// window after a probe is not judged: the drained queue would flatter it.
// The price is a window at half the limit in every ProbeEvery windows under
// full load: 2.5% to 5% of the throughput, with the defaults (5% while the
// limit is below the minimum window, when a probe spans several round
// trips).
type Gradient2 struct {
	// Tolerance is how many times the baseline the latency may be before
	// the limit shrinks: >= 1; 0 means the default, 1.1.
	Tolerance float64
	// Smoothing is how much of a window's verdict is applied: in (0, 1]; 0
	// means the default, 0.2.
	Smoothing float64
	// ProbeEvery is how many windows at the limit pass between probes of the
	// baseline: >= 2; 0 means the default, 20.
	ProbeEvery int
}

// WithGradient2 makes the limiter use the Gradient2 algorithm (see
// [Gradient2]). It is the default, with Gradient2{}.
func WithGradient2(g Gradient2) ConcurrencyOption {
	return func(c *ConcurrencyLimiter) error {
		if g.Tolerance == 0 {
			g.Tolerance = 1.1
		}
		if g.Smoothing == 0 {
			g.Smoothing = 0.2
		}
		if g.ProbeEvery == 0 {
			g.ProbeEvery = 20
		}
		var bad []string // every invalid field is reported
		if !(g.Tolerance >= 1) || math.IsInf(g.Tolerance, 1) {
			bad = append(bad, fmt.Sprintf("Tolerance must be >= 1 and finite, got %v", g.Tolerance))
		}
		if !(g.Smoothing > 0 && g.Smoothing <= 1) {
			bad = append(bad, fmt.Sprintf("Smoothing must be in (0, 1], got %v", g.Smoothing))
		}
		if g.ProbeEvery < 2 {
			bad = append(bad, fmt.Sprintf("ProbeEvery must be >= 2, got %d", g.ProbeEvery))
		}
		if bad != nil {
			return optionError("WithGradient2", "%s", strings.Join(bad, "; "))
		}
		c.algo, c.slow = &gradient2{cfg: g}, 0
		return nil
	}
}

// NewConcurrencyLimiter builds an adaptive concurrency limiter; see
// [ConcurrencyLimiter] for the model. Without options it uses
// [WithGradient2] with its defaults, starts at a limit of 20 within [1,
// 1000], and refuses at once when the limit is reached. An invalid option is
// an error that names it.
//
// The limiter's clock starts when it is built: in testing/synctest bubbles,
// build it inside the bubble.
func NewConcurrencyLimiter(opts ...ConcurrencyOption) (*ConcurrencyLimiter, error) {
	c := &ConcurrencyLimiter{
		est:        DefaultInitialLimit,
		min:        DefaultMinLimit,
		max:        DefaultMaxLimit,
		minSamples: 50,
		epoch:      time.Now(),
	}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewConcurrencyLimiter", "nil option"))
		} else if err := o(c); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, joinErrors(errs)
	}
	if c.algo == nil {
		_ = WithGradient2(Gradient2{})(c)
	}
	c.est = c.clamp(c.est)
	c.publish(c.est, c.est)
	c.probeFrom.Store(-1)
	return c, nil
}

// MustNewConcurrencyLimiter is like [NewConcurrencyLimiter] but panics on an
// invalid option. It serves package-level variables.
func MustNewConcurrencyLimiter(opts ...ConcurrencyOption) *ConcurrencyLimiter {
	c, err := NewConcurrencyLimiter(opts...)
	if err != nil {
		panic(err)
	}
	return c
}

// WithConcurrencyLimit limits an executor's attempts in flight with c (see
// [ConcurrencyLimiter]); one limiter may be shared by any number of
// executors. It adds c as a [Policy], after those already added: put it
// after a breaker, so that rejected calls take no slot. A nil limiter is
// refused.
func WithConcurrencyLimit(c *ConcurrencyLimiter) Option {
	return optionFunc(func(e *Executor) error {
		if c == nil {
			return optionError("WithConcurrencyLimit", "nil limiter")
		}
		return WithPolicy(c).apply(e)
	})
}

// Limit returns the limit the limiter has learned. It is in force but
// during a Gradient2 probe, one window long, when half of it is (see
// [Gradient2]).
func (c *ConcurrencyLimiter) Limit() int { return int(c.learned.Load()) }

// InFlight returns how many attempts hold a slot now.
func (c *ConcurrencyLimiter) InFlight() int { return int(c.inflight.Load()) }

// Admit takes a slot for the attempt, waiting for one up to the limiter's
// wait; it returns [ErrConcurrencyLimit] when none comes free in time, or
// ctx's error when ctx ends the wait. The Permit carries the time of
// admission.
func (c *ConcurrencyLimiter) Admit(ctx context.Context, _ int) (Permit, error) {
	n, ok := c.tryAcquire()
	if !ok {
		if c.wait == 0 {
			return Permit{}, ErrConcurrencyLimit
		}
		var err error
		if n, err = c.acquireSlow(ctx); err != nil {
			return Permit{}, err
		}
	}
	for { // the window's peak, written only when it grows
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return Permit{Token: uint64(time.Since(c.epoch))}, nil
}

// Done gives the attempt's slot back and learns its latency and outcome;
// an [Ignore] outcome teaches nothing.
func (c *ConcurrencyLimiter) Done(p Permit, r Report) {
	c.release()
	if r.Outcome == Ignore {
		return
	}
	start := int64(p.Token)
	if start < c.probeFrom.Load() {
		return // admitted before the probe: not at the probe's limit
	}
	rtt := int64(time.Since(c.epoch)) - start
	if r.Outcome == Retry || (c.slow > 0 && rtt > int64(c.slow)) {
		c.drops.Add(1)
	}
	c.sum.Add(rtt)
	if c.samples.Add(1) >= c.target.Load() && c.mu.TryLock() {
		c.closeWindow()
		c.mu.Unlock()
	}
}

// closeWindow hands the window to the algorithm and applies its verdict.
func (c *ConcurrencyLimiter) closeWindow() {
	n := c.samples.Load()
	if n < c.target.Load() { // another caller closed it just now
		return
	}
	c.samples.Add(-n)
	w := sampleWindow{
		samples: n,
		mean:    time.Duration(c.sum.Swap(0) / n),
		drops:   c.drops.Swap(0),
		peak:    c.peak.Swap(c.inflight.Load()),
	}
	switch {
	case c.probing:
		c.probing, c.settling = false, true
		c.probeFrom.Store(-1)
		c.algo.probed(w)
		c.publish(c.est, c.est)
		return
	case c.settling:
		// Decision: the window after a probe is not judged. The probe
		// drained the upstream's queue, so its latency is low whatever
		// the limit, and it would raise the limit past its set point.
		c.settling = false
		return
	}
	next, probe := c.algo.update(w, c.est)
	c.est = c.clamp(next)
	if probe {
		c.probing = true
		c.probeFrom.Store(int64(time.Since(c.epoch)))
		c.publish(math.Max(float64(c.min), c.est/2), c.est)
		return
	}
	c.publish(c.est, c.est)
}

func (c *ConcurrencyLimiter) clamp(l float64) float64 {
	return math.Min(math.Max(l, float64(c.min)), float64(c.max))
}

// publish puts limit l in force, and the learned one in view, and sizes
// the next window: at least minSamples samples, and about one round trip
// at the limit.
func (c *ConcurrencyLimiter) publish(l, learned float64) {
	c.learned.Store(max(int64(learned), 1))
	n := max(int64(l), 1)
	old := c.limit.Swap(n)
	c.target.Store(max(int64(c.minSamples), n))
	for i := old; i < n && c.queue.waiting.Load() > 0; i++ {
		c.queue.wakeOne() // slots the new limit adds
	}
}

// tryAcquire takes a slot if the limit allows, and returns the number in
// flight with it.
func (c *ConcurrencyLimiter) tryAcquire() (int64, bool) {
	for {
		n := c.inflight.Load()
		if n >= c.limit.Load() {
			return n, false
		}
		if c.inflight.CompareAndSwap(n, n+1) {
			return n + 1, true
		}
	}
}

func (c *ConcurrencyLimiter) release() {
	c.inflight.Add(-1)
	if c.queue.waiting.Load() > 0 {
		c.queue.wakeOne()
	}
}

// acquireSlow queues for a slot until one is free, the wait is over, or ctx
// is done.
func (c *ConcurrencyLimiter) acquireSlow(ctx context.Context) (int64, error) {
	var n int64
	err := c.queue.wait(ctx, c.wait, ErrConcurrencyLimit, func() bool {
		var ok bool
		n, ok = c.tryAcquire()
		return ok
	})
	return n, err
}

// waitQueue lines up callers that wait for a slot, oldest first.
type waitQueue struct {
	// waiting counts callers inside wait. Invariant: a caller increments it
	// before its last try, and a releaser frees its slot before it looks at
	// waiting, so a freed slot is never missed.
	waiting atomic.Int64
	mu      sync.Mutex
	queue   []chan struct{} // guarded by mu
}

// wait calls try until it succeeds, waking each time a slot may have come
// free, for at most d; it returns full when d passes first, or ctx's error.
func (q *waitQueue) wait(ctx context.Context, d time.Duration, full error, try func() bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.waiting.Add(1)
	defer q.waiting.Add(-1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	w := make(chan struct{}, 1)
	for woken := false; ; woken = true {
		q.mu.Lock()
		if try() {
			q.mu.Unlock()
			return nil
		}
		if woken { // lost the slot to a caller that did not queue: keep our place
			q.queue = append(q.queue, nil)
			copy(q.queue[1:], q.queue)
			q.queue[0] = w
		} else {
			q.queue = append(q.queue, w)
		}
		q.mu.Unlock()

		var err error
		select {
		case <-w:
			continue // a slot may be free: try again
		case <-timer.C:
			err = full
		case <-ctx.Done():
			err = ctx.Err()
		}
		if !q.dequeue(w) {
			// A wake came as we gave up: pass it on, or the waiters behind
			// us would miss the slot it announced.
			<-w
			q.wakeOne()
		}
		return err
	}
}

func (q *waitQueue) wakeOne() {
	q.mu.Lock()
	if len(q.queue) > 0 {
		w := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		w <- struct{}{} // buffered; each waiter is queued once at a time
	}
	q.mu.Unlock()
}

// dequeue removes w from the queue and reports whether it was still there.
func (q *waitQueue) dequeue(w chan struct{}) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.queue {
		if x == w {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			return true
		}
	}
	return false
}

// aimd is the AIMD algorithm (see AIMD).
type aimd struct{ backoff float64 }

func (a *aimd) update(w sampleWindow, limit float64) (float64, bool) {
	switch {
	case w.drops > 0:
		return limit * a.backoff, false
	case float64(w.peak)*2 >= limit: // the limit was used: room to grow
		return limit + 1, false
	}
	return limit, false
}

func (a *aimd) probed(sampleWindow) {}

// gradient2 is the Gradient2 algorithm (see Gradient2).
type gradient2 struct {
	cfg      Gradient2
	baseline time.Duration // 0 until the first window
	full     int           // windows at the limit since the last probe
	// The latest probes' mean latencies, newest at probes[n-1 % len].
	probes [gradientProbes]time.Duration
	n      int // probes kept, up to len(probes)
}

// gradientProbes is how many probes the baseline averages.
const gradientProbes = 3

func (g *gradient2) update(w sampleWindow, limit float64) (float64, bool) {
	if g.baseline == 0 {
		// Provisional, until the first probe, which comes now.
		g.baseline = w.mean
		return limit, true
	}
	if float64(w.peak)*2 < limit {
		return limit, false // the limit is not what holds callers back
	}
	// grad is 1 at the set point, latency = Tolerance·baseline; above 1
	// (up to Tolerance) below it.
	grad := g.cfg.Tolerance * float64(g.baseline) / float64(max(w.mean, 1))
	if w.drops > 0 {
		grad = math.Min(grad, 1-float64(w.drops)/float64(w.samples))
	}
	next := limit
	switch {
	case grad > 1 && w.drops == 0:
		// Grow by up to Smoothing·√limit, less as latency nears the set
		// point, so that the limit settles on it instead of overshooting.
		headroom := 1.0
		if g.cfg.Tolerance > 1 {
			headroom = math.Min(1, (grad-1)/(g.cfg.Tolerance-1))
		}
		next += g.cfg.Smoothing * math.Sqrt(limit) * headroom
	case grad < 1:
		next -= g.cfg.Smoothing * (1 - math.Max(grad, 0.5)) * limit
	}
	if float64(w.peak) >= math.Floor(limit) {
		if g.full++; g.full >= g.cfg.ProbeEvery {
			g.full = 0
			return next, true
		}
	}
	return next, false
}

// probed sets the baseline to the mean of the latest probes. A probe that
// finds less than two thirds of the baseline starts the average anew: the
// baseline was measured with a queue (the limit started high, and the
// first probes are still draining it), not merely with noise.
func (g *gradient2) probed(w sampleWindow) {
	m := max(w.mean, 1)
	if g.n > 0 && 3*m < 2*g.baseline {
		g.n = 0
	}
	g.probes[g.n%gradientProbes] = m
	g.n++
	var sum time.Duration
	k := min(g.n, gradientProbes)
	for _, p := range g.probes[:k] {
		sum += p
	}
	g.baseline = sum / time.Duration(k)
}
