package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
	resilientprom "github.com/resilient-go/resilient/contrib/prometheus"
)

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

func newRegistered(t *testing.T, opts ...resilientprom.Option) (*resilientprom.Metrics, *prom.Registry) {
	t.Helper()
	m, err := resilientprom.New(opts...)
	require.NoError(t, err)
	reg := prom.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	return m, reg
}

const (
	helpCalls    = "# HELP resilient_calls_total Calls that ended, by executor and reason.\n# TYPE resilient_calls_total counter\n"
	helpAttempts = "# HELP resilient_attempts_total Attempts made, by executor and outcome.\n# TYPE resilient_attempts_total counter\n"
	helpRetries  = "# HELP resilient_retries_total Retries scheduled, by executor and the source of their delay.\n# TYPE resilient_retries_total counter\n"
	helpRejects  = "# HELP resilient_rejections_total Calls refused by a policy, by executor and policy.\n# TYPE resilient_rejections_total counter\n"
)

func TestMetricsCountCalls(t *testing.T) {
	cases := []struct {
		name    string
		opts    []resilient.Option
		fn      func(context.Context) (int, error)
		timeout time.Duration // for the call's context; 0: none
		want    string
	}{
		{
			name: "success at once",
			fn:   script(0),
			want: helpAttempts + `resilient_attempts_total{executor="api",outcome="success"} 1
` + helpCalls + `resilient_calls_total{executor="api",reason="success"} 1
`,
		},
		{
			name: "retried with backoff and hint",
			fn:   script(0, errFlaky, resilient.RetryAfter(errFlaky, time.Second)),
			want: helpAttempts + `resilient_attempts_total{executor="api",outcome="retry"} 2
resilient_attempts_total{executor="api",outcome="success"} 1
` + helpCalls + `resilient_calls_total{executor="api",reason="success"} 1
` + helpRetries + `resilient_retries_total{executor="api",source="backoff"} 1
resilient_retries_total{executor="api",source="hint"} 1
`,
		},
		{
			name: "permanent failure",
			fn:   script(0, resilient.Permanent(errFlaky)),
			want: helpAttempts + `resilient_attempts_total{executor="api",outcome="fail"} 1
` + helpCalls + `resilient_calls_total{executor="api",reason="permanent"} 1
`,
		},
		{
			name: "exhausted",
			opts: []resilient.Option{resilient.WithAttempts(2)},
			fn:   script(0, errFlaky, errFlaky),
			want: helpAttempts + `resilient_attempts_total{executor="api",outcome="retry"} 2
` + helpCalls + `resilient_calls_total{executor="api",reason="exhausted"} 1
` + helpRetries + `resilient_retries_total{executor="api",source="backoff"} 1
`,
		},
		{
			name: "refused by a policy",
			opts: []resilient.Option{resilient.WithPolicy(refuser{errors.New("no")})},
			fn:   script(0),
			want: helpCalls + `resilient_calls_total{executor="api",reason="rejected"} 1
` + helpRejects + `resilient_rejections_total{executor="api",policy="other"} 1
`,
		},
		{
			name:    "deadline cannot fit the wait",
			fn:      script(0, errFlaky),
			timeout: 50 * time.Millisecond,
			want: helpAttempts + `resilient_attempts_total{executor="api",outcome="retry"} 1
` + helpCalls + `resilient_calls_total{executor="api",reason="deadline"} 1
`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, reg := newRegistered(t)
				opts := append([]resilient.Option{
					resilient.WithName("api"),
					resilient.WithBackoff(resilient.Constant(100 * time.Millisecond)),
					resilient.WithJitter(resilient.NoJitter),
					resilient.WithHooks(m.Hooks()),
				}, tc.opts...)
				ex, err := resilient.New(opts...)
				require.NoError(t, err)
				ctx := t.Context()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				_, _ = resilient.Do(ctx, tc.fn, ex)
				assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(tc.want),
					"resilient_calls_total", "resilient_attempts_total", "resilient_retries_total", "resilient_rejections_total"))
			})
		})
	}
}

