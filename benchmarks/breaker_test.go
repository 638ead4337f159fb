package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	eabreaker "github.com/eapache/go-resiliency/breaker"
	"github.com/eapache/go-resiliency/retrier"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/sony/gobreaker/v2"

	"github.com/resilient-go/resilient"
)

// Scenarios 3, 4 and 5: circuit breakers.
//
// Every breaker gets the same job: open when at least half of the calls in
// its window failed, once the window holds 20 calls; stay open 30s. The
// window is the last 100 calls (count) or the last 10s in 10 buckets
// (time), as far as each library has one:
//
//   - resilient: WithCountWindow(100) or WithTimeWindow(10s, 10).
//   - failsafe-go: WithFailureThresholdRatio(50, 100) (count) or
//     WithFailureRateThreshold(0.5, 20, 10s) (time).
//   - gobreaker: no count window; Interval 0 (counts kept for the whole
//     closed period) for "count", Interval 10s with 1s buckets for "time",
//     ReadyToTrip on 20 requests and a 50% failure ratio.
//   - eapache: no window and no rate: it opens after 20 errors, each within
//     30s of the previous one, whatever succeeds between them. The same
//     breaker serves both rows.
//
// A breaker guards every attempt; policies are built once and shared by
// every goroutine, as each library's docs recommend.

const (
	minCalls    = 20
	failureRate = 0.5
	countWindow = 100
	timeWindow  = 10 * time.Second
	timeBuckets = 10
	openFor     = 30 * time.Second
)

// breakerLib is one side of a breaker benchmark. isOpen tells the
// library's refusal apart (nil for the direct call, which has none).
type breakerLib struct {
	name   string
	build  func(w work) op
	isOpen func(error) bool
}

// window says which kind of window a breaker is built with.
type window int

const (
	countWin window = iota
	timeWin
)

func (w window) String() string {
	if w == timeWin {
		return "time"
	}
	return "count"
}

func newResilientBreaker(win window, rate float64) *resilient.Breaker {
	opts := []resilient.BreakerOption{
		resilient.WithFailureRate(rate),
		resilient.WithMinCalls(minCalls),
		resilient.WithOpenDuration(openFor),
	}
	if win == timeWin {
		opts = append(opts, resilient.WithTimeWindow(timeWindow, timeBuckets))
	} else {
		opts = append(opts, resilient.WithCountWindow(countWindow))
	}
	return resilient.MustNewBreaker(opts...)
}

func newFailsafeBreaker(win window, rate float64) circuitbreaker.CircuitBreaker[int] {
	b := circuitbreaker.NewBuilder[int]().WithDelay(openFor)
	if win == timeWin {
		b = b.WithFailureRateThreshold(rate, minCalls, timeWindow)
	} else {
		b = b.WithFailureThresholdRatio(uint(rate*countWindow), countWindow)
	}
	return b.Build()
}

func newGobreaker(win window, rate float64) *gobreaker.CircuitBreaker[int] {
	st := gobreaker.Settings{
		Timeout: openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= minCalls && float64(c.TotalFailures) >= rate*float64(c.Requests)
		},
	}
	if win == timeWin {
		st.Interval, st.BucketPeriod = timeWindow, timeWindow/timeBuckets
	}
	return gobreaker.NewCircuitBreaker[int](st)
}

func newEapacheBreaker() *eabreaker.Breaker {
	return eabreaker.New(minCalls, 1, openFor)
}

func isResilientOpen(err error) bool { return errors.Is(err, resilient.ErrOpen) }
func isFailsafeOpen(err error) bool  { return errors.Is(err, circuitbreaker.ErrOpen) }
func isGobreakerOpen(err error) bool { return errors.Is(err, gobreaker.ErrOpenState) }
func isEapacheOpen(err error) bool   { return errors.Is(err, eabreaker.ErrBreakerOpen) }

// breakerLibs is scenarios 3 and 4: a breaker alone around one call.
func breakerLibs(win window) []breakerLib {
	return []breakerLib{
		{"direct", func(w work) op { return op(w) }, nil},
		{"resilient", func(w work) op {
			ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithBreaker(newResilientBreaker(win, failureRate)))
			return func(ctx context.Context) (int, error) { return resilient.Do(ctx, w, ex) }
		}, isResilientOpen},
		{"resilient-allow", func(w work) op {
			// The two-step API, for code that cannot wrap a function.
			br := newResilientBreaker(win, failureRate)
			return func(ctx context.Context) (int, error) {
				p, err := br.Allow()
				if err != nil {
					return 0, err
				}
				v, err := w(ctx)
				br.Record(p, err)
				return v, err
			}
		}, isResilientOpen},
		{"failsafe", func(w work) op {
			ex := failsafe.With[int](newFailsafeBreaker(win, failureRate))
			return func(ctx context.Context) (int, error) {
				return ex.Get(func() (int, error) { return w(ctx) })
			}
		}, isFailsafeOpen},
		{"gobreaker", func(w work) op {
			cb := newGobreaker(win, failureRate)
			return func(ctx context.Context) (int, error) {
				return cb.Execute(func() (int, error) { return w(ctx) })
			}
		}, isGobreakerOpen},
		{"eapache", func(w work) op {
			return eapacheBreakerOp(newEapacheBreaker(), w)
		}, isEapacheOpen},
	}
}

func eapacheBreakerOp(br *eabreaker.Breaker, w work) op {
	return func(ctx context.Context) (v int, err error) {
		err = br.Run(func() error {
			var werr error
			v, werr = w(ctx)
			return werr
		})
		return v, err
	}
}

