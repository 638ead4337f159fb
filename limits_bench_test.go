package resilient_test

import (
	"context"
	"testing"

	"github.com/resilient-go/resilient"
)

// BenchmarkLimits measures a successful call through a prebuilt executor
// with each of the adaptive budget, the rate limit (never waiting: a rate
// and burst no benchmark reaches) and the concurrency limiter, on one
// goroutine and in parallel.
func BenchmarkLimits(b *testing.B) {
	cases := []struct {
		name string
		opts func() []resilient.Option
	}{
		{"none", func() []resilient.Option { return nil }},
		{"adaptivebudget", func() []resilient.Option {
			return []resilient.Option{resilient.WithBudget(resilient.MustNewAdaptiveBudget())}
		}},
		{"ratelimit", func() []resilient.Option {
			return []resilient.Option{resilient.WithRateLimit(resilient.MustNewRateLimiter(resilient.MaxRate, resilient.WithBurst(1<<30)))}
		}},
		{"concurrency/gradient2", func() []resilient.Option {
			return []resilient.Option{resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter())}
		}},
		{"concurrency/aimd", func() []resilient.Option {
			return []resilient.Option{resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter(resilient.WithAIMD(resilient.AIMD{})))}
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

// BenchmarkKeyedGet measures getting an existing key's value.
func BenchmarkKeyedGet(b *testing.B) {
	k := resilient.MustNewKeyed(1000, func(string) *resilient.Budget { return resilient.MustNewAdaptiveBudget() })
	k.Get("api.example.com")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = k.Get("api.example.com")
		}
	})
}