func TestMetricsHistograms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reg := newRegistered(t, resilientprom.WithBuckets(0.1, 1))
		ex := resilient.MustNew(
			resilient.WithName("api"),
			resilient.WithBackoff(resilient.Constant(time.Second)),
			resilient.WithJitter(resilient.NoJitter),
			resilient.WithHooks(m.Hooks()),
		)
		// Attempts of 0.5s (retry) then 0.5s (success), a 1s wait: 2s in all.
		_, err := resilient.Do(t.Context(), script(500*time.Millisecond, errFlaky), ex)
		require.NoError(t, err)
		// One quick success: 0.0625s.
		_, err = resilient.Do(t.Context(), script(62500*time.Microsecond), ex)
		require.NoError(t, err)

		want := `# HELP resilient_attempt_duration_seconds Duration of attempts, by executor and outcome.
# TYPE resilient_attempt_duration_seconds histogram
resilient_attempt_duration_seconds_bucket{executor="api",outcome="retry",le="0.1"} 0
resilient_attempt_duration_seconds_bucket{executor="api",outcome="retry",le="1"} 1
resilient_attempt_duration_seconds_bucket{executor="api",outcome="retry",le="+Inf"} 1
resilient_attempt_duration_seconds_sum{executor="api",outcome="retry"} 0.5
resilient_attempt_duration_seconds_count{executor="api",outcome="retry"} 1
resilient_attempt_duration_seconds_bucket{executor="api",outcome="success",le="0.1"} 1
resilient_attempt_duration_seconds_bucket{executor="api",outcome="success",le="1"} 2
resilient_attempt_duration_seconds_bucket{executor="api",outcome="success",le="+Inf"} 2
resilient_attempt_duration_seconds_sum{executor="api",outcome="success"} 0.5625
resilient_attempt_duration_seconds_count{executor="api",outcome="success"} 2
# HELP resilient_call_duration_seconds Duration of calls, attempts and waits together, by executor and reason.
# TYPE resilient_call_duration_seconds histogram
resilient_call_duration_seconds_bucket{executor="api",reason="success",le="0.1"} 1
resilient_call_duration_seconds_bucket{executor="api",reason="success",le="1"} 1
resilient_call_duration_seconds_bucket{executor="api",reason="success",le="+Inf"} 2
resilient_call_duration_seconds_sum{executor="api",reason="success"} 2.0625
resilient_call_duration_seconds_count{executor="api",reason="success"} 2
`
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
			"resilient_attempt_duration_seconds", "resilient_call_duration_seconds"))
	})
}

// scenario feeds the same calls and breaker events to every hook and
// listener given: retries by backoff and by hint, every way a call can end
// (max_elapsed among them), refusals by a breaker and by a policy, and two
// executor names that are not valid UTF-8 and clean to one name, one of
// them refused. contrib/otel's test runs the same scenario.
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

// TestMetricsMatchTextMetrics feeds the same events to this adapter and to
// the core's stdlib TextMetrics: both must export the same families, help
// texts, labels and values, so one dashboard serves both (contrib/otel's
// test holds its instruments, through OpenTelemetry's Prometheus exporter,
// to the same exposition).
func TestMetricsMatchTextMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reg := newRegistered(t)
		text := resilient.NewTextMetrics()
		scenario(t, []resilient.Hooks{m.Hooks(), text.Hooks()}, []func(resilient.Transition){m.OnTransition, text.OnTransition})

		var out strings.Builder
		_, err := text.WriteTo(&out)
		require.NoError(t, err)
		assert.Contains(t, out.String(), `resilient_calls_total{executor="e",reason="max_elapsed"} 1`+"\n", "snake_case label values")
		assert.Contains(t, out.String(), "resilient_calls_total{executor=\"d\uFFFD\",reason=\"success\"} 1\n", "invalid names are cleaned")
		assert.Contains(t, out.String(), "resilient_rejections_total{executor=\"d\uFFFD\",policy=\"other\"} 1\n", "in rejections too")
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(out.String())))
		n, err := testutil.GatherAndCount(reg)
		require.NoError(t, err)
		assert.Positive(t, n)
	})
}

