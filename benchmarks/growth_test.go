package benchmarks

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// These tests prove what the growth benchmarks time: the lookups find the
// key's own value without allocating, an idle breaker holds the memory the
// README states, every Group round has exactly the sharing its name says,
// no policy refuses or allocates, and the concurrent HTTP clients reuse
// their connections and close every body.

func TestGrowthLookupsFindTheKeysValue(t *testing.T) {
	keys := shuffledKeys(1000)
	for _, set := range []struct {
		name string
		libs []keyedLib
	}{{"breakers", breakersLibs}, {"keyed", keyedLibs}} {
		for _, l := range set.libs {
			t.Run(set.name+"/"+l.name, func(t *testing.T) {
				get := l.build(keys)
				seen := make(map[any]string, len(keys))
				for _, k := range keys {
					v := get(k)
					require.NotNil(t, v, k)
					if other, dup := seen[v]; dup {
						t.Fatalf("%s and %s share a value", k, other)
					}
					seen[v] = k
					assert.Same(t, v, get(k), "the same value each time")
				}
				if l.name == "resilient" {
					assert.Zero(t, testing.AllocsPerRun(1000, func() { get(keys[7]) }), "a hit allocates")
				}
			})
		}
	}
}

// TestGrowthBreakerMemory states the memory an idle breaker holds in a set
// of 10,000: under 4 KiB with the default window.
func TestGrowthBreakerMemory(t *testing.T) {
	const n = 10_000
	keys := shuffledKeys(n)
	for _, w := range breakerWindows {
		perBreaker, s := breakersMemory(n, keys, w.opts...)
		require.Equal(t, n, s.Len())
		t.Logf("window=%s: %.0f B per idle breaker", w.name, perBreaker)
		assert.Greater(t, perBreaker, 500.0, "window=%s: too little to be true: was the set measured?", w.name)
		if w.name == "default" {
			assert.Less(t, perBreaker, 4096.0, "bytes per idle breaker with the default window")
		}
	}
}

// TestGrowthGroupRoundsShare runs rounds of every Group case the benchmark
// measures (1,000 callers at most, to stay quick) and checks each: one
// execution for every caller of a key, told that it shared; one each for
// distinct keys; every caller's goroutine gone at the end.
func TestGrowthGroupRoundsShare(t *testing.T) {
	for _, c := range growthGroupCases {
		if c.n > 1_000 {
			continue
		}
		for _, l := range groupLibs {
			t.Run(groupCaseName(c.n, c.sameKey)+"/"+l.name, func(t *testing.T) {
				defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
				shared := l.shares && c.sameKey
				h := newGroupHarness(c.n, l.build(c.sameKey), shared && c.n > 1)
				for range 5 {
					r, err := h.run()
					require.NoError(t, err)
					require.NoError(t, h.check(r, shared))
					assert.Equal(t, int64(c.n), r.joined.Load(), "callers counted in")
				}
				require.NoError(t, h.stop())
			})
		}
	}
}

// TestGrowthGroupCheckFails shows that a round's check catches a group
// that does not share: callers that each call the function are not one
// execution.
func TestGrowthGroupCheckFails(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newGroupHarness(10, groupLibs[1].build(true), false)
	r, err := h.run()
	require.NoError(t, err)
	assert.EqualError(t, h.check(r, true), "10 executions for 10 callers, want 1")
	require.NoError(t, h.stop())
}

// TestGrowthPoliciesAdmitEverything checks that no policy of the benchmark
// refuses an attempt, from several goroutines at once, and that none
// allocates.
func TestGrowthPoliciesAdmitEverything(t *testing.T) {
	for _, l := range policyLibs {
		t.Run(l.policy+"/"+l.lib, func(t *testing.T) {
			op := l.build()
			ctx := context.Background()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for i := range 10_000 {
						if !op(ctx) {
							t.Errorf("attempt %d refused", i)
							return
						}
					}
				})
			}
			wg.Wait()
			assert.Zero(t, testing.AllocsPerRun(1000, func() { op(ctx) }), "allocations per attempt")
		})
	}
}

// TestGrowthHTTPReusesConnections runs each client of the concurrent HTTP
// benchmark with 64 requests in flight: every request gets a 200 whose
// body is read and closed, every body handed out is closed, the
// connections stay within the benchmark's limit, and nothing is left
// running.
func TestGrowthHTTPReusesConnections(t *testing.T) {
	const conc, perGoroutine = 64, 20
	for _, l := range concHTTPLibs {
		t.Run(l.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			u := newUpstream(false)
			defer u.Close()
			base := concTransport(conc)
			defer base.CloseIdleConnections()
			tt := &trackingTransport{base: base}
			c := l.build(tt)
			ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
			defer cancel()
			require.NoError(t, warm(ctx, c, u.URL, conc, perGoroutine))
			assert.Equal(t, int64(conc*perGoroutine), u.requests.Load(), "one request per call")
			assert.Equal(t, u.requests.Load(), tt.opened.Load(), "response bodies handed out")
			assert.Equal(t, tt.opened.Load(), tt.closed.Load(), "response bodies closed")
			assert.LessOrEqual(t, u.conns.Load(), int64(maxConcConns(conc)), "connections")
		})
	}
}
