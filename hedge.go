package resilient

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"
)

// ErrHedgeNeedsDoHedged is returned, without calling the function, by [Do]
// and [Executor.Run] given an executor built [WithHedge]: hedged
// attempts run on other goroutines, so the function must live on the heap,
// and keeping that cost out of every other call is why hedging has its own
// entry point, [DoHedged].
var ErrHedgeNeedsDoHedged = errors.New("resilient: the executor hedges: call DoHedged")

// DoHedged is [Do] with hedging: with an executor built [WithHedge] or
// [WithAdaptiveHedge], attempts that are slow to return are raced by
// further attempts. Without hedging it is Do. Unlike Do, it allocates: the
// function and each attempt's goroutine and context live on the heap.
func DoHedged[T any](ctx context.Context, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	var zero T
	ex, err := resolve(opts)
	switch {
	case err != nil:
		return zero, err
	case ctx == nil:
		return zero, ErrNilContext
	case fn == nil:
		return zero, ErrNilFunc
	case ex.hedge == nil:
		return run(ctx, ex, nil, fn, nil)
	}
	return slowHedged(ctx, ex, nil, fn)
}

// slowHedged is slow with a hedged round for each attempt.
func slowHedged[T any](ctx context.Context, ex *Executor, res *Result[T], fn func(context.Context) (T, error)) (T, error) {
	var c call
	if cancel := c.init(ctx, ex, res != nil); cancel != nil {
		defer cancel()
	}
	defer c.stopTimer()
	if res != nil {
		c.history = &res.History
	}
	var h held[T]
	for {
		if c.ctx.Err() != nil {
			c.charges.refund(c.ex.gates)
			r, cause := c.ctxReason()
			h.drop(ex)
			return done(&c, res, *new(T), c.fail(r, cause), r)
		}
		v, err, o, rejected := hedged(&c, fn)
		v = h.next(ex, v, rejected)
		v, r, stop, err := after(&c, v, err, o, rejected)
		if stop {
			return done(&c, res, v, err, r)
		}
		h.v, h.ok = v, true
	}
}

// hedge is an executor's hedging setting. The latency tracker of an
// adaptive hedge is shared by every copy of the executor.
type hedge struct {
	after      time.Duration // fixed delay; the delay until enough samples when adaptive
	max        int           // attempts in flight at once, >= 2
	percentile float64       // 0: fixed
	lat        *latencies
}

// WithHedge starts another attempt when the running one has not returned
// after the delay after, and again after each further delay, up to
// maxInFlight attempts at once; the first result that is not a retryable
// failure wins, every other attempt is cancelled with cause [ErrAbandoned]
// (it counts neither way for any policy or hook), waited for, and its value
// released through [OnDiscard]. No goroutine outlives the call, so a
// function that ignores its context delays the return by as long as it
// runs.
//
// Hedges are attempts: they count against [WithAttempts], each one passes
// the executor's policies (a breaker counts it), and each one must be
// allowed by every [RetryGate] (a retry budget) before it starts; a refused
// hedge is simply not started. Use hedging only for calls that are safe to
// repeat. after must be > 0; maxInFlight >= 2. Default: no hedging.
//
// With hedging the function always runs on its own goroutine and its own
// context, which is cancelled when the attempt loses or the call ends.
func WithHedge(after time.Duration, maxInFlight int) Option {
	return optionFunc(func(e *Executor) error {
		if err := validHedge("WithHedge", after, maxInFlight); err != nil {
			return err
		}
		e.hedge = &hedge{after: after, max: maxInFlight}
		return nil
	})
}

// WithoutHedging removes hedging from an executor derived from one that
// hedges: Do(ctx, fn, ex, WithoutHedging()) for a call that is not safe to
// repeat, or an executor built once for such calls. Its breaker, budget and
// other shared parts stay shared.
func WithoutHedging() Option {
	return optionFunc(func(e *Executor) error {
		e.hedge = nil
		return nil
	})
}

