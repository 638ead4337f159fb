package benchmarks

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilient-go/resilient"
)

// Growth: keyed sets (Breakers, Keyed) as the number of keys grows.
//
// A service keeps a breaker (or a budget, a limiter) per upstream host; the
// question is what a lookup costs, and what each key holds in memory, at
// 10, 1,000 and 100,000 keys. Lookups go to the keys in a fixed shuffled
// order, as requests to many hosts would, so that a large set is not
// flattered by the cache.
//
// lib=map is the floor: the same lookups in a plain Go map, read by one
// goroutine with no synchronisation at all (it could not be shared). What
// a lookup costs beyond it is the price of a set that is safe for
// concurrent use, bounded, and takes no lock on a hit.

// growthKeySizes are the set sizes measured.
var growthKeySizes = []int{10, 1_000, 100_000}

// hostKey is the key of host i: a host name of realistic length.
func hostKey(i int) string {
	return "host-" + strconv.Itoa(100_000+i) + ".example.com"
}

// shuffledKeys returns the keys of n hosts in a fixed shuffled order.
func shuffledKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = hostKey(i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(n, func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return keys
}

// getter looks a key up; each returns something that depends on the key,
// so that nothing is optimised away.
type getter func(key string) any

// keyedLib is one side of the keyed-set benchmarks: build returns a
// getter over a set already holding every key.
type keyedLib struct {
	name  string
	build func(keys []string) getter
}

// idleForever is the idle time of the sets measured: longer than any run,
// so that nothing is forgotten while it is timed. A set's idle timer keeps
// it reachable until it has forgotten every breaker, so the sets built
// here outlive their benchmarks: run.sh runs each growth benchmark in a
// process of its own, and each runs its sizes from the smallest, so that
// no benchmark's collections mark a larger set left by another.
const idleForever = time.Hour

var breakersLibs = []keyedLib{
	{"resilient", func(keys []string) getter {
		s := resilient.MustNewBreakers(len(keys), idleForever)
		for _, k := range keys {
			s.Get(k)
		}
		return func(k string) any { return s.Get(k) }
	}},
	{"map", plainMap},
}

var keyedLibs = []keyedLib{
	{"resilient", func(keys []string) getter {
		s := resilient.MustNewKeyed(len(keys), func(string) *resilient.Budget {
			return resilient.MustNewAdaptiveBudget()
		})
		for _, k := range keys {
			s.Get(k)
		}
		return func(k string) any { return s.Get(k) }
	}},
	{"map", plainMap},
}

// plainMap is the floor of a lookup: a Go map of a pointer per key, read
// with no synchronisation.
func plainMap(keys []string) getter {
	m := make(map[string]*int, len(keys))
	for i, k := range keys {
		m[k] = &i
	}
	return func(k string) any { return m[k] }
}

// sink keeps lookups from being optimised away.
var sink atomic.Pointer[any]

func benchmarkLookup(b *testing.B, libs []keyedLib, parallel bool) {
	for _, n := range growthKeySizes {
		keys := shuffledKeys(n)
		for _, l := range libs {
			if parallel && l.name == "map" {
				continue // a plain map is not safe for concurrent use
			}
			// Built once for all the runs of the benchmark function (the
			// parallel one runs it once per b.N it tries).
			var get getter
			b.Run(fmt.Sprintf("keys=%d/lib=%s", n, l.name), func(b *testing.B) {
				if get == nil {
					get = l.build(keys)
				}
				runtime.GC()
				b.ReportAllocs()
				b.ResetTimer()
				if !parallel {
					var last any
					i := 0
					for b.Loop() {
						last = get(keys[i])
						if i++; i == len(keys) {
							i = 0
						}
					}
					sink.Store(&last)
					return
				}
				var start atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					// Each goroutine walks the keys from its own place.
					i := int(start.Add(int64(len(keys)/7+1))) % len(keys)
					var last any
					for pb.Next() {
						last = get(keys[i])
						if i++; i == len(keys) {
							i = 0
						}
					}
					sink.Store(&last)
				})
			})
		}
	}
}

// BenchmarkGrowthBreakersGet is Breakers.Get of a key the set holds, at 10,
// 1k and 100k keys: O(1), lock-free, allocation-free.
func BenchmarkGrowthBreakersGet(b *testing.B) { benchmarkLookup(b, breakersLibs, false) }

