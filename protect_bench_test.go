package resilient_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/resilient-go/resilient"
)

// BenchmarkProtect measures a successful call through a prebuilt executor
// with each upstream-protection policy, alone and together, on one
// goroutine and in parallel.
func BenchmarkProtect(b *testing.B) {
	cases := []struct {
		name string
		opts func() []resilient.Option
	}{
		{"none", func() []resilient.Option { return nil }},
		{"budget", func() []resilient.Option {
			return []resilient.Option{resilient.WithBudget(resilient.MustNewBudget())}
		}},
		{"throttle", func() []resilient.Option {
			return []resilient.Option{resilient.WithThrottle(resilient.MustNewThrottle())}
		}},
		{"bulkhead", func() []resilient.Option {
			return []resilient.Option{resilient.WithBulkhead(resilient.MustNewBulkhead(1 << 20))}
		}},
		{"all", func() []resilient.Option {
			return []resilient.Option{
				resilient.WithBulkhead(resilient.MustNewBulkhead(1 << 20)),
				resilient.WithThrottle(resilient.MustNewThrottle()),
				resilient.WithBudget(resilient.MustNewBudget()),
			}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ex := resilient.MustNew(c.opts()...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = resilient.Do(ctx, protectSucceeding, ex)
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			ex := resilient.MustNew(c.opts()...)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, _ = resilient.Do(ctx, protectSucceeding, ex)
				}
			})
		})
	}
}

// BenchmarkProtectReject measures the fast refusals: a full bulkhead and a
// budget that refuses a retry.
func BenchmarkProtectReject(b *testing.B) {
	b.Run("bulkhead-full", func(b *testing.B) {
		bh := resilient.MustNewBulkhead(1)
		_ = bh.Acquire(context.Background())
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			_ = bh.Acquire(ctx)
		}
	})
	b.Run("budget-exhausted", func(b *testing.B) {
		bu := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
		_ = bu.AllowRetry(2)
		b.ReportAllocs()
		for b.Loop() {
			_ = bu.AllowRetry(2)
		}
	})
}

// BenchmarkGroup measures Group. same-key: 16 goroutines ask for one key,
// and the function yields once so that callers can join it. unique-keys:
// every call has its own key, the cost of one execution that nobody shares.
//
// The comparison with golang.org/x/sync/singleflight is scenario 7 of the
// benchmarks module (BenchmarkDedup), beside the other peers: the core
// module requires nothing but the standard library, its tests included
// (testify and goleak apart).
func BenchmarkGroup(b *testing.B) {
	work := func(context.Context) (int, error) {
		runtime.Gosched()
		return 1, nil
	}
	b.Run("same-key", func(b *testing.B) {
		var g resilient.Group[string, int]
		ctx := context.Background()
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = g.Do(ctx, "key", work)
			}
		})
	})
	var seq atomic.Int64
	b.Run("unique-keys", func(b *testing.B) {
		var g resilient.Group[int64, int]
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = g.Do(ctx, seq.Add(1), work)
			}
		})
	})
}
