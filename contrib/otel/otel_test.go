package otel_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
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

// collect reads every data point as "instrument{k=v,…}" (keys sorted) →
// point, and checks each instrument's scope.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string]point, map[string]string) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	points := map[string]point{}
	units := map[string]string{}
	key := func(name string, set attribute.Set) string {
		var kv []string
		for _, a := range set.ToSlice() {
			kv = append(kv, string(a.Key)+"="+a.Value.AsString())
		}
		sort.Strings(kv)
		return name + "{" + strings.Join(kv, ",") + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, resilientotel.ScopeName, sm.Scope.Name)
		assert.Equal(t, resilientotel.Version, sm.Scope.Version)
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
				"resilient.calls{executor=api,reason=success}":     1,
				"resilient.attempts{executor=api,outcome=success}": 1,
			},
		},
		{
			name: "retried with backoff and hint",
			fn:   script(0, errFlaky, resilient.RetryAfter(errFlaky, time.Second)),
			want: map[string]int64{
				"resilient.calls{executor=api,reason=success}":     1,
				"resilient.attempts{executor=api,outcome=retry}":   2,
				"resilient.attempts{executor=api,outcome=success}": 1,
				"resilient.retries{executor=api,source=backoff}":   1,
				"resilient.retries{executor=api,source=hint}":      1,
			},
		},
		{
			name: "exhausted",
			opts: []resilient.Option{resilient.WithAttempts(2)},
			fn:   script(0, errFlaky, errFlaky),
			want: map[string]int64{
				"resilient.calls{executor=api,reason=exhausted}": 1,
				"resilient.attempts{executor=api,outcome=retry}": 2,
				"resilient.retries{executor=api,source=backoff}": 1,
			},
		},
		{
			name: "permanent",
			fn:   script(0, resilient.Permanent(errFlaky)),
			want: map[string]int64{
				"resilient.calls{executor=api,reason=permanent}": 1,
				"resilient.attempts{executor=api,outcome=fail}":  1,
			},
		},
		{
			name: "refused by a policy",
			opts: []resilient.Option{resilient.WithPolicy(refuser{errors.New("no")})},
			fn:   script(0),
			want: map[string]int64{
				"resilient.calls{executor=api,reason=rejected}":   1,
				"resilient.rejections{executor=api,policy=other}": 1,
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
			points["resilient.attempt.duration{executor=api,outcome=retry}"])
		assert.Equal(t, point{Count: 2, Sum: 0.5625, Buckets: []uint64{1, 1, 0}},
			points["resilient.attempt.duration{executor=api,outcome=success}"])
		assert.Equal(t, point{Count: 2, Sum: 2.0625, Buckets: []uint64{1, 0, 1}},
			points["resilient.call.duration{executor=api,reason=success}"])
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
			for _, st := range []string{"closed", "open", "half_open", "forced_open", "disabled"} {
				p, ok := points["resilient.breaker.state{breaker=db,state="+st+"}"]
				require.True(t, ok, st)
				out[st] = p.Value
			}
			return out
		}
		transitions := func() map[string]int64 {
			points, _ := collect(t, reader)
			out := map[string]int64{}
			for k, p := range points {
				if st, ok := strings.CutPrefix(k, "resilient.breaker.transitions{breaker=db,state="); ok {
					out[strings.TrimSuffix(st, "}")] = p.Value
				}
			}
			return out
		}
		assert.Equal(t, map[string]int64{"closed": 1, "open": 0, "half_open": 0, "forced_open": 0, "disabled": 0}, status(),
			"the initial state is recorded before any call")
		assert.Empty(t, transitions(), "the initial state is no transition")

		for range 3 { // two failures trip it; the third call is refused
			_, _ = resilient.Do(t.Context(), script(0, errFlaky), ex)
		}
		assert.Equal(t, int64(1), status()["open"])
		assert.Equal(t, int64(0), status()["closed"])
		points, _ := collect(t, reader)
		assert.Equal(t, int64(1), points["resilient.rejections{executor=api,policy=breaker}"].Value)

		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, int64(1), status()["half_open"])
		_, err = resilient.Do(t.Context(), script(0), ex)
		require.NoError(t, err)
		assert.Equal(t, int64(1), status()["closed"])
		assert.Equal(t, map[string]int64{"open": 1, "half_open": 1, "closed": 1}, transitions())
	})
}

func TestMetricsInvalidUTF8Name(t *testing.T) {
	m, reader := newMetrics(t)
	_, err := resilient.Do(t.Context(), script(0), resilient.WithName("api\xff"), resilient.WithHooks(m.Hooks()))
	require.NoError(t, err)
	points, _ := collect(t, reader)
	assert.Equal(t, int64(1), points["resilient.calls{executor=api\uFFFD,reason=success}"].Value)
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
		"resilient.calls{executor=_other,reason=success}": 2,
		"resilient.calls{executor=a,reason=success}":      2,
		"resilient.calls{executor=b,reason=success}":      1,
	}, calls)
	assert.Equal(t, int64(2), points["resilient.breaker.transitions{breaker=_other,state=open}"].Value)
	assert.NotContains(t, points, "resilient.breaker.state{breaker=_other,state=open}", "the overflow has no single state")
	assert.Equal(t, int64(1), points["resilient.breaker.state{breaker=a,state=open}"].Value)
}

