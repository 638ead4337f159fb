package benchmarks

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/resilient-go/resilient"
)

// Scenario 7: deduplication.
//
// Many goroutines ask for the same key at once; a deduplicating group runs
// the upstream call once for all the callers that arrive while it is in
// flight. resilient.Group is compared with golang.org/x/sync/singleflight
// (string keys, values as any) and with no deduplication at all ("direct":
// every caller calls the upstream).
//
// Two upstreams: "instant" returns at once, so the time is the groups'
// own overhead; "50us" sleeps 50µs, a fast upstream, so callers overlap
// and share. Besides ns/op, each benchmark reports upstream-calls/op: the
// fraction of callers that called the upstream (1 for direct; the lower,
// the more was shared).

// dedupGoroutines is how many goroutines ask at once.
const dedupGoroutines = 8

// dedupOp is one caller's request for the shared key.
type dedupOp func(ctx context.Context) (int, error)

type dedupLib struct {
	name  string
	build func(w work) dedupOp
}

const dedupKey = "users/42"

var dedupLibs = []dedupLib{
	{"direct", func(w work) dedupOp { return dedupOp(w) }},
	{"resilient", func(w work) dedupOp {
		g := resilient.MustNewGroup[string, int]()
		return func(ctx context.Context) (int, error) { return g.Do(ctx, dedupKey, w) }
	}},
	{"singleflight", func(w work) dedupOp {
		var g singleflight.Group
		return func(ctx context.Context) (int, error) {
			v, err, _ := g.Do(dedupKey, func() (any, error) { return w(ctx) })
			n, _ := v.(int)
			return n, err
		}
	}},
}

func sleepy(d time.Duration) work {
	return func(context.Context) (int, error) {
		time.Sleep(d)
		return want, nil
	}
}

// BenchmarkDedup is scenario 7: dedupGoroutines goroutines asking for the
// same key, over and over.
func BenchmarkDedup(b *testing.B) {
	upstreams := []struct {
		name string
		w    work
	}{
		{"instant", succeed},
		{"50us", sleepy(50 * time.Microsecond)},
	}
	for _, up := range upstreams {
		for _, l := range dedupLibs {
			b.Run("upstream="+up.name+"/lib="+l.name, func(b *testing.B) {
				w, calls := counted(up.w)
				call := l.build(w)
				var asked atomic.Int64
				b.SetParallelism(max(1, dedupGoroutines/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					n := int64(0)
					defer func() { asked.Add(n) }()
					for pb.Next() {
						n++
						if v, err := call(ctx); err != nil || v != want {
							b.Error(v, err)
							return
						}
					}
				})
				b.StopTimer()
				if n := asked.Load(); n > 0 {
					b.ReportMetric(float64(calls.Load())/float64(n), "upstream-calls/op")
				}
			})
		}
	}
}
