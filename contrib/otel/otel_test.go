package otel_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
	resilientotel "github.com/resilient-go/resilient/contrib/otel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errFlaky = errors.New("flaky")

// script fails with errs[i] on call i (nil: success), sleeping d per call.
func script(d time.Duration, errs ...error) func(context.Context) (int, error) {
	var mu sync.Mutex
	n := 0
	return func(context.Context) (int, error) {
		time.Sleep(d)
		mu.Lock()
		defer mu.Unlock()
		n++
		if n <= len(errs) && errs[n-1] != nil {
			return n, errs[n-1]
		}
		return n, nil
	}
}

type refuser struct{ err error }

func (p refuser) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, p.err
}
func (refuser) Done(resilient.Permit, resilient.Report) {}

func newMetrics(t *testing.T, opts ...resilientotel.Option) (*resilientotel.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	m, err := resilientotel.New(append([]resilientotel.Option{resilientotel.WithMeterProvider(provider)}, opts...)...)
	require.NoError(t, err)
	return m, reader
}

// point is one collected data point: a counter's or gauge's value, or a
// histogram's count, sum and bucket counts.
type point struct {
	Value   int64
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// collect reads every data point as "instrument{k=v,…}" (keys sorted,
// "resilient." prefix dropped from keys) → point, and checks each
// instrument's unit.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string]point, map[string]string) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	points := map[string]point{}
	units := map[string]string{}
	key := func(name string, set attribute.Set) string {
		var kv []string
		for _, a := range set.ToSlice() {
			kv = append(kv, strings.TrimPrefix(string(a.Key), "resilient.")+"="+a.Value.Emit())
		}
		sort.Strings(kv)
		return name + "{" + strings.Join(kv, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, resilientotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			units[m.Name] = m.Unit
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				assert.True(t, d.IsMonotonic, m.Name)
				for _, p := range d.DataPoints {
					points[key(m.Name, p.Attributes)] = point{Value: p.Value}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					points[key(m.Name, p.Attributes)] = point{Value: p.Value}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points[key(m.Name, p.Attributes)] = point{Count: p.Count, Sum: p.Sum, Buckets: p.BucketCounts}
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return points, units
}

func TestMetricsRecordCalls(t *testing.T) {
	cases := []struct {
		name string
		opts []resilient.Option
		fn   func(context.Context) (int, error)
		want map[string]int64 // counter points; every other counter point must be absent
	}{
		{
			name: "success at once",
			fn:   script(0),
			want: map[string]int64{
				"resilient.calls{call.reason=success,executor.name=api}":        1,
				"resilient.attempts{attempt.outcome=success,executor.name=api}": 1,
			},
		},
		{
			name: "retried with backoff and hint",
			fn:   script(0, errFlaky, resilient.RetryAfter(errFlaky, time.Second)),
			want: map[string]int64{
				"resilient.calls{call.reason=success,executor.name=api}":          1,
				"resilient.attempts{attempt.outcome=retry,executor.name=api}":     2,
				"resilient.attempts{attempt.outcome=success,executor.name=api}":   1,
				"resilient.retries{executor.name=api,retry.delay_source=backoff}": 1,
				"resilient.retries{executor.name=api,retry.delay_source=hint}":    1,
			},
		},
		{
			name: "exhausted",
			opts: []resilient.Option{resilient.WithAttempts(2)},
			fn:   script(0, errFlaky, errFlaky),
			want: map[string]int64{
				"resilient.calls{call.reason=exhausted,executor.name=api}":        1,
				"resilient.attempts{attempt.outcome=retry,executor.name=api}":     2,
				"resilient.retries{executor.name=api,retry.delay_source=backoff}": 1,
			},
		},
		{
			name: "permanent",
			fn:   script(0, resilient.Permanent(errFlaky)),
			want: map[string]int64{
				"resilient.calls{call.reason=permanent,executor.name=api}":   1,
				"resilient.attempts{attempt.outcome=fail,executor.name=api}": 1,
			},
		},
		{
			name: "refused by a policy",
			opts: []resilient.Option{resilient.WithPolicy(refuser{errors.New("no")})},
			fn:   script(0),
			want: map[string]int64{
				"resilient.calls{call.reason=rejected,executor.name=api}":   1,
				"resilient.rejections{executor.name=api,policy.name=other}": 1,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, reader := newMetrics(t)
				opts := append([]resilient.Option{
					resilient.WithName("api"),
					resilient.WithBackoff(resilient.Constant(100 * time.Millisecond)),
					resilient.WithJitter(resilient.NoJitter),
					resilient.WithHooks(m.Hooks()),
				}, tc.opts...)
				_, _ = resilient.Do(t.Context(), tc.fn, resilient.MustNew(opts...))
				points, units := collect(t, reader)
				got := map[string]int64{}
				for k, p := range points {
					if !strings.Contains(k, ".duration{") {
						got[k] = p.Value
					}
				}
				assert.Equal(t, tc.want, got)
				for name, unit := range map[string]string{
					"resilient.calls": "{call}", "resilient.attempts": "{attempt}",
					"resilient.call.duration": "s", "resilient.attempt.duration": "s",
				} {
					if u, ok := units[name]; ok {
						assert.Equal(t, unit, u, name)
					}
				}
			})
		})
	}
}

func TestMetricsDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reader := newMetrics(t, resilientotel.WithBuckets(0.1, 1))
		ex := resilient.MustNew(
			resilient.WithName("api"),
			resilient.WithBackoff(resilient.Constant(time.Second)),
			resilient.WithJitter(resilient.NoJitter),
			resilient.WithHooks(m.Hooks()),
		)
		_, err := resilient.Do(t.Context(), script(500*time.Millisecond, errFlaky), ex) // 0.5 + 1 + 0.5
		require.NoError(t, err)
		_, err = resilient.Do(t.Context(), script(62500*time.Microsecond), ex)
		require.NoError(t, err)
		points, units := collect(t, reader)
		assert.Equal(t, point{Count: 1, Sum: 0.5, Buckets: []uint64{0, 1, 0}},
			points["resilient.attempt.duration{attempt.outcome=retry,executor.name=api}"])
		assert.Equal(t, point{Count: 2, Sum: 0.5625, Buckets: []uint64{1, 1, 0}},
			points["resilient.attempt.duration{attempt.outcome=success,executor.name=api}"])
		assert.Equal(t, point{Count: 2, Sum: 2.0625, Buckets: []uint64{1, 0, 1}},
			points["resilient.call.duration{call.reason=success,executor.name=api}"])
		assert.Equal(t, "s", units["resilient.call.duration"])
	})
}