// WithAdaptiveHedge is [WithHedge] with a delay that follows the upstream:
// the given percentile (in (0, 1), such as 0.95) of the durations of the
// executor's last 128 attempts. Until 16 attempts have been measured it
// waits initial. The measurements are shared by every copy of the executor.
func WithAdaptiveHedge(percentile float64, initial time.Duration, maxInFlight int) Option {
	return optionFunc(func(e *Executor) error {
		if !(percentile > 0 && percentile < 1) {
			return optionError("WithAdaptiveHedge", "percentile must be in (0, 1), got %v", percentile)
		}
		if err := validHedge("WithAdaptiveHedge", initial, maxInFlight); err != nil {
			return err
		}
		e.hedge = &hedge{after: initial, max: maxInFlight, percentile: percentile, lat: &latencies{}}
		return nil
	})
}

func validHedge(name string, after time.Duration, maxInFlight int) error {
	if after <= 0 {
		return optionError(name, "delay must be > 0, got %v", after)
	}
	if maxInFlight < 2 {
		return optionError(name, "maxInFlight must be >= 2, got %d", maxInFlight)
	}
	return nil
}

// latencies keeps the last len(ring) attempt durations, lock-free, and the
// percentile computed from them every recompute samples.
type latencies struct {
	ring  [128]atomic.Int64
	count atomic.Uint64
	delay atomic.Int64 // the current percentile; 0 until minSamples
}

const (
	minSamples = 16
	recompute  = 16
)

func (l *latencies) add(d time.Duration, percentile float64) {
	n := l.count.Add(1)
	l.ring[(n-1)%uint64(len(l.ring))].Store(int64(d))
	if n < minSamples || n%recompute != 0 {
		return
	}
	var buf [len(l.ring)]int64
	k := min(int(n), len(buf))
	for i := range k {
		buf[i] = l.ring[i].Load()
	}
	s := buf[:k]
	slices.Sort(s)
	l.delay.Store(s[min(k-1, int(percentile*float64(k)))])
}

func (h *hedge) delay() time.Duration {
	if h.lat != nil {
		if d := h.lat.delay.Load(); d > 0 {
			return time.Duration(d)
		}
	}
	return h.after
}

// hedgeResult is one hedged attempt's end, sent to the caller's goroutine.
type hedgeResult[T any] struct {
	n        int
	v        T
	err      error
	o        Outcome
	d        time.Duration
	rejected error
	ran      bool // fn ran: its value, even a refused one, must be released
	panicked any
	paniced  bool
	hedged   bool
}

// hedged runs one round of hedged attempts: the first attempt, then another
// after each hedge delay while none has returned an acceptable result. It
// returns the winner (the first result that is not Retry), or the last
// retryable failure when every attempt of the round failed that way, or a
// rejection when no attempt could start at all. c.n counts every attempt
// started.
func hedged[T any](c *call, fn func(context.Context) (T, error)) (v T, err error, o Outcome, rejected error) {
	ex := c.ex
	c.fresh = false // the round's attempts read their own clocks
	// Attempts still running when the round has its result are cancelled
	// with ErrAbandoned, which hedgeAttempt (and any code inside fn that
	// checks it) takes for Ignore.
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(ErrAbandoned)
	results := make(chan hedgeResult[T], ex.hedge.max)
	inflight := 0
	first := c.n + 1
	launch := func() {
		c.n++
		inflight++
		go hedgeAttempt(ctx, c, fn, c.n, c.n != first, c.charges.take(), results)
	}
	// settle waits for every attempt still running, releasing their values.
	settle := func() {
		cancel(ErrAbandoned)
		for ; inflight > 0; inflight-- {
			r := <-results
			if r.rejected != nil {
				c.n-- // never counts
			} else {
				c.record(r.pending(), r.err, r.o, 0, FromBackoff)
			}
			if r.ran {
				release(ex, r.v)
			}
		}
	}

	launch()
	timer := time.NewTimer(ex.hedge.delay())
	defer timer.Stop()
	var (
		have bool
		last hedgeResult[T]
		calm bool // the upstream asked for a pause: no more hedges this round
	)
	// Attempts are recorded as they end, but for the round's retryable
	// result, which after records with the wait that follows it: it is told
	// of last in its round.
	for inflight > 0 {
		var r hedgeResult[T]
		got, fired := false, false
		select {
		case r = <-results:
			got = true
		case <-timer.C:
			fired = true
			// A result that is already there is looked at before a hedge is
			// started in its place.
			select {
			case r = <-results:
				got = true
			default:
			}
		}
		if got {
			inflight--
			switch {
			case r.paniced:
				c.record(r.pending(), r.err, r.o, 0, FromBackoff)
				settle()
				panic(r.panicked)
			case r.rejected != nil:
				// Refused before it was sent: it never counts, and it ends
				// the round only when nothing else can.
				c.n--
				if r.ran {
					release(ex, r.v)
				}
				if !have && inflight == 0 {
					return v, nil, Ignore, r.rejected
				}
			case r.o != Retry:
				// The winner ends the call: no wait follows it, and it is
				// told of before the attempts it beat.
				c.record(r.pending(), r.err, r.o, 0, FromBackoff)
				c.rec = pending{done: true}
				settle()
				if have {
					c.record(last.pending(), last.err, last.o, 0, FromBackoff)
					release(ex, last.v)
				}
				return r.v, r.err, r.o, nil
			case calm && hintOf(r.err) == 0:
				// The round's hinted failure stays its result, so that the
				// next round waits as the upstream asked.
				c.record(r.pending(), r.err, r.o, 0, FromBackoff)
				release(ex, r.v)
			default:
				if have {
					c.record(last.pending(), last.err, last.o, 0, FromBackoff)
					release(ex, last.v)
				}
				last, have = r, true
				// Decision: a server's hint (Retry-After) holds for the whole
				// round; attempts already running go on, none is added.
				calm = calm || hintOf(r.err) > 0
			}
		}
		if fired {
			if inflight > 0 && !calm && inflight < ex.hedge.max && c.n < ex.attempts && c.allowRetry() == nil {
				launch()
			}
			timer.Reset(ex.hedge.delay())
		}
	}
	c.rec = last.pending()
	return last.v, last.err, last.o, nil
}

