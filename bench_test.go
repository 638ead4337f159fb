package resilient

import (
	"context"
	"testing"
)

//go:noinline
func direct(ctx context.Context, x int) (int, error) { return x + 1, nil }

var sink int

// BenchmarkDo compares a direct call with the same call through Do: with
// defaults, with a prebuilt executor, and on the retry path (two failures,
// then success, zero delay). The closures capture variables, as real call
// sites do.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	ex := MustNew(WithAttempts(3))
	retry := MustNew(WithAttempts(3), WithBackoff(Constant(0)))
	x := 41
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := direct(ctx, x)
			sink += v
		}
	})
	b.Run("defaults", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := Do(ctx, func(ctx context.Context) (int, error) { return direct(ctx, x) })
			sink += v
		}
	})
	b.Run("executor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := Do(ctx, func(ctx context.Context) (int, error) { return direct(ctx, x) }, ex)
			sink += v
		}
	})
	b.Run("retry-zero-delay", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			v, _ := Do(ctx, func(ctx context.Context) (int, error) {
				n++
				if n < 3 {
					return 0, errFlaky
				}
				return direct(ctx, x)
			}, retry)
			sink += v
		}
	})
	b.Run("executor-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			s := 0
			for pb.Next() {
				v, _ := Do(ctx, func(ctx context.Context) (int, error) { return direct(ctx, x) }, ex)
				s += v
			}
			_ = s
		})
	})
	b.Run("adhoc-options", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, _ := Do(ctx, func(ctx context.Context) (int, error) { return direct(ctx, x) }, WithAttempts(3))
			sink += v
		}
	})
}