func TestMetricsDefaultBuckets(t *testing.T) {
	m, reader := newMetrics(t)
	_, err := resilient.Do(t.Context(), script(0), resilient.WithName("api"), resilient.WithHooks(m.Hooks()))
	require.NoError(t, err)
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name == "resilient.call.duration" {
				found = true
				h := mt.Data.(metricdata.Histogram[float64])
				require.Len(t, h.DataPoints, 1)
				assert.Equal(t, []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}, h.DataPoints[0].Bounds)
			}
		}
	}
	assert.True(t, found)
}

func TestMetricsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reader := newMetrics(t)
		br, err := resilient.NewBreaker(
			resilient.WithBreakerName("db"),
			resilient.WithConsecutiveFailures(2),
			resilient.WithOpenDuration(time.Second),
			resilient.WithStateListener(m.OnTransition),
		)
		require.NoError(t, err)
		ex := resilient.MustNew(resilient.WithName("api"), resilient.WithAttempts(1),
			resilient.WithBreaker(br), resilient.WithHooks(m.Hooks()))
		status := func() map[string]int64 {
			points, _ := collect(t, reader)
			out := map[string]int64{}
			for _, st := range []string{"closed", "open", "half-open", "forced-open", "disabled"} {
				p, ok := points["resilient.breaker.status{breaker.name=db,breaker.state="+st+"}"]
				require.True(t, ok, st)
				out[st] = p.Value
			}
			return out
		}
		transitions := func() map[string]int64 {
			points, _ := collect(t, reader)
			out := map[string]int64{}
			for k, p := range points {
				if st, ok := strings.CutPrefix(k, "resilient.breaker.transitions{breaker.name=db,breaker.state="); ok {
					out[strings.TrimSuffix(st, "}")] = p.Value
				}
			}
			return out
		}
		assert.Equal(t, map[string]int64{"closed": 1, "open": 0, "half-open": 0, "forced-open": 0, "disabled": 0}, status(),
			"the initial state is recorded before any call")
		assert.Empty(t, transitions(), "the initial state is no transition")

		for range 3 { // two failures trip it; the third call is refused
			_, _ = resilient.Do(t.Context(), script(0, errFlaky), ex)
		}
		assert.Equal(t, int64(1), status()["open"])
		assert.Equal(t, int64(0), status()["closed"])
		points, _ := collect(t, reader)
		assert.Equal(t, int64(1), points["resilient.rejections{executor.name=api,policy.name=breaker}"].Value)

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, int64(1), status()["half-open"])
		_, err = resilient.Do(t.Context(), script(0), ex)
		require.NoError(t, err)
		assert.Equal(t, int64(1), status()["closed"])
		assert.Equal(t, map[string]int64{"open": 1, "half-open": 1, "closed": 1}, transitions())
	})
}