// scenario feeds the same calls and breaker events to every hook and
// listener given: retries by backoff and by hint, every way a call can end
// (max_elapsed among them), refusals by a breaker and by a policy, and two
// executor names that are not valid UTF-8 and clean to one name, one of
// them refused.
func scenario(t *testing.T, hooks []resilient.Hooks, listeners []func(resilient.Transition)) {
	opts := []resilient.Option{
		resilient.WithBackoff(resilient.Constant(250 * time.Millisecond)),
		resilient.WithJitter(resilient.NoJitter),
	}
	for _, h := range hooks {
		opts = append(opts, resilient.WithHooks(h))
	}
	brOpts := []resilient.BreakerOption{resilient.WithBreakerName("db"), resilient.WithConsecutiveFailures(1)}
	for _, l := range listeners {
		brOpts = append(brOpts, resilient.WithStateListener(l))
	}
	br := resilient.MustNewBreaker(brOpts...)
	refuse := resilient.WithPolicy(refuser{errors.New("no")})
	a := resilient.MustNew(append(opts, resilient.WithName("a"), resilient.WithAttempts(2))...)
	b := resilient.MustNew(append(opts, resilient.WithName("b"), refuse)...)
	c := resilient.MustNew(append(opts, resilient.WithName("c"), resilient.WithBreaker(br))...)
	d1 := resilient.MustNew(append(opts, resilient.WithName("d\xff"))...)
	d2 := resilient.MustNew(append(opts, resilient.WithName("d\xfe"), refuse)...)
	e := resilient.MustNew(append(opts, resilient.WithName("e"), resilient.WithMaxElapsed(100*time.Millisecond))...)
	ctx := t.Context()
	_, _ = resilient.Do(ctx, script(500*time.Millisecond, errFlaky), a)
	_, _ = resilient.Do(ctx, script(250*time.Millisecond, errFlaky, errFlaky), a)
	_, _ = resilient.Do(ctx, script(2*time.Second, resilient.Permanent(errFlaky)), a)
	_, _ = resilient.Do(ctx, script(0, resilient.RetryAfter(errFlaky, time.Second)), a)
	_, _ = resilient.Do(ctx, script(0), b)
	_, _ = resilient.Do(ctx, script(0, resilient.Permanent(errFlaky)), c)
	_, _ = resilient.Do(ctx, script(0), c)
	_, _ = resilient.Do(ctx, script(0), d1)
	_, _ = resilient.Do(ctx, script(0), d2)
	_, _ = resilient.Do(ctx, script(0, errFlaky), e)
}

// exposition reads families as "name TYPE help" and series as
// "name{label=value,…} value" lines, sorted; histograms by their count and
// sum (the adapters' default buckets differ). Labels that OpenTelemetry's
// exporter adds to every series (otel_scope_*) and its target_info family
// are left out: they say where the series came from.
func exposition(families []*dto.MetricFamily) []string {
	var out []string
	for _, f := range families {
		if f.GetName() == "target_info" {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", f.GetName(), f.GetType(), f.GetHelp()))
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if !strings.HasPrefix(l.GetName(), "otel_scope_") {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			sort.Strings(labels)
			series := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, fmt.Sprint(series, " ", m.GetCounter().GetValue()))
			case dto.MetricType_GAUGE:
				out = append(out, fmt.Sprint(series, " ", m.GetGauge().GetValue()))
			case dto.MetricType_HISTOGRAM:
				out = append(out, fmt.Sprint(series, " count ", m.GetHistogram().GetSampleCount()),
					fmt.Sprint(series, " sum ", m.GetHistogram().GetSampleSum()))
			default:
				out = append(out, series+" unexpected type "+f.GetType().String())
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestMetricsMatchTextMetrics feeds the same events to this adapter,
// exported through OpenTelemetry's Prometheus exporter as a program would
// serve it, and to the core's TextMetrics (whose exposition
// contrib/prometheus matches exactly, by a test of its own): every family
// (name, type, help text), every series (labels and label values) and
// every value must agree. One naming table, followed by all three.
func TestMetricsMatchTextMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prom.NewPedanticRegistry()
		exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
		require.NoError(t, err)
		provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
		defer func() { _ = provider.Shutdown(context.Background()) }()
		m, err := resilientotel.New(resilientotel.WithMeterProvider(provider))
		require.NoError(t, err)
		text := resilient.NewTextMetrics()

		scenario(t, []resilient.Hooks{m.Hooks(), text.Hooks()}, []func(resilient.Transition){m.OnTransition, text.OnTransition})

		fromOtel, err := reg.Gather()
		require.NoError(t, err)
		var out strings.Builder
		_, err = text.WriteTo(&out)
		require.NoError(t, err)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fromText, err := parser.TextToMetricFamilies(strings.NewReader(out.String()))
		require.NoError(t, err)
		textFamilies := make([]*dto.MetricFamily, 0, len(fromText))
		for _, f := range fromText {
			textFamilies = append(textFamilies, f)
		}
		want := exposition(textFamilies)
		require.Len(t, fromText, 8, "every family has series")
		assert.Contains(t, want, `resilient_calls_total{executor=e,reason=max_elapsed} 1`, "snake_case label values")
		assert.Contains(t, want, "resilient_calls_total{executor=d\uFFFD,reason=success} 1", "invalid names are cleaned")
		assert.Contains(t, want, "resilient_rejections_total{executor=d\uFFFD,policy=other} 1", "in rejections too")
		assert.Equal(t, want, exposition(fromOtel))

		// The scope is recorded with its version.
		for _, f := range fromOtel {
			if f.GetName() == "resilient_calls_total" {
				labels := map[string]string{}
				for _, l := range f.GetMetric()[0].GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				assert.Equal(t, resilientotel.ScopeName, labels["otel_scope_name"])
				assert.Equal(t, resilientotel.Version, labels["otel_scope_version"])
			}
		}
	})
}

