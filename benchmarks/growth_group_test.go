package benchmarks

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
)

// Growth: Group as its waiters grow.
//
// A round is n callers asking at once: all for one key (they share one
// execution), or each for a key of its own (n executions in flight at
// once, the group's map holding n keys). The function returns only once
// every caller of the round has joined, so that each round has exactly the
// sharing its name says: one execution for n waiters, or n executions. The
// callers are n goroutines that live through the whole benchmark, woken
// for each round; a round ends when every one has its result.
//
// The benchmark reports ns/waiter, B/waiter and allocs/waiter: the rounds'
// time and allocations (runtime.MemStats) divided by their callers (ns/op,
// B/op and allocs/op are per round). lib=direct is the same rounds with
// every caller calling the function itself, no group: the harness's own
// cost (waking n goroutines, counting them in and out, four allocations
// a round), which the group's figures include.

// groupRound is one round, shared by its callers.
type groupRound struct {
	n       int64
	stop    bool                               // the callers return instead
	start   chan struct{}                      // closed to start the round
	next    *groupRound                        // set before start is closed
	joined  atomic.Int64                       // callers that joined an execution
	release chan struct{}                      // closed once every caller has joined
	ended   atomic.Int64                       // callers that have their result
	done    chan struct{}                      // receives once every caller has its result
	calls   atomic.Int64                       // executions of the function
	bad     atomic.Int64                       // callers that got a wrong result or were not shared with
	call    func(context.Context) (int, error) // fn, made once per round
}

func newGroupRound(n int, done chan struct{}) *groupRound {
	r := &groupRound{n: int64(n), start: make(chan struct{}), release: make(chan struct{}), done: done}
	r.call = r.fn
	return r
}

// join counts one caller in, and releases the round's executions when it
// is the last.
func (r *groupRound) join() {
	if r.joined.Add(1) == r.n {
		close(r.release)
	}
}