// pending is the record after makes of r.
func (r *hedgeResult[T]) pending() pending { return pending{n: r.n, d: r.d, hedged: r.hedged} }

// hedgeAttempt runs attempt n on its own goroutine and context, under the
// executor's policies, and sends its result; a panic is caught here and
// re-raised by the caller's goroutine (see hedged).
func hedgeAttempt[T any](ctx context.Context, c *call, fn func(context.Context) (T, error), n int, hedged bool, paid charges, out chan<- hedgeResult[T]) {
	ex := c.ex
	r := hedgeResult[T]{n: n, hedged: hedged}
	var buf [maxFastPolicies]Permit
	ps, _, err := admit(ex, ctx, n, &buf) // a hedging executor has no lone breaker
	if err != nil {
		paid.refund(ex.gates) // refused: what the budgets took for it is given back
		r.rejected = err
		out <- r
		return
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if ex.attemptTimeout > 0 {
		actx, cancel = context.WithTimeout(ctx, ex.attemptTimeout)
	}
	t0 := time.Now()
	finished := false
	defer func() {
		cancel()
		if finished {
			return
		}
		// Decision (DESIGN 5): a panic on a hedge goroutine must not crash
		// the process from there; it is handed to the caller's goroutine,
		// which re-panics once every attempt of the round has ended.
		p := recover()
		if p == nil {
			p = ErrPanicked // runtime.Goexit
		}
		releaseAll(ex.policies, ps, Report{Attempt: n, Outcome: Fail, Err: ErrPanicked, Duration: time.Since(t0)})
		r.panicked, r.paniced = p, true
		out <- r
	}()
	r.v, r.err = fn(actx)
	if r.err == nil && ex.check != nil {
		r.err = ex.check(r.v)
	}
	// Decision (see ErrAbandoned): an attempt that lost, and was cancelled
	// for it, is ignored rather than counted against the upstream. Any other
	// end is classified as in an unhedged call: the caller's cancellation
	// is Ignore, the executor's own time limit an ordinary failure.
	if r.err != nil && errors.Is(context.Cause(ctx), ErrAbandoned) {
		r.o = Ignore
	} else {
		r.o = ex.classify(c.parent, r.err)
	}
	r.d = time.Since(t0)
	r.ran = true
	releaseAll(ex.policies, ps, Report{Attempt: n, Outcome: r.o, Err: r.err, Duration: r.d})
	finished = true
	if rej := refusal(r.err); rej != nil { // see Reject
		r.rejected = rej
	} else if h := ex.hedge; h.lat != nil {
		h.lat.add(r.d, h.percentile)
	}
	out <- r
}