// TestMetricsInvalidUTF8NamesShareASeries pins a bug: two executor names
// that are not valid UTF-8 and clean to one label value got a series each
// in TextMetrics, and so one series twice in its exposition, which a
// Prometheus server refuses to scrape.
func TestMetricsInvalidUTF8NamesShareASeries(t *testing.T) {
	m, reg := newRegistered(t)
	text := resilient.NewTextMetrics()
	for _, name := range []string{"api\xff", "api\xfe", "api\uFFFD"} {
		for _, h := range []resilient.Hooks{m.Hooks(), text.Hooks()} {
			h.OnDone(resilient.DoneEvent{Name: name, Attempts: 1})
		}
	}
	want := helpCalls + "resilient_calls_total{executor=\"api\uFFFD\",reason=\"success\"} 3\n"
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "resilient_calls_total"))
	var out strings.Builder
	_, err := text.WriteTo(&out)
	require.NoError(t, err)
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(out.String()), "resilient_calls_total"))
	assert.Equal(t, 1, strings.Count(out.String(), "resilient_calls_total{"), out.String())
}

func TestMetricsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, reg := newRegistered(t)
		br, err := resilient.NewBreaker(
			resilient.WithBreakerName("db"),
			resilient.WithConsecutiveFailures(2),
			resilient.WithOpenDuration(time.Second),
			resilient.WithStateListener(m.OnTransition),
		)
		require.NoError(t, err)
		ex := resilient.MustNew(resilient.WithName("api"), resilient.WithAttempts(1),
			resilient.WithBreaker(br), resilient.WithHooks(m.Hooks()))
		const help = `# HELP resilient_breaker_state State of each breaker: 1 for the state it is in, 0 for the others.
# TYPE resilient_breaker_state gauge
`
		gauge := func(cur string) string {
			var b strings.Builder
			b.WriteString(help)
			for _, st := range []string{"closed", "disabled", "forced_open", "half_open", "open"} {
				v := 0
				if st == cur {
					v = 1
				}
				fmt.Fprintf(&b, "resilient_breaker_state{breaker=\"db\",state=%q} %d\n", st, v)
			}
			return b.String()
		}
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gauge("closed")), "resilient_breaker_state"),
			"the initial state is exported before any call")
		n, err := testutil.GatherAndCount(reg, "resilient_breaker_transitions_total")
		require.NoError(t, err)
		assert.Zero(t, n, "the initial state is no transition")

		for range 3 { // two failures trip it; the third call is refused
			_, _ = resilient.Do(t.Context(), script(0, errFlaky), ex)
		}
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gauge("open")+helpRejects+
			`resilient_rejections_total{executor="api",policy="breaker"} 1
`), "resilient_breaker_state", "resilient_rejections_total"))

		time.Sleep(time.Second) // half-open, without a call
		synctest.Wait()
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gauge("half_open")), "resilient_breaker_state"))
		_, err = resilient.Do(t.Context(), script(0), ex)
		require.NoError(t, err)
		assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(gauge("closed")+
			`# HELP resilient_breaker_transitions_total State changes of each breaker, by the state entered.
# TYPE resilient_breaker_transitions_total counter
resilient_breaker_transitions_total{breaker="db",state="closed"} 1
resilient_breaker_transitions_total{breaker="db",state="half_open"} 1
resilient_breaker_transitions_total{breaker="db",state="open"} 1
`), "resilient_breaker_state", "resilient_breaker_transitions_total"))
	})
}

