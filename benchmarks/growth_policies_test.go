package benchmarks

import (
	"context"
	"testing"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/resilient-go/resilient"
)

// Growth: the protection policies as goroutines are added.
//
// Each policy guards one successful attempt the way an executor drives it
// (Admit, then Done with a success), without the executor around it, so
// that the time is the policy's own. Serially, and from every goroutine at
// once (RunParallel, run at -cpu 1,2): a policy that takes no shared lock
// on the success path and writes no shared memory halves its time per
// attempt with two CPUs; one that writes a shared word (a count of
// attempts in flight, a rate's next slot) pays for moving that word's
// cache line between the cores.
//
// Every policy has its defaults, which never refuse here: a bulkhead of
// 1000 slots, a concurrency limiter that starts at 20 (a benchmark has at
// most GOMAXPROCS attempts in flight), and a rate no benchmark reaches
// with a burst it never spends. The concurrency limiter closes a window of
// samples, under its lock, once every 50 attempts, as it does in use. Two peers, both built on a mutex, give the contrast:
// golang.org/x/sync/semaphore (a bulkhead) and golang.org/x/time/rate (a
// rate limit).

// policyOp is one guarded attempt; it returns false if the attempt was
// refused, which fails the benchmark.
type policyOp func(ctx context.Context) bool

// guard drives p as an executor does for one attempt that succeeds.
func guard(p resilient.Policy) policyOp {
	report := resilient.Report{Attempt: 1, Outcome: resilient.Success}
	return func(ctx context.Context) bool {
		permit, err := p.Admit(ctx, 1)
		if err != nil {
			return false
		}
		p.Done(permit, report)
		return true
	}
}

// noRefusal is a burst no benchmark spends.
const noRefusal = 1 << 30

type policyLib struct {
	policy, lib string
	build       func() policyOp
}

var policyLibs = []policyLib{
	{"none", "direct", func() policyOp { return func(context.Context) bool { return true } }},
	{"budget", "resilient", func() policyOp { return guard(resilient.MustNewBudget()) }},
	{"adaptivebudget", "resilient", func() policyOp { return guard(resilient.MustNewAdaptiveBudget()) }},
	{"throttle", "resilient", func() policyOp { return guard(resilient.MustNewThrottle()) }},
	{"bulkhead", "resilient", func() policyOp { return guard(resilient.MustNewBulkhead(1000)) }},
	{"bulkhead", "semaphore", func() policyOp {
		s := semaphore.NewWeighted(1000)
		return func(context.Context) bool {
			if !s.TryAcquire(1) {
				return false
			}
			s.Release(1)
			return true
		}
	}},
	{"ratelimit", "resilient", func() policyOp {
		l := resilient.MustNewRateLimiter(resilient.MaxRate, resilient.WithBurst(noRefusal))
		return func(ctx context.Context) bool { return l.Wait(ctx) == nil }
	}},
	{"ratelimit", "xrate", func() policyOp {
		l := rate.NewLimiter(resilient.MaxRate, noRefusal)
		return func(ctx context.Context) bool { return l.Wait(ctx) == nil }
	}},
	{"concurrency-gradient2", "resilient", func() policyOp {
		return guard(resilient.MustNewConcurrencyLimiter())
	}},
	{"concurrency-aimd", "resilient", func() policyOp {
		return guard(resilient.MustNewConcurrencyLimiter(resilient.WithAIMD(resilient.AIMD{})))
	}},
}

func benchmarkPolicies(b *testing.B, parallel bool) {
	for _, l := range policyLibs {
		b.Run("policy="+l.policy+"/lib="+l.lib, func(b *testing.B) {
			op := l.build()
			ctx := context.Background()
			b.ReportAllocs()
			if !parallel {
				for b.Loop() {
					if !op(ctx) {
						b.Fatal("refused")
					}
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !op(ctx) {
						b.Error("refused")
						return
					}
				}
			})
		})
	}
}

// BenchmarkGrowthPolicies is one successful attempt through each policy,
// from one goroutine.
func BenchmarkGrowthPolicies(b *testing.B) { benchmarkPolicies(b, false) }

// BenchmarkGrowthPoliciesParallel is BenchmarkGrowthPolicies from every
// goroutine at once, sharing one policy; run it at -cpu 1,2 and compare
// the time per attempt.
func BenchmarkGrowthPoliciesParallel(b *testing.B) { benchmarkPolicies(b, true) }