// switchable is work that succeeds until told to fail.
type switchable struct{ failing atomic.Bool }

func (s *switchable) work(context.Context) (int, error) {
	if s.failing.Load() {
		return 0, errTransient
	}
	return want, nil
}

// tripped builds l's op and opens its breaker by failing calls; the op it
// returns runs w (which an open breaker never calls).
func tripped(l breakerLib, w work) (op, error) {
	var s switchable
	s.failing.Store(true)
	var cur atomic.Pointer[work]
	fail := work(s.work)
	cur.Store(&fail)
	call := l.build(func(ctx context.Context) (int, error) { return (*cur.Load())(ctx) })
	for i := range 10 * countWindow {
		_, err := call(context.Background())
		if l.isOpen(err) {
			cur.Store(&w)
			return call, nil
		}
		if !errors.Is(err, errTransient) {
			return nil, fmt.Errorf("%s: call %d: unexpected error %v", l.name, i+1, err)
		}
	}
	return nil, fmt.Errorf("%s: breaker still closed after %d failures", l.name, 10*countWindow)
}

// BenchmarkBreakerClosed is scenario 3: a successful call through a closed
// breaker, serially.
func BenchmarkBreakerClosed(b *testing.B) {
	for _, win := range []window{countWin, timeWin} {
		for _, l := range breakerLibs(win) {
			b.Run(fmt.Sprintf("window=%v/lib=%s", win, l.name), func(b *testing.B) {
				call := l.build(succeed)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if v, err := call(ctx); err != nil || v != want {
						b.Fatal(v, err)
					}
				}
			})
		}
	}
}

// BenchmarkBreakerClosedParallel is scenario 3 with every goroutine sharing
// one breaker: run it with -cpu 1,2 to see whether the per-call time grows
// with cores.
func BenchmarkBreakerClosedParallel(b *testing.B) {
	for _, win := range []window{countWin, timeWin} {
		for _, l := range breakerLibs(win) {
			b.Run(fmt.Sprintf("window=%v/lib=%s", win, l.name), func(b *testing.B) {
				call := l.build(succeed)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						if v, err := call(ctx); err != nil || v != want {
							b.Error(v, err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkBreakerOpen is scenario 4: the cost of a refusal by an open
// breaker (count window).
func BenchmarkBreakerOpen(b *testing.B) {
	for _, l := range breakerLibs(countWin) {
		if l.isOpen == nil {
			continue
		}
		b.Run("lib="+l.name, func(b *testing.B) {
			call, err := tripped(l, succeed)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(ctx); err == nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// retryBreakerLibs is scenario 5: up to 3 attempts with zero delay, each
// guarded by a breaker (retry outside, breaker inside), for the libraries
// that offer both. A refusal by the breaker is not retried. The breaker
// opens only when every call in its window failed (rate 1), so that the
// flaky work, which fails two attempts of three, leaves it closed.
func retryBreakerLibs(rate float64) []lib {
	return []lib{
		retryFlakyLibs[0], // direct: a loop of three attempts
		{"resilient", func(w work) op {
			ex := resilient.MustNew(
				resilient.WithAttempts(attempts),
				resilient.WithBackoff(resilient.Constant(0)),
				resilient.WithBreaker(newResilientBreaker(countWin, rate)),
			)
			return func(ctx context.Context) (int, error) { return resilient.Do(ctx, w, ex) }
		}},
		{"failsafe", func(w work) op {
			ex := failsafe.With[int](
				retrypolicy.NewBuilder[int]().
					WithMaxAttempts(attempts).
					WithDelay(0).
					AbortOnErrors(circuitbreaker.ErrOpen).
					Build(),
				newFailsafeBreaker(countWin, rate),
			)
			return func(ctx context.Context) (int, error) {
				return ex.Get(func() (int, error) { return w(ctx) })
			}
		}},
		{"eapache", func(w work) op {
			// eapache's retrier and breaker, composed by hand. Its breaker
			// counts errors that come within 30s of each other, whatever
			// succeeds between them: it has no rate, and with rate 1 it
			// gets a threshold it never reaches here (it still does all
			// its bookkeeping for every failure).
			threshold := minCalls
			if rate >= 1 {
				threshold = math.MaxInt
			}
			r := retrier.New(retrier.ConstantBackoff(attempts-1, 0),
				retrier.BlacklistClassifier{eabreaker.ErrBreakerOpen})
			return eapacheOp(r, work(eapacheBreakerOp(eabreaker.New(threshold, 1, openFor), w)))
		}},
	}
}

// BenchmarkRetryBreakerHappy is scenario 5, success at the first attempt.
func BenchmarkRetryBreakerHappy(b *testing.B) {
	for _, l := range retryBreakerLibs(1) {
		b.Run("lib="+l.name, func(b *testing.B) {
			call := l.build(succeed)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if v, err := call(ctx); err != nil || v != want {
					b.Fatal(v, err)
				}
			}
		})
	}
}

// BenchmarkRetryBreakerFlaky is scenario 5, two failed attempts before a
// success, zero delay.
func BenchmarkRetryBreakerFlaky(b *testing.B) {
	for _, l := range retryBreakerLibs(1) {
		b.Run("lib="+l.name, func(b *testing.B) {
			call := l.build(flaky())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if v, err := call(ctx); err != nil || v != want {
					b.Fatal(v, err)
				}
			}
		})
	}
}
