package benchmarks

import (
	"context"
	"errors"
	"testing"
	"time"

	retrygo "github.com/avast/retry-go/v4"
	"github.com/cenkalti/backoff/v5"
	"github.com/eapache/go-resiliency/retrier"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/sethvargo/go-retry"

	"github.com/resilient-go/resilient"
)

// Scenarios 1 and 2: retries.
//
// Every library gets the same job: at most 3 attempts in all, every error
// retried, the value of the last attempt handed back. Scenario 1 configures
// an exponential backoff from 100ms (capped at 5s where the library has a
// cap) with jitter, and the first attempt succeeds. Scenario 2 configures a
// zero delay, and the work fails twice before it succeeds.
//
// Policies that a library lets callers build once and share are built once,
// outside the timed loop; state a library requires per call (cenkalti's and
// sethvargo's backoffs are stateful) is built per call, as its docs say.

// work is the function each library retries: the same func value for all.
type work func(context.Context) (int, error)

// op is one call through a library, as its caller writes it.
type op func(context.Context) (int, error)

// lib is one side of a side-by-side benchmark.
type lib struct {
	name  string
	build func(w work) op
}

const want = 42

var errTransient = errors.New("transient failure")

// succeed is the work of scenario 1.
func succeed(context.Context) (int, error) { return want, nil }

// flaky returns the work of scenario 2: within every run of three calls, the
// first two fail and the third succeeds. One value serves one goroutine.
func flaky() work {
	n := 0
	return func(context.Context) (int, error) {
		n++
		if n%3 != 0 {
			return 0, errTransient
		}
		return want, nil
	}
}

const (
	attempts = 3
	base     = 100 * time.Millisecond
	capDelay = 5 * time.Second
)

// retryHappyLibs is scenario 1: 3 attempts, jittered exponential backoff.
var retryHappyLibs = []lib{
	{"direct", func(w work) op { return op(w) }},
	{"resilient", func(w work) op {
		ex := resilient.MustNew(
			resilient.WithAttempts(attempts),
			resilient.WithBackoff(resilient.Exponential(base, capDelay)),
			resilient.WithJitter(resilient.FullJitter),
		)
		return func(ctx context.Context) (int, error) { return resilient.Do(ctx, w, ex) }
	}},
	{"failsafe", func(w work) op {
		// The executor is built once. It runs without a per-call
		// WithContext, which would copy it on every call: cheaper for
		// failsafe-go than what the other libraries do for the context.
		ex := failsafe.With[int](retrypolicy.NewBuilder[int]().
			WithMaxAttempts(attempts).
			WithBackoff(base, capDelay).
			WithJitterFactor(0.5).
			Build())
		return func(ctx context.Context) (int, error) {
			return ex.Get(func() (int, error) { return w(ctx) })
		}
	}},
	{"cenkalti", func(w work) op {
		return func(ctx context.Context) (int, error) {
			// An ExponentialBackOff is stateful: one per call.
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval = base, capDelay
			return backoff.Retry(ctx, func() (int, error) { return w(ctx) },
				backoff.WithBackOff(b), backoff.WithMaxTries(attempts))
		}
	}},
	{"avast", func(w work) op {
		// Options are built once and shared; no per-call Context option
		// (which would cost avast one more allocation).
		opts := []retrygo.Option{
			retrygo.Attempts(attempts),
			retrygo.Delay(base),
			retrygo.MaxDelay(capDelay),
			retrygo.DelayType(retrygo.FullJitterBackoffDelay),
			retrygo.LastErrorOnly(true),
		}
		return func(ctx context.Context) (int, error) {
			return retrygo.DoWithData(func() (int, error) { return w(ctx) }, opts...)
		}
	}},
	{"sethvargo", func(w work) op {
		fn := retryable(w)
		return func(ctx context.Context) (int, error) {
			// A Backoff is stateful: one per call.
			b := retry.WithMaxRetries(attempts-1,
				retry.WithCappedDuration(capDelay,
					retry.WithFullJitter(retry.NewExponential(base))))
			return retry.DoValue(ctx, b, fn)
		}
	}},
	{"eapache", func(w work) op {
		r := retrier.New(retrier.LimitedExponentialBackoff(attempts-1, base, capDelay), nil)
		r.SetJitter(0.5)
		return eapacheOp(r, w)
	}},
}