// optionNames lists the options named by the *resilient.OptionErrors err
// joins, in order.
func optionNames(t *testing.T, err error) []string {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var names []string
	for _, e := range errs {
		var oe *resilient.OptionError
		if assert.True(t, errors.As(e, &oe), "not an *OptionError: %v", e) {
			names = append(names, oe.Option)
		}
	}
	return names
}

// Each invalid option of New is a *resilient.OptionError that names it
// ("otel.WithBuckets"), matching resilient.ErrInvalidOption, with the exact
// message; several are all reported.
func TestMetricsOptions(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name   string
		opt    resilientotel.Option
		option string // "" valid
		want   string
	}{
		{"buckets", resilientotel.WithBuckets(0.1, 1), "", ""},
		{"no buckets", resilientotel.WithBuckets(), "otel.WithBuckets", "resilient: otel.WithBuckets: no bounds"},
		{"buckets not increasing", resilientotel.WithBuckets(1, 0.5), "otel.WithBuckets",
			"resilient: otel.WithBuckets: bounds must increase, got 0.5 after 1"},
		{"NaN bucket", resilientotel.WithBuckets(0.1, nan), "otel.WithBuckets",
			"resilient: otel.WithBuckets: bounds must increase, got NaN after 0.1"},
		{"NaN bucket alone", resilientotel.WithBuckets(nan), "otel.WithBuckets",
			"resilient: otel.WithBuckets: bounds must be numbers, got NaN"},
		{"max names", resilientotel.WithMaxNames(1), "", ""},
		{"negative max names", resilientotel.WithMaxNames(-1), "otel.WithMaxNames",
			"resilient: otel.WithMaxNames: n must be >= 1, got -1"},
		{"nil provider", resilientotel.WithMeterProvider(nil), "otel.WithMeterProvider",
			"resilient: otel.WithMeterProvider: nil provider"},
		{"nil option", nil, "otel.New", "resilient: otel.New: nil option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := resilientotel.New(tc.opt)
			if tc.option == "" {
				require.NoError(t, err)
				assert.NotNil(t, m)
				return
			}
			assert.Nil(t, m)
			require.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.Equal(t, []string{tc.option}, optionNames(t, err))
			assert.EqualError(t, err, tc.want)
			assert.Panics(t, func() { resilientotel.MustNew(tc.opt) })
		})
	}
	t.Run("several", func(t *testing.T) {
		m, err := resilientotel.New(resilientotel.WithMaxNames(0), nil, resilientotel.WithBuckets(0.1, 1), resilientotel.WithMeterProvider(nil))
		assert.Nil(t, m)
		require.ErrorIs(t, err, resilient.ErrInvalidOption)
		assert.Equal(t, []string{"otel.WithMaxNames", "otel.New", "otel.WithMeterProvider"}, optionNames(t, err))
	})
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
		assert.Equal(t, int64(goroutines/4*calls), points[fmt.Sprintf("resilient.calls{executor=ex-%d,reason=success}", i)].Value)
		assert.Equal(t, int64(goroutines/4*calls), points[fmt.Sprintf("resilient.retries{executor=ex-%d,source=backoff}", i)].Value)
		assert.Equal(t, uint64(goroutines/4*calls), points[fmt.Sprintf("resilient.attempt.duration{executor=ex-%d,outcome=success}", i)].Count)
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