// TestMetricsKeyedBreakers: a keyed set names each breaker after its key;
// the series stay bounded by WithMaxNames.
func TestMetricsKeyedBreakers(t *testing.T) {
	m, reg := newRegistered(t, resilientprom.WithMaxNames(2))
	set := resilient.MustNewBreakers(10, time.Minute, resilient.WithStateListener(m.OnTransition))
	for _, host := range []string{"a.example", "b.example", "c.example", "d.example"} {
		set.Get(host).ForceOpen()
	}
	want := `# HELP resilient_breaker_transitions_total State changes of each breaker, by the state entered.
# TYPE resilient_breaker_transitions_total counter
resilient_breaker_transitions_total{breaker="_other",state="forced_open"} 2
resilient_breaker_transitions_total{breaker="a.example",state="forced_open"} 1
resilient_breaker_transitions_total{breaker="b.example",state="forced_open"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "resilient_breaker_transitions_total"))
	n, err := testutil.GatherAndCount(reg, "resilient_breaker_state")
	require.NoError(t, err)
	assert.Equal(t, 2*5, n, "a state gauge per state for each of the two named breakers, none for the overflow")
}

// TestTextMetricsLint parses the core's TextMetrics output with the
// Prometheus text parser and lints it: the stdlib exposition is valid and
// follows the naming conventions too.
func TestTextMetricsLint(t *testing.T) {
	text := resilient.NewTextMetrics()
	br := resilient.MustNewBreaker(resilient.WithStateListener(text.OnTransition))
	br.ForceOpen()
	ex := resilient.MustNew(resilient.WithName("api"), resilient.WithAttempts(2),
		resilient.WithBackoff(resilient.Constant(0)), resilient.WithHooks(text.Hooks()))
	_, _ = resilient.Do(t.Context(), script(0, errFlaky, errFlaky), ex)
	_, _ = resilient.Do(t.Context(), script(0), ex, resilient.WithBreaker(br))
	var out strings.Builder
	_, err := text.WriteTo(&out)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(out.String()))
	require.NoError(t, err)
	require.Len(t, families, 8)
	gatherer := prom.GathererFunc(func() ([]*dto.MetricFamily, error) {
		fs := make([]*dto.MetricFamily, 0, len(families))
		for _, f := range families {
			fs = append(fs, f)
		}
		return fs, nil
	})
	problems, err := testutil.GatherAndLint(gatherer)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestMetricsLint(t *testing.T) {
	m, reg := newRegistered(t)
	br := resilient.MustNewBreaker(resilient.WithStateListener(m.OnTransition))
	br.ForceOpen()
	ex := resilient.MustNew(resilient.WithName("api"), resilient.WithAttempts(2),
		resilient.WithBackoff(resilient.Constant(0)), resilient.WithHooks(m.Hooks()))
	_, _ = resilient.Do(t.Context(), script(0), ex, resilient.WithBreaker(br))
	_, _ = resilient.Do(t.Context(), script(0, errFlaky, errFlaky), ex)
	_, _ = resilient.Do(t.Context(), script(0), ex, resilient.WithPolicy(refuser{errors.New("no")}))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Positive(t, n, "lint saw series")
}

// TestMetricsInvalidUTF8Name: the client panics on label values that are
// not valid UTF-8; a name with invalid bytes is recorded with U+FFFD.
func TestMetricsInvalidUTF8Name(t *testing.T) {
	m, reg := newRegistered(t)
	br := resilient.MustNewBreaker(resilient.WithBreakerName("db\xff"), resilient.WithStateListener(m.OnTransition))
	ex := resilient.MustNew(resilient.WithName("api\xff"), resilient.WithHooks(m.Hooks()), resilient.WithBreaker(br))
	require.NotPanics(t, func() { _, _ = resilient.Do(t.Context(), script(0), ex) })
	want := helpCalls + "resilient_calls_total{executor=\"api\uFFFD\",reason=\"success\"} 1\n"
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "resilient_calls_total"))
	n, err := testutil.GatherAndCount(reg, "resilient_breaker_state")
	require.NoError(t, err)
	assert.Equal(t, 5, n)
}

func TestMetricsBoundNames(t *testing.T) {
	m, reg := newRegistered(t, resilientprom.WithMaxNames(2))
	h := m.Hooks()
	for _, name := range []string{"a", "b", "c", "d", "a"} {
		h.OnDone(resilient.DoneEvent{Name: name, Attempts: 1})
	}
	want := helpCalls + `resilient_calls_total{executor="_other",reason="success"} 2
resilient_calls_total{executor="a",reason="success"} 2
resilient_calls_total{executor="b",reason="success"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "resilient_calls_total"))
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
// ("prometheus.WithBuckets"), matching resilient.ErrInvalidOption, with the
// exact message; several are all reported, and so is every invalid label
// of WithConstLabels, in order of their names.
func TestMetricsOptions(t *testing.T) {
	cases := []struct {
		name   string
		opt    resilientprom.Option
		option string // "" valid
		want   string
	}{
		{"namespace", resilientprom.WithNamespace("svc"), "", ""},
		{"empty namespace", resilientprom.WithNamespace(""), "prometheus.WithNamespace",
			`resilient: prometheus.WithNamespace: "" is not a valid metric name prefix`},
		{"namespace with a dash", resilientprom.WithNamespace("my-svc"), "prometheus.WithNamespace",
			`resilient: prometheus.WithNamespace: "my-svc" is not a valid metric name prefix`},
		{"namespace with a leading digit", resilientprom.WithNamespace("1svc"), "prometheus.WithNamespace",
			`resilient: prometheus.WithNamespace: "1svc" is not a valid metric name prefix`},
		{"buckets", resilientprom.WithBuckets(0.1, 1), "", ""},
		{"no buckets", resilientprom.WithBuckets(), "prometheus.WithBuckets", "resilient: prometheus.WithBuckets: no bounds"},
		{"buckets not increasing", resilientprom.WithBuckets(1, 1), "prometheus.WithBuckets",
			"resilient: prometheus.WithBuckets: bounds must increase, got 1 after 1"},
		{"NaN bucket", resilientprom.WithBuckets(0.1, nan()), "prometheus.WithBuckets",
			"resilient: prometheus.WithBuckets: bounds must increase, got NaN after 0.1"},
		{"NaN bucket alone", resilientprom.WithBuckets(nan()), "prometheus.WithBuckets",
			"resilient: prometheus.WithBuckets: bounds must be numbers, got NaN"},
		{"const labels", resilientprom.WithConstLabels(prom.Labels{"service": "x"}), "", ""},
		{"reserved label", resilientprom.WithConstLabels(prom.Labels{"__name": "x"}), "prometheus.WithConstLabels",
			`resilient: prometheus.WithConstLabels: "__name" is not a valid label name`},
		{"bucket label", resilientprom.WithConstLabels(prom.Labels{"le": "x"}), "prometheus.WithConstLabels",
			`resilient: prometheus.WithConstLabels: "le" is the histograms' bucket label`},
		{"a label of the metrics", resilientprom.WithConstLabels(prom.Labels{"executor": "x"}), "prometheus.WithConstLabels",
			`resilient: prometheus.WithConstLabels: "executor" is a label of the metrics' own`},
		{"value not UTF-8", resilientprom.WithConstLabels(prom.Labels{"service": "a\xffb"}), "prometheus.WithConstLabels",
			`resilient: prometheus.WithConstLabels: the value of "service" is not valid UTF-8`},
		{"every bad label", resilientprom.WithConstLabels(prom.Labels{"state": "x", "ok": "y", "1x": "z", "le": "w"}), "prometheus.WithConstLabels",
			`resilient: prometheus.WithConstLabels: "1x" is not a valid label name; "le" is the histograms' bucket label; ` +
				`"state" is a label of the metrics' own`},
		{"max names", resilientprom.WithMaxNames(1), "", ""},
		{"zero max names", resilientprom.WithMaxNames(0), "prometheus.WithMaxNames",
			"resilient: prometheus.WithMaxNames: n must be >= 1, got 0"},
		{"nil option", nil, "prometheus.New", "resilient: prometheus.New: nil option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := resilientprom.New(tc.opt)
			if tc.option == "" {
				require.NoError(t, err)
				assert.NotNil(t, m)
				return
			}
			assert.Nil(t, m)
			require.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.Equal(t, []string{tc.option}, optionNames(t, err))
			assert.EqualError(t, err, tc.want)
			assert.Panics(t, func() { resilientprom.MustNew(tc.opt) })
		})
	}
	t.Run("several", func(t *testing.T) {
		m, err := resilientprom.New(resilientprom.WithNamespace("a-b"), resilientprom.WithMaxNames(3), nil,
			resilientprom.WithConstLabels(prom.Labels{"le": "1"}))
		assert.Nil(t, m)
		require.ErrorIs(t, err, resilient.ErrInvalidOption)
		assert.Equal(t, []string{"prometheus.WithNamespace", "prometheus.New", "prometheus.WithConstLabels"}, optionNames(t, err))
	})
}