// retryFlakyLibs is scenario 2: 3 attempts, zero delay between them.
var retryFlakyLibs = []lib{
	{"direct", func(w work) op {
		// The floor: a hand-written loop of three attempts.
		return func(ctx context.Context) (v int, err error) {
			for range attempts {
				if v, err = w(ctx); err == nil {
					return v, nil
				}
			}
			return v, err
		}
	}},
	{"resilient", func(w work) op {
		ex := resilient.MustNew(
			resilient.WithAttempts(attempts),
			resilient.WithBackoff(resilient.Constant(0)),
		)
		return func(ctx context.Context) (int, error) { return resilient.Do(ctx, w, ex) }
	}},
	{"failsafe", func(w work) op {
		ex := failsafe.With[int](retrypolicy.NewBuilder[int]().
			WithMaxAttempts(attempts).
			WithDelay(0).
			Build())
		return func(ctx context.Context) (int, error) {
			return ex.Get(func() (int, error) { return w(ctx) })
		}
	}},
	{"cenkalti", func(w work) op {
		return func(ctx context.Context) (int, error) {
			return backoff.Retry(ctx, func() (int, error) { return w(ctx) },
				backoff.WithBackOff(&backoff.ZeroBackOff{}), backoff.WithMaxTries(attempts))
		}
	}},
	{"avast", func(w work) op {
		opts := []retrygo.Option{
			retrygo.Attempts(attempts),
			retrygo.Delay(0),
			retrygo.DelayType(retrygo.FixedDelay),
			retrygo.LastErrorOnly(true),
		}
		return func(ctx context.Context) (int, error) {
			return retrygo.DoWithData(func() (int, error) { return w(ctx) }, opts...)
		}
	}},
	{"sethvargo", func(w work) op {
		fn := retryable(w)
		return func(ctx context.Context) (int, error) {
			// sethvargo's constructors refuse a zero delay
			// (NewConstant(0) panics); a BackoffFunc can return one.
			b := retry.WithMaxRetries(attempts-1, retry.BackoffFunc(zeroDelay))
			return retry.DoValue(ctx, b, fn)
		}
	}},
	{"eapache", func(w work) op {
		return eapacheOp(retrier.New(retrier.ConstantBackoff(attempts-1, 0), nil), w)
	}},
}

func zeroDelay() (time.Duration, bool) { return 0, false }

// retryable adapts w to sethvargo's contract, where only errors marked
// retryable are retried.
func retryable(w work) retry.RetryFuncValue[int] {
	return func(ctx context.Context) (int, error) {
		v, err := w(ctx)
		if err != nil {
			return v, retry.RetryableError(err)
		}
		return v, nil
	}
}

// eapacheOp adapts w to eapache's retrier, which returns only an error.
func eapacheOp(r *retrier.Retrier, w work) op {
	return func(ctx context.Context) (v int, err error) {
		err = r.RunCtx(ctx, func(ctx context.Context) error {
			var werr error
			v, werr = w(ctx)
			return werr
		})
		return v, err
	}
}

// BenchmarkRetryHappy is scenario 1: the first of 3 attempts succeeds.
func BenchmarkRetryHappy(b *testing.B) {
	for _, l := range retryHappyLibs {
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

// BenchmarkRetryHappyParallel is scenario 1 with every goroutine sharing the
// policy built once.
func BenchmarkRetryHappyParallel(b *testing.B) {
	for _, l := range retryHappyLibs {
		b.Run("lib="+l.name, func(b *testing.B) {
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

// BenchmarkRetryFlaky is scenario 2: two retryable failures, then success,
// with zero delay.
func BenchmarkRetryFlaky(b *testing.B) {
	for _, l := range retryFlakyLibs {
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