// BenchmarkGrowthBreakersGetParallel is BenchmarkGrowthBreakersGet from
// every goroutine at once (run it at -cpu 1,2): a hit takes no lock, so the
// time per lookup halves with two CPUs.
func BenchmarkGrowthBreakersGetParallel(b *testing.B) { benchmarkLookup(b, breakersLibs, true) }

// BenchmarkGrowthKeyedGet is Keyed.Get (one adaptive budget per key) of a
// key the set holds.
func BenchmarkGrowthKeyedGet(b *testing.B) { benchmarkLookup(b, keyedLibs, false) }

// BenchmarkGrowthKeyedGetParallel is BenchmarkGrowthKeyedGet from every
// goroutine at once.
func BenchmarkGrowthKeyedGetParallel(b *testing.B) { benchmarkLookup(b, keyedLibs, true) }

// heapInUse returns the bytes of live heap objects after a full
// collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// breakersMemory builds a set of n breakers with opts and returns the heap
// bytes it holds per breaker, keys included, and the set (to keep alive
// until the caller is done with it).
func breakersMemory(n int, keys []string, opts ...resilient.BreakerOption) (float64, *resilient.Breakers) {
	before := heapInUse()
	s := resilient.MustNewBreakers(n, idleForever, opts...)
	for _, k := range keys {
		s.Get(k)
	}
	after := heapInUse()
	runtime.KeepAlive(s)
	return float64(int64(after)-int64(before)) / float64(n), s
}

// breakerWindows are the windows whose memory is measured: the default (a
// count window of 100 calls) and a time window of 10s in 10 buckets.
var breakerWindows = []struct {
	name string
	opts []resilient.BreakerOption
}{
	{"default", nil},
	{"time10s", []resilient.BreakerOption{resilient.WithTimeWindow(10*time.Second, 10)}},
}

// BenchmarkGrowthBreakersMemory reports the heap a set of N idle
// breakers holds per breaker (B/breaker), each looked up once, as a first
// request to its host does: runtime.MemStats after a collection, before
// and after building the set; the key strings, made beforehand, are not
// counted. The time to build a breaker is BenchmarkGrowthBreakersChurn's.
// The timed loop does nothing: the figure is measured once.
func BenchmarkGrowthBreakersMemory(b *testing.B) {
	for _, n := range growthKeySizes {
		for _, w := range breakerWindows {
			b.Run(fmt.Sprintf("window=%s/keys=%d", w.name, n), func(b *testing.B) {
				perBreaker, s := breakersMemory(n, shuffledKeys(n), w.opts...)
				for b.Loop() {
				}
				runtime.KeepAlive(s)
				b.ReportMetric(perBreaker, "B/breaker")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// BenchmarkGrowthBreakersChurn is the cost of a new key in a full set (a
// request to a host the set has not seen): the breaker is built, and the
// least recently used one is forgotten to make room.
func BenchmarkGrowthBreakersChurn(b *testing.B) {
	for _, n := range growthKeySizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := resilient.MustNewBreakers(n, idleForever)
			churn(b, n, func(k string) { s.Get(k) }, s.Len)
		})
	}
}

// BenchmarkGrowthKeyedChurn is the cost of a new key in a full Keyed set:
// a budget is built, and one not used recently is forgotten.
func BenchmarkGrowthKeyedChurn(b *testing.B) {
	for _, n := range growthKeySizes {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := resilient.MustNewKeyed(n, func(string) *resilient.Budget {
				return resilient.MustNewAdaptiveBudget()
			})
			churn(b, n, func(k string) { s.Get(k) }, s.Len)
		})
	}
}

// churn fills a set of n keys through get, then times get of a key never
// seen, over and over, and checks that the set still holds n.
func churn(b *testing.B, n int, get func(string), length func() int) {
	for _, k := range shuffledKeys(n) {
		get(k)
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		get("new-" + strconv.Itoa(i) + ".example.com")
		i++
	}
	b.StopTimer()
	if got := length(); got != n {
		b.Fatalf("the set holds %d, want %d", got, n)
	}
}