// fn is the function the callers ask for: it returns once every caller
// has joined.
func (r *groupRound) fn(ctx context.Context) (int, error) {
	r.calls.Add(1)
	select {
	case <-r.release:
		return want, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// joinCtx is a caller's context. A Group calls Done once per caller, on
// the caller's goroutine, as it starts to wait for the execution it joined
// or started: the moment the round counts it in. Done returns nil, a
// channel that never fires: no caller leaves.
type joinCtx struct {
	context.Context
	round *groupRound
}

func (c *joinCtx) Done() <-chan struct{} {
	c.round.join()
	return nil
}

// groupCall is one caller's call in a round.
type groupCall func(ctx *joinCtx, caller int) (v int, shared bool, err error)

// groupLib is one side of the benchmark: build returns the call of each
// caller, for rounds whose callers share one key or have a key each.
type groupLib struct {
	name   string
	shares bool // callers for one key share an execution
	build  func(sameKey bool) groupCall
}

var groupLibs = []groupLib{
	{"resilient", true, func(sameKey bool) groupCall {
		g := resilient.MustNewGroup[int, int]()
		return func(ctx *joinCtx, caller int) (int, bool, error) {
			key := 0
			if !sameKey {
				key = caller
			}
			return g.DoShared(ctx, key, ctx.round.call)
		}
	}},
	{"direct", false, func(sameKey bool) groupCall {
		return func(ctx *joinCtx, _ int) (int, bool, error) {
			_ = ctx.Done() // counts the caller in
			v, err := ctx.round.fn(ctx.Context)
			return v, false, err
		}
	}},
}

// groupHarness runs rounds of n callers.
type groupHarness struct {
	n      int
	call   groupCall
	shared bool          // whether every caller must be told it shared
	first  *groupRound   // the next round to run
	done   chan struct{} // every round's
	timer  *time.Timer
	exited sync.WaitGroup
}

func newGroupHarness(n int, call groupCall, shared bool) *groupHarness {
	h := &groupHarness{n: n, call: call, shared: shared, done: make(chan struct{}, 1),
		timer: time.NewTimer(time.Hour)}
	h.timer.Stop()
	h.first = newGroupRound(n, h.done)
	for i := range n {
		h.exited.Add(1)
		go h.caller(i, h.first)
	}
	return h
}

func (h *groupHarness) caller(i int, r *groupRound) {
	defer h.exited.Done()
	ctx := &joinCtx{Context: context.Background()}
	for ; ; r = r.next {
		<-r.start
		if r.stop {
			return
		}
		ctx.round = r
		if v, shared, err := h.call(ctx, i); err != nil || v != want || shared != h.shared {
			r.bad.Add(1)
		}
		if r.ended.Add(1) == r.n {
			h.done <- struct{}{}
		}
	}
}

// roundTimeout bounds every round: a round that does not end in time
// fails the benchmark rather than hang it.
const roundTimeout = time.Minute

// run runs one round and waits for it to end; it returns the round, or an
// error if it did not end in time.
func (h *groupHarness) run() (*groupRound, error) {
	r := h.first
	r.next = newGroupRound(h.n, h.done)
	h.first = r.next
	h.timer.Reset(roundTimeout)
	close(r.start)
	select {
	case <-h.done:
		h.timer.Stop()
		return r, nil
	case <-h.timer.C:
		return r, fmt.Errorf("a round of %d callers did not end within %v: %d joined, %d ended",
			h.n, roundTimeout, r.joined.Load(), r.ended.Load())
	}
}

// check returns an error unless round r had exactly the sharing it should:
// one execution for every caller (shared), or one each.
func (h *groupHarness) check(r *groupRound, shared bool) error {
	if bad := r.bad.Load(); bad > 0 {
		return fmt.Errorf("%d of %d callers got a wrong result or were wrongly told they shared", bad, r.n)
	}
	want := r.n
	if shared {
		want = 1
	}
	if got := r.calls.Load(); got != want {
		return fmt.Errorf("%d executions for %d callers, want %d", got, r.n, want)
	}
	return nil
}

// stop ends the callers, waiting at most roundTimeout.
func (h *groupHarness) stop() error {
	r := h.first
	r.stop = true
	close(r.start)
	exited := make(chan struct{})
	go func() { h.exited.Wait(); close(exited) }()
	h.timer.Reset(roundTimeout)
	defer h.timer.Stop()
	select {
	case <-exited:
		return nil
	case <-h.timer.C:
		return fmt.Errorf("%d callers did not return within %v", h.n, roundTimeout)
	}
}

// growthGroupCases are the rounds measured: n waiters on one key, or n
// keys in flight at once.
var growthGroupCases = []struct {
	n       int
	sameKey bool
}{
	{1, true}, {100, true}, {1_000, true}, {10_000, true},
	{100, false}, {1_000, false}, {10_000, false},
}

func groupCaseName(n int, sameKey bool) string {
	if sameKey {
		return fmt.Sprintf("key=same/waiters=%d", n)
	}
	return fmt.Sprintf("key=distinct/waiters=%d", n)
}

// BenchmarkGrowthGroup measures Group with 1, 100, 1k and 10k waiters on
// one key, and with 100, 1k and 10k distinct keys in flight at once.
func BenchmarkGrowthGroup(b *testing.B) {
	for _, c := range growthGroupCases {
		for _, l := range groupLibs {
			b.Run(groupCaseName(c.n, c.sameKey)+"/lib="+l.name, func(b *testing.B) {
				shared := l.shares && c.sameKey
				h := newGroupHarness(c.n, l.build(c.sameKey), shared && c.n > 1)
				defer func() {
					if err := h.stop(); err != nil {
						b.Error(err)
					}
				}()
				if _, err := h.run(); err != nil { // every caller started
					b.Fatal(err)
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				for range b.N {
					r, err := h.run()
					if err == nil {
						err = h.check(r, shared)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&after)
				waiters := float64(b.N) * float64(c.n)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/waiters, "ns/waiter")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/waiters, "B/waiter")
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/waiters, "allocs/waiter")
			})
		}
	}
}