// TestConstLabelsTheClientWouldRefuse pins a bug: a const label the client
// refuses only later (a clash with the metrics' own labels when they are
// registered, "le" with a panic at the first observation of a duration,
// in the caller's call) was accepted. Every label the option accepts
// registers and records.
func TestConstLabelsTheClientWouldRefuse(t *testing.T) {
	for _, name := range []string{"le", "executor", "reason", "outcome", "source", "policy", "breaker", "state"} {
		_, err := resilientprom.New(resilientprom.WithConstLabels(prom.Labels{name: "x"}))
		assert.ErrorIs(t, err, resilient.ErrInvalidOption, name)
	}
	m, err := resilientprom.New(resilientprom.WithConstLabels(prom.Labels{"service": "checkout", "lee": "x"}))
	require.NoError(t, err)
	reg := prom.NewRegistry()
	require.NoError(t, reg.Register(m))
	br := resilient.MustNewBreaker(resilient.WithBreakerName("b"), resilient.WithStateListener(m.OnTransition))
	assert.NotPanics(t, func() {
		_, _ = resilient.Do(t.Context(), script(0, errFlaky), resilient.WithName("a"), resilient.WithHooks(m.Hooks()),
			resilient.WithBreaker(br), resilient.WithBackoff(resilient.Constant(0)))
	})
	_, err = reg.Gather()
	assert.NoError(t, err)
}

