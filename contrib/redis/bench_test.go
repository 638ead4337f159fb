package redis

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The success path through a prebuilt executor: an in-memory breaker (with
// the default count window, and with the time window the fleet breaker's
// local breaker uses) against the fleet breaker on a real Redis over
// loopback, with its default 100ms sync running; then the same for retry
// budgets. And the price of each Redis round trip the fleet components
// make: a sync (per replica per interval), a probe admission (half-open
// only), a retry withdrawal (per retry).
//
//	go test -run '^$' -bench . -benchmem -count 10 -benchtime 500ms ./contrib/redis

func benchRun(b *testing.B, ex *resilient.Executor) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := ex.Run(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := ex.Run(ctx, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func BenchmarkSuccessPath(b *testing.B) {
	srv := startRedis(b, false)
	b.Run("breaker=memory-count", func(b *testing.B) {
		benchRun(b, resilient.MustNew(resilient.WithBreaker(resilient.MustNewBreaker())))
	})
	b.Run("breaker=memory-time", func(b *testing.B) {
		br := resilient.MustNewBreaker(resilient.WithTimeWindow(DefaultWindow, DefaultWindowBuckets))
		defer br.Reset()
		benchRun(b, resilient.MustNew(resilient.WithBreaker(br)))
	})
	b.Run("breaker=redis", func(b *testing.B) {
		fb := MustNewBreaker(srv.Client(), "bench", WithTimeout(time.Second))
		defer fb.Close()
		defer fb.Local().Reset()
		benchRun(b, resilient.MustNew(resilient.WithPolicy(fb)))
	})
	b.Run("budget=memory", func(b *testing.B) {
		benchRun(b, resilient.MustNew(resilient.WithBudget(resilient.MustNewBudget())))
	})
	b.Run("budget=redis", func(b *testing.B) {
		fb := MustNewBudget(srv.Client(), "bench", WithTimeout(time.Second))
		defer fb.Close()
		benchRun(b, resilient.MustNew(resilient.WithPolicy(fb)))
	})
}

func BenchmarkRoundTrip(b *testing.B) {
	srv := startRedis(b, false)
	ctx := context.Background()
	b.Run("op=sync", func(b *testing.B) {
		fb := MustNewBreaker(srv.Client(), "rt-sync", WithTimeout(time.Second), WithSyncInterval(time.Hour), WithMinCalls(1<<30))
		defer fb.Close()
		b.ReportAllocs()
		for b.Loop() {
			fb.view.Load().calls.Add(1)
			if err := fb.sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=probe", func(b *testing.B) {
		// Probes are admitted and released: each iteration is an admission
		// (one round trip) and a report (one more).
		fb := MustNewBreaker(srv.Client(), "rt-probe", WithTimeout(time.Second), WithSyncInterval(time.Hour))
		defer fb.Close()
		_, err := fb.run(ctx, "control", controlScript, int(resilient.StateHalfOpen), fb.openMS, fb.ttlMS, 1)
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			r, err := fb.run(ctx, "probe", probeScript, "m", fb.probeMS, 1, fb.ttlMS)
			if err != nil || r.extra != 1 {
				b.Fatal(err, r)
			}
			if _, err := fb.run(ctx, "probe-done", probeDoneScript, "m", resultRelease, 1, fb.openMS, 0, fb.ttlMS, "", fb.probeMS, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=retry", func(b *testing.B) {
		fb := MustNewBudget(srv.Client(), "rt-retry", WithTimeout(time.Second), WithRetryBurst(1<<30))
		defer fb.Close()
		b.ReportAllocs()
		for b.Loop() {
			if err := fb.AllowRetry(2); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// countingHook counts the commands a client sends.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *countingHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

func TestRoundTripsPerCall(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client()
	h := &countingHook{}
	rdb.AddHook(h)
	ctx := context.Background()
	fb := newTestBreaker(t, rdb, "rt", fast(WithSyncInterval(30*time.Second))...)
	bu := newTestBudget(t, rdb, "rt", WithSyncInterval(30*time.Second))
	ex := resilient.MustNew(resilient.WithPolicy(fb), resilient.WithPolicy(bu))

	before := h.n.Load()
	for range 1000 {
		require.NoError(t, ex.Run(ctx, func(context.Context) error { return nil }))
	}
	assert.Equal(t, before, h.n.Load(), "the success path makes no Redis call")

	// After a script's first use (EVALSHA, then EVAL to load it), each
	// use is one command.
	require.NoError(t, fb.sync(ctx))
	before = h.n.Load()
	require.NoError(t, fb.sync(ctx))
	assert.Equal(t, before+1, h.n.Load(), "a sync is one round trip")

	require.NoError(t, bu.AllowRetry(2))
	before = h.n.Load()
	require.NoError(t, bu.AllowRetry(2))
	assert.Equal(t, before+1, h.n.Load(), "a retry is one round trip")
}
