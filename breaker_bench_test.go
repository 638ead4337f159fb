package resilient

import (
	"context"
	"testing"
	"time"
)

// The breaker's costs: a successful call in the closed state (the hot
// path), a refusal while open, and a call through Do with a prebuilt
// executor. Run with -cpu 1,2 to see how the hot path scales.

func benchClosed(b *testing.B, br *Breaker) {
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		br.Record(p, nil)
	}
}

func benchClosedParallel(b *testing.B, br *Breaker) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			br.Record(p, nil)
		}
	})
}

func BenchmarkBreakerClosedSuccess(b *testing.B) {
	benchClosed(b, MustNewBreaker())
}

func BenchmarkBreakerClosedSuccessParallel(b *testing.B) {
	benchClosedParallel(b, MustNewBreaker())
}

func BenchmarkBreakerClosedSuccessTimeWindow(b *testing.B) {
	br := MustNewBreaker(WithTimeWindow(time.Minute, 60))
	defer br.Reset()
	benchClosed(b, br)
}

func BenchmarkBreakerClosedSuccessTimeWindowParallel(b *testing.B) {
	br := MustNewBreaker(WithTimeWindow(time.Minute, 60))
	defer br.Reset()
	benchClosedParallel(b, br)
}

func BenchmarkBreakerOpenRejection(b *testing.B) {
	br := MustNewBreaker()
	br.ForceOpen()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Allow(); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkBreakerOpenRejectionParallel(b *testing.B) {
	br := MustNewBreaker()
	br.ForceOpen()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(); err == nil {
				b.Fatal("admitted")
			}
		}
	})
}

func BenchmarkBreakerDo(b *testing.B) {
	ex := MustNew(WithBreaker(MustNewBreaker()))
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Do(ctx, fn, ex); err != nil {
			b.Fatal(err)
		}
	}
}

// opaque hides a policy's type from the executor, which then asks it
// through the Policy interface as it asks any policy.
type opaque struct{ Policy }

// BenchmarkBreakerDoAsPolicy is BenchmarkBreakerDo with the breaker behind
// the Policy interface: the difference is what the executor's direct
// reading of a lone breaker's state saves (see Breaker.closedSuccess), the
// coupling's price.
func BenchmarkBreakerDoAsPolicy(b *testing.B) {
	ex := MustNew(WithPolicy(opaque{MustNewBreaker()}))
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Do(ctx, fn, ex); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBreakerDoRefused is a call through Do refused by an open breaker,
// its executor's only policy.
func BenchmarkBreakerDoRefused(b *testing.B) {
	br := MustNewBreaker()
	br.ForceOpen()
	ex := MustNew(WithBreaker(br))
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Do(ctx, fn, ex); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkBreakerDoParallel(b *testing.B) {
	ex := MustNew(WithBreaker(MustNewBreaker()))
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := Do(ctx, fn, ex); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBreakersGet(b *testing.B) {
	s := MustNewBreakers(100, time.Hour)
	s.Get("api.example.com")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Get("api.example.com")
		}
	})
}