func TestMetricsInvalidUTF8Name(t *testing.T) {
	m, reader := newMetrics(t)
	_, err := resilient.Do(t.Context(), script(0), resilient.WithName("api\xff"), resilient.WithHooks(m.Hooks()))
	require.NoError(t, err)
	points, _ := collect(t, reader)
	assert.Equal(t, int64(1), points["resilient.calls{call.reason=success,executor.name=api\uFFFD}"].Value)
}

func TestMetricsBoundNames(t *testing.T) {
	m, reader := newMetrics(t, resilientotel.WithMaxNames(2))
	h := m.Hooks()
	for _, name := range []string{"a", "b", "c", "d", "a"} {
		h.OnDone(resilient.DoneEvent{Name: name, Attempts: 1})
		m.OnTransition(resilient.Transition{Name: name, From: resilient.StateClosed, To: resilient.StateOpen})
	}
	points, _ := collect(t, reader)
	calls := map[string]int64{}
	for k, p := range points {
		if strings.HasPrefix(k, "resilient.calls{") {
			calls[k] = p.Value
		}
	}
	assert.Equal(t, map[string]int64{
		"resilient.calls{call.reason=success,executor.name=_other}": 2,
		"resilient.calls{call.reason=success,executor.name=a}":      2,
		"resilient.calls{call.reason=success,executor.name=b}":      1,
	}, calls)
	assert.Equal(t, int64(2), points["resilient.breaker.transitions{breaker.name=_other,breaker.state=open}"].Value)
	assert.NotContains(t, points, "resilient.breaker.status{breaker.name=_other,breaker.state=open}", "the overflow has no single state")
	assert.Equal(t, int64(1), points["resilient.breaker.status{breaker.name=a,breaker.state=open}"].Value)
}

// TestMetricsMatchTextMetrics feeds the same calls to this adapter and to
// the core's TextMetrics: every counter, gauge and histogram count must
// agree, instrument by family and attribute by label.
func TestMetricsMatchTextMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reader := newMetrics(t)
		text := resilient.NewTextMetrics()
		br := resilient.MustNewBreaker(resilient.WithBreakerName("db"), resilient.WithConsecutiveFailures(1),
			resilient.WithStateListener(m.OnTransition), resilient.WithStateListener(text.OnTransition))
		opts := []resilient.Option{
			resilient.WithBackoff(resilient.Constant(250 * time.Millisecond)),
			resilient.WithJitter(resilient.NoJitter),
			resilient.WithHooks(m.Hooks()),
			resilient.WithHooks(text.Hooks()),
		}
		a := resilient.MustNew(append(opts, resilient.WithName("a"), resilient.WithAttempts(2))...)
		c := resilient.MustNew(append(opts, resilient.WithName("c"), resilient.WithBreaker(br))...)
		_, _ = resilient.Do(t.Context(), script(500*time.Millisecond, errFlaky), a)
		_, _ = resilient.Do(t.Context(), script(250*time.Millisecond, errFlaky, errFlaky), a)
		_, _ = resilient.Do(t.Context(), script(0, resilient.RetryAfter(errFlaky, time.Second)), a)
		_, _ = resilient.Do(t.Context(), script(0, resilient.Permanent(errFlaky)), c)
		_, _ = resilient.Do(t.Context(), script(0), c)

		families := map[string]string{
			"resilient.calls": "resilient_calls_total", "resilient.attempts": "resilient_attempts_total",
			"resilient.retries": "resilient_retries_total", "resilient.rejections": "resilient_rejections_total",
			"resilient.breaker.transitions": "resilient_breaker_transitions_total", "resilient.breaker.status": "resilient_breaker_state",
			"resilient.call.duration": "resilient_call_duration_seconds", "resilient.attempt.duration": "resilient_attempt_duration_seconds",
		}
		labels := strings.NewReplacer("call.reason", "reason", "attempt.outcome", "outcome", "retry.delay_source", "source",
			"policy.name", "policy", "breaker.state", "state", "breaker.name", "breaker", "executor.name", "executor")
		points, _ := collect(t, reader)
		fromOtel := map[string]string{}
		for k, p := range points {
			name, attrs, _ := strings.Cut(k, "{")
			family := families[name]
			require.NotEmpty(t, family, name)
			kv := strings.Split(strings.TrimSuffix(labels.Replace(attrs), "}"), ",")
			sort.Strings(kv)
			key := family + "{" + strings.Join(kv, ",") + "}"
			if strings.HasSuffix(family, "_seconds") {
				fromOtel[key+" count"] = fmt.Sprint(p.Count)
				fromOtel[key+" sum"] = fmt.Sprint(p.Sum)
			} else {
				fromOtel[key] = fmt.Sprint(p.Value)
			}
		}

		var out strings.Builder
		_, err := text.WriteTo(&out)
		require.NoError(t, err)
		fromText := map[string]string{}
		for line := range strings.Lines(out.String()) {
			if strings.HasPrefix(line, "#") || strings.Contains(line, "_bucket{") {
				continue
			}
			series, value, _ := strings.Cut(strings.TrimSpace(line), " ")
			name, attrs, _ := strings.Cut(series, "{")
			var kv []string
			for _, pair := range strings.Split(strings.TrimSuffix(attrs, "}"), ",") {
				kv = append(kv, strings.ReplaceAll(pair, `"`, ""))
			}
			sort.Strings(kv)
			suffix := ""
			if base, ok := strings.CutSuffix(name, "_count"); ok {
				name, suffix = base, " count"
			} else if base, ok := strings.CutSuffix(name, "_sum"); ok {
				name, suffix = base, " sum"
			}
			fromText[name+"{"+strings.Join(kv, ",")+"}"+suffix] = value
		}
		require.NotEmpty(t, fromText)
		assert.Equal(t, fromText, fromOtel)
	})
}

func TestMetricsOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  resilientotel.Option
		want string // "" valid; otherwise part of the error message
	}{
		{"buckets", resilientotel.WithBuckets(0.1, 1), ""},
		{"no buckets", resilientotel.WithBuckets(), "resilient: otel.WithBuckets: no bounds"},
		{"buckets not increasing", resilientotel.WithBuckets(1, 0.5), "resilient: otel.WithBuckets: bounds must increase"},
		{"max names", resilientotel.WithMaxNames(1), ""},
		{"negative max names", resilientotel.WithMaxNames(-1), "resilient: otel.WithMaxNames: n must be >= 1, got -1"},
		{"nil provider", resilientotel.WithMeterProvider(nil), "resilient: otel.WithMeterProvider: nil provider"},
		{"nil option", nil, "resilient: otel.New: nil option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := resilientotel.New(tc.opt)
			if tc.want == "" {
				require.NoError(t, err)
				assert.NotNil(t, m)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Nil(t, m)
			assert.Panics(t, func() { resilientotel.MustNew(tc.opt) })
		})
	}
}

func TestMetricsConcurrent(t *testing.T) {
	m, reader := newMetrics(t)
	const goroutines, calls = 40, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		ex := resilient.MustNew(
			resilient.WithName(fmt.Sprintf("ex-%d", g%4)),
			resilient.WithBackoff(resilient.Constant(0)),
			resilient.WithHooks(m.Hooks()),
		)
		wg.Go(func() {
			for range calls {
				_, _ = resilient.Do(t.Context(), script(0, errFlaky), ex)
			}
		})
		wg.Go(func() {
			var rm metricdata.ResourceMetrics
			_ = reader.Collect(context.Background(), &rm)
		})
	}
	wg.Wait()
	points, _ := collect(t, reader)
	for i := range 4 {
		assert.Equal(t, int64(goroutines/4*calls), points[fmt.Sprintf("resilient.calls{call.reason=success,executor.name=ex-%d}", i)].Value)
		assert.Equal(t, int64(goroutines/4*calls), points[fmt.Sprintf("resilient.retries{executor.name=ex-%d,retry.delay_source=backoff}", i)].Value)
		assert.Equal(t, uint64(goroutines/4*calls), points[fmt.Sprintf("resilient.attempt.duration{attempt.outcome=success,executor.name=ex-%d}", i)].Count)
	}
}

// TestMetricsAllocs: once an executor's name has been seen, recording a
// successful call through the SDK allocates nothing (the attribute sets
// and options are made once per name).
func TestMetricsAllocs(t *testing.T) {
	m, _ := newMetrics(t)
	ex := resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(m.Hooks()))
	ok := func(context.Context) (int, error) { return 1, nil }
	ctx := t.Context()
	_, _ = resilient.Do(ctx, ok, ex)
	allocs := testing.AllocsPerRun(1000, func() { _, _ = resilient.Do(ctx, ok, ex) })
	assert.Zero(t, allocs)
}

func BenchmarkHooks(b *testing.B) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	m := resilientotel.MustNew(resilientotel.WithMeterProvider(provider))
	ok := func(context.Context) (int, error) { return 1, nil }
	cases := []struct {
		name string
		ex   *resilient.Executor
	}{
		{"none", resilient.MustNew(resilient.WithName("api"))},
		// The floor of any hook: the executor then reads the clock.
		{"empty-hook", resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(resilient.Hooks{OnDone: func(resilient.DoneEvent) {}}))},
		{"otel", resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(m.Hooks()))},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = resilient.Do(ctx, ok, tc.ex)
			}
		})
	}
}