func nan() float64 { z := 0.0; return z / z }

func TestMetricsNamespaceAndConstLabels(t *testing.T) {
	m, reg := newRegistered(t, resilientprom.WithNamespace("svc"), resilientprom.WithConstLabels(prom.Labels{"service": "checkout"}))
	_, err := resilient.Do(t.Context(), script(0), resilient.WithName("api"), resilient.WithHooks(m.Hooks()))
	require.NoError(t, err)
	want := `# HELP svc_calls_total Calls that ended, by executor and reason.
# TYPE svc_calls_total counter
svc_calls_total{executor="api",reason="success",service="checkout"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "svc_calls_total"))
}

func TestMetricsConcurrent(t *testing.T) {
	m, reg := newRegistered(t)
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
		wg.Go(func() { _, _ = reg.Gather() })
	}
	wg.Wait()
	var want strings.Builder
	want.WriteString(helpCalls)
	for i := range 4 {
		fmt.Fprintf(&want, "resilient_calls_total{executor=\"ex-%d\",reason=\"success\"} %d\n", i, goroutines/4*calls)
	}
	want.WriteString(helpRetries)
	for i := range 4 {
		fmt.Fprintf(&want, "resilient_retries_total{executor=\"ex-%d\",source=\"backoff\"} %d\n", i, goroutines/4*calls)
	}
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "resilient_calls_total", "resilient_retries_total"))
}

// TestMetricsAllocs: once an executor's name has been seen, counting a
// successful call allocates nothing.
func TestMetricsAllocs(t *testing.T) {
	m, _ := newRegistered(t)
	ex := resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(m.Hooks()))
	ok := func(context.Context) (int, error) { return 1, nil }
	ctx := t.Context()
	_, _ = resilient.Do(ctx, ok, ex)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = resilient.Do(ctx, ok, ex) }))
}

func BenchmarkHooks(b *testing.B) {
	m := resilientprom.MustNew()
	ok := func(context.Context) (int, error) { return 1, nil }
	cases := []struct {
		name string
		ex   *resilient.Executor
	}{
		{"none", resilient.MustNew(resilient.WithName("api"))},
		// The floor of any hook: the executor then reads the clock.
		{"empty-hook", resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(resilient.Hooks{OnDone: func(resilient.DoneEvent) {}}))},
		{"prometheus", resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(m.Hooks()))},
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

// FuzzTextMetricsNames: whatever an executor is named, the core's text
// exposition parses, and the label reads back as the name (made valid
// UTF-8).
func FuzzTextMetricsNames(f *testing.F) {
	for _, seed := range []string{"", "users-api", `a"b\c`, "line\nfeed", "tab\there", "\xff\xfe", "ü/ß", "}", "{", "=,", "_other"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		text := resilient.NewTextMetrics()
		text.Hooks().OnDone(resilient.DoneEvent{Name: name, Attempts: 1})
		text.OnTransition(resilient.Transition{Name: name, From: resilient.StateClosed, To: resilient.StateOpen})
		var out strings.Builder
		_, err := text.WriteTo(&out)
		require.NoError(t, err)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(out.String()))
		require.NoError(t, err, out.String())
		want := strings.ToValidUTF8(name, "\uFFFD")
		calls := families["resilient_calls_total"]
		require.NotNil(t, calls)
		require.Len(t, calls.GetMetric(), 1)
		labels := map[string]string{}
		for _, l := range calls.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		assert.Equal(t, want, labels["executor"])
		assert.Equal(t, "success", labels["reason"])
		assert.Len(t, families["resilient_breaker_state"].GetMetric(), 5)
	})
}
