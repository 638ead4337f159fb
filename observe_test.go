package resilient_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
)

var errObsFlaky = errors.New("flaky")

// obsScript fails with errs[i] on call i (nil: success) and then succeeds.
func obsScript(errs ...error) func(context.Context) (int, error) {
	var mu sync.Mutex
	n := 0
	return func(context.Context) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n <= len(errs) && errs[n-1] != nil {
			return n, errs[n-1]
		}
		return n, nil
	}
}

// obsRefuser is a policy of the test's own that refuses every attempt.
type obsRefuser struct{ err error }

func (p obsRefuser) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, p.err
}
func (obsRefuser) Done(resilient.Permit, resilient.Report) {}

// obsGate refuses every retry.
type obsGate struct{ err error }

func (obsGate) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, nil
}
func (obsGate) Done(resilient.Permit, resilient.Report) {}
func (g obsGate) AllowRetry(int) error                  { return g.err }

func TestObserveDeliversEveryEventInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []resilient.Event
		ex, err := resilient.New(
			resilient.WithName("users"),
			resilient.WithAttempts(4),
			resilient.WithBackoff(resilient.Constant(10*time.Millisecond)),
			resilient.WithJitter(resilient.NoJitter),
			resilient.WithHooks(resilient.Observe(func(ev resilient.Event) { events = append(events, ev) })),
		)
		require.NoError(t, err)
		hinted := resilient.RetryAfter(errObsFlaky, 30*time.Millisecond)
		calls := 0
		fn := func(context.Context) (int, error) {
			calls++
			time.Sleep(time.Millisecond) // fake time: each attempt lasts 1ms
			switch calls {
			case 1:
				return 0, errObsFlaky
			case 2:
				return 0, hinted
			}
			return calls, nil
		}
		v, err := resilient.Do(t.Context(), fn, ex)
		require.NoError(t, err)
		require.Equal(t, 3, v)

		want := []resilient.Event{
			// An attempt is told of with the wait that follows it, and the
			// hint its error carried.
			resilient.AttemptEvent{Name: "users", Attempt: resilient.Attempt{Number: 1, Duration: time.Millisecond, Err: errObsFlaky, Outcome: resilient.Retry,
				Delay: 10 * time.Millisecond, Source: resilient.FromBackoff}},
			resilient.RetryEvent{Name: "users", Attempt: 1, Err: errObsFlaky, Delay: 10 * time.Millisecond, Source: resilient.FromBackoff},
			resilient.AttemptEvent{Name: "users", Attempt: resilient.Attempt{Number: 2, Duration: time.Millisecond, Err: errObsFlaky, Outcome: resilient.Retry,
				Delay: 30 * time.Millisecond, Source: resilient.FromHint, Hint: 30 * time.Millisecond}},
			resilient.RetryEvent{Name: "users", Attempt: 2, Err: errObsFlaky, Delay: 30 * time.Millisecond, Source: resilient.FromHint},
			resilient.AttemptEvent{Name: "users", Attempt: resilient.Attempt{Number: 3, Duration: time.Millisecond, Outcome: resilient.Success}},
			resilient.DoneEvent{Name: "users", Attempts: 3, Reason: resilient.ReasonSuccess, Elapsed: 43 * time.Millisecond},
		}
		assert.Equal(t, want, events)
	})
}

func TestObserveNilIsFree(t *testing.T) {
	assert.Equal(t, resilient.Hooks{}, resilient.Observe(nil))
}

func TestRejectedBy(t *testing.T) {
	errMine := errors.New("my policy says no")
	cases := []struct {
		name string
		opts []resilient.Option
		fn   func(context.Context) (int, error)
		want string
	}{
		{"success", nil, obsScript(), ""},
		{"exhausted", []resilient.Option{resilient.WithAttempts(2)}, obsScript(errObsFlaky, errObsFlaky), ""},
		{"permanent", nil, obsScript(resilient.Permanent(errObsFlaky)), ""},
		{"own policy refuses the first attempt", []resilient.Option{resilient.WithPolicy(obsRefuser{errMine})}, obsScript(), resilient.PolicyOther},
		{"own gate refuses the retry", []resilient.Option{resilient.WithPolicy(obsGate{errMine})}, obsScript(errObsFlaky), resilient.PolicyOther},
		{
			// The inner call's refusal is the outer call's last error, not
			// its own refusal.
			"inner rejection is not the outer reason",
			[]resilient.Option{resilient.WithAttempts(1)},
			func(ctx context.Context) (int, error) {
				return resilient.Do(ctx, obsScript(), resilient.WithPolicy(obsRefuser{errMine}))
			},
			"",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]resilient.Option{resilient.WithBackoff(resilient.Constant(0))}, tc.opts...)
			_, err := resilient.Do(t.Context(), tc.fn, opts...)
			assert.Equal(t, tc.want, resilient.RejectedBy(err))
		})
	}
	assert.Empty(t, resilient.RejectedBy(nil))
	assert.Empty(t, resilient.RejectedBy(errMine))
}

func TestRejectedByLibraryPolicies(t *testing.T) {
	forcedOpen := resilient.MustNewBreaker(resilient.WithBreakerName("b"))
	forcedOpen.ForceOpen()
	full := resilient.MustNewBulkhead(1)
	require.NoError(t, full.Acquire(t.Context()))
	t.Cleanup(full.Release)
	// A budget of one retry, with no floor, spent by the first call.
	budget := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
	_, err := resilient.Do(t.Context(), obsScript(errObsFlaky), resilient.WithBackoff(resilient.Constant(0)), resilient.WithBudget(budget))
	require.NoError(t, err)
	// A throttle that refuses whenever its probability is above 0, after
	// failures that make it so.
	throttle := resilient.MustNewThrottle(resilient.WithThrottleRandom(func() float64 { return 0 }))
	for range 20 {
		_, _ = resilient.Do(t.Context(), obsScript(errObsFlaky), resilient.WithAttempts(1), resilient.WithThrottle(throttle))
	}
	require.Positive(t, throttle.Probability())

	cases := []struct {
		name string
		opt  resilient.Option
		fn   func(context.Context) (int, error)
		want string
	}{
		{"breaker", resilient.WithBreaker(forcedOpen), obsScript(), resilient.PolicyBreaker},
		{"bulkhead", resilient.WithBulkhead(full), obsScript(), resilient.PolicyBulkhead},
		{"budget", resilient.WithBudget(budget), obsScript(errObsFlaky), resilient.PolicyBudget},
		{"throttle", resilient.WithThrottle(throttle), obsScript(), resilient.PolicyThrottle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resilient.Do(t.Context(), tc.fn, resilient.WithBackoff(resilient.Constant(0)), tc.opt)
			require.ErrorIs(t, err, resilient.ErrRejected)
			assert.Equal(t, tc.want, resilient.RejectedBy(err))
		})
	}
}

func TestObserveBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events []resilient.Event
		br, err := resilient.NewBreaker(
			resilient.WithBreakerName("db"),
			resilient.WithConsecutiveFailures(2),
			resilient.WithOpenDuration(time.Second),
			resilient.ObserveBreaker(func(ev resilient.Event) { events = append(events, ev) }),
		)
		require.NoError(t, err)
		ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithBreaker(br))
		for range 2 {
			_, _ = resilient.Do(t.Context(), obsScript(errObsFlaky), ex)
		}
		var got [][2]resilient.State
		for _, ev := range events {
			tr, ok := ev.(resilient.Transition)
			require.True(t, ok, "%T", ev)
			assert.Equal(t, "db", tr.Name)
			got = append(got, [2]resilient.State{tr.From, tr.To})
		}
		assert.Equal(t, [][2]resilient.State{
			{resilient.StateClosed, resilient.StateClosed}, // the initial state
			{resilient.StateClosed, resilient.StateOpen},
		}, got)
		_, err = resilient.NewBreaker(resilient.ObserveBreaker(nil))
		assert.EqualError(t, err, "resilient: ObserveBreaker: nil function")
	})
}

// parseText reads the Prometheus text format into "name{labels}" → value,
// checking that every sample line belongs to a family declared before it.
func parseText(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	declared := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(f, " ")
			declared[name] = true
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "sample line %q", line)
		key := line[:i]
		name, _, _ := strings.Cut(key, "{")
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && declared[base] {
				family = base
			}
		}
		require.True(t, declared[family], "sample %q before its # TYPE", line)
		samples[key] = v
	}
	return samples
}

func TestTextMetricsCounts(t *testing.T) {
	errMine := errors.New("no")
	cases := []struct {
		name string
		opts []resilient.Option
		fn   func(context.Context) (int, error)
		want map[string]float64
	}{
		{
			name: "success at once",
			fn:   obsScript(),
			want: map[string]float64{
				`resilient_calls_total{executor="api",reason="success"}`:                                1,
				`resilient_attempts_total{executor="api",outcome="success"}`:                            1,
				`resilient_call_duration_seconds_count{executor="api",reason="success"}`:                1,
				`resilient_attempt_duration_seconds_count{executor="api",outcome="success"}`:            1,
				`resilient_attempt_duration_seconds_bucket{executor="api",outcome="success",le="+Inf"}`: 1,
			},
		},
		{
			name: "two retries then success",
			fn:   obsScript(errObsFlaky, resilient.RetryAfter(errObsFlaky, time.Millisecond)),
			want: map[string]float64{
				`resilient_calls_total{executor="api",reason="success"}`:     1,
				`resilient_attempts_total{executor="api",outcome="retry"}`:   2,
				`resilient_attempts_total{executor="api",outcome="success"}`: 1,
				`resilient_retries_total{executor="api",source="backoff"}`:   1,
				`resilient_retries_total{executor="api",source="hint"}`:      1,
			},
		},
		{
			name: "exhausted",
			opts: []resilient.Option{resilient.WithAttempts(2)},
			fn:   obsScript(errObsFlaky, errObsFlaky),
			want: map[string]float64{
				`resilient_calls_total{executor="api",reason="exhausted"}`: 1,
				`resilient_attempts_total{executor="api",outcome="retry"}`: 2,
				`resilient_retries_total{executor="api",source="backoff"}`: 1,
			},
		},
		{
			name: "refused by a policy",
			opts: []resilient.Option{resilient.WithPolicy(obsRefuser{errMine})},
			fn:   obsScript(),
			want: map[string]float64{
				`resilient_calls_total{executor="api",reason="rejected"}`:   1,
				`resilient_rejections_total{executor="api",policy="other"}`: 1,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := resilient.NewTextMetrics()
				opts := append([]resilient.Option{
					resilient.WithName("api"),
					resilient.WithBackoff(resilient.Constant(time.Millisecond)),
					resilient.WithHooks(m.Hooks()),
				}, tc.opts...)
				ex, err := resilient.New(opts...)
				require.NoError(t, err)
				_, _ = resilient.Do(t.Context(), tc.fn, ex)

				var b strings.Builder
				n, err := m.WriteTo(&b)
				require.NoError(t, err)
				assert.Equal(t, int64(b.Len()), n)
				got := parseText(t, b.String())
				for k, v := range tc.want {
					assert.Equal(t, v, got[k], "%s in\n%s", k, b.String())
				}
				// Every non-histogram series is accounted for: nothing more.
				for k := range got {
					if strings.Contains(k, "_duration_seconds") {
						continue
					}
					assert.Contains(t, tc.want, k, "unexpected series")
				}
			})
		})
	}
}

func TestTextMetricsBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := resilient.NewTextMetrics()
		br, err := resilient.NewBreaker(
			resilient.WithBreakerName("db"),
			resilient.WithConsecutiveFailures(2),
			resilient.WithOpenDuration(time.Second),
			resilient.WithStateListener(m.OnTransition),
		)
		require.NoError(t, err)
		ex := resilient.MustNew(resilient.WithName("api"), resilient.WithAttempts(1),
			resilient.WithBreaker(br), resilient.WithHooks(m.Hooks()))
		scrape := func() map[string]float64 {
			var b strings.Builder
			_, err := m.WriteTo(&b)
			require.NoError(t, err)
			return parseText(t, b.String())
		}
		state := func(got map[string]float64) map[string]float64 {
			out := map[string]float64{}
			for _, st := range []string{"closed", "open", "half_open", "forced_open", "disabled"} {
				out[st] = got[`resilient_breaker_state{breaker="db",state="`+st+`"}`]
			}
			return out
		}

		got := scrape()
		assert.Equal(t, map[string]float64{"closed": 1, "open": 0, "half_open": 0, "forced_open": 0, "disabled": 0}, state(got),
			"the initial state is exported before any call")
		assert.NotContains(t, got, `resilient_breaker_transitions_total{breaker="db",state="closed"}`, "the initial state is no transition")

		for range 3 { // two failures trip it; the third call is refused
			_, _ = resilient.Do(t.Context(), obsScript(errObsFlaky), ex)
		}
		got = scrape()
		assert.Equal(t, 1.0, state(got)["open"])
		assert.Equal(t, 0.0, state(got)["closed"])
		assert.Equal(t, 1.0, got[`resilient_breaker_transitions_total{breaker="db",state="open"}`])
		assert.Equal(t, 1.0, got[`resilient_rejections_total{executor="api",policy="breaker"}`])
		assert.Equal(t, 1.0, got[`resilient_calls_total{executor="api",reason="rejected"}`])

		time.Sleep(time.Second) // open duration: half-open, without a call
		synctest.Wait()
		assert.Equal(t, 1.0, state(scrape())["half_open"])
		_, err = resilient.Do(t.Context(), obsScript(), ex)
		require.NoError(t, err)
		got = scrape()
		assert.Equal(t, 1.0, state(got)["closed"])
		assert.Equal(t, 1.0, got[`resilient_breaker_transitions_total{breaker="db",state="half_open"}`])
		assert.Equal(t, 1.0, got[`resilient_breaker_transitions_total{breaker="db",state="closed"}`])
	})
}

func TestTextMetricsBreakerNamesBounded(t *testing.T) {
	m := resilient.NewTextMetrics()
	for i := range resilient.DefaultMaxNames + 3 {
		name := fmt.Sprintf("host-%d", i)
		m.OnTransition(resilient.Transition{Name: name, From: resilient.StateClosed, To: resilient.StateClosed})
		m.OnTransition(resilient.Transition{Name: name, From: resilient.StateClosed, To: resilient.StateOpen})
	}
	var b strings.Builder
	_, err := m.WriteTo(&b)
	require.NoError(t, err)
	got := parseText(t, b.String())
	assert.Equal(t, 3.0, got[`resilient_breaker_transitions_total{breaker="_other",state="open"}`])
	assert.NotContains(t, got, `resilient_breaker_state{breaker="_other",state="open"}`, "the overflow has no single state")
	assert.Equal(t, 1.0, got[`resilient_breaker_state{breaker="host-0",state="open"}`])
}

func TestTextMetricsHistogramBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := resilient.NewTextMetrics()
		ex := resilient.MustNew(resilient.WithName("h"), resilient.WithHooks(m.Hooks()))
		// A bucket counts values up to and including its bound.
		for _, d := range []time.Duration{0, 5 * time.Millisecond, 6 * time.Millisecond, 2 * time.Second, time.Minute} {
			_, err := resilient.Do(t.Context(), func(context.Context) (int, error) {
				time.Sleep(d)
				return 0, nil
			}, ex)
			require.NoError(t, err)
		}
		var b strings.Builder
		_, err := m.WriteTo(&b)
		require.NoError(t, err)
		got := parseText(t, b.String())
		bucket := func(le string) float64 {
			return got[`resilient_attempt_duration_seconds_bucket{executor="h",outcome="success",le="`+le+`"}`]
		}
		assert.Equal(t, 2.0, bucket("0.005"))
		assert.Equal(t, 3.0, bucket("0.01"))
		assert.Equal(t, 3.0, bucket("1"))
		assert.Equal(t, 4.0, bucket("2.5"))
		assert.Equal(t, 4.0, bucket("10"))
		assert.Equal(t, 5.0, bucket("+Inf"))
		assert.Equal(t, 5.0, got[`resilient_attempt_duration_seconds_count{executor="h",outcome="success"}`])
		assert.InDelta(t, 62.011, got[`resilient_attempt_duration_seconds_sum{executor="h",outcome="success"}`], 1e-9)
	})
}

func TestTextMetricsEscapesLabelValues(t *testing.T) {
	m := resilient.NewTextMetrics()
	ex := resilient.MustNew(resilient.WithName("a\"b\\c\nd"), resilient.WithHooks(m.Hooks()))
	_, err := resilient.Do(t.Context(), obsScript(), ex)
	require.NoError(t, err)
	var b strings.Builder
	_, err = m.WriteTo(&b)
	require.NoError(t, err)
	assert.Contains(t, b.String(), `resilient_calls_total{executor="a\"b\\c\nd",reason="success"} 1`+"\n")
}

func TestTextMetricsBoundsNames(t *testing.T) {
	m := resilient.NewTextMetrics()
	h := m.Hooks()
	for i := range resilient.DefaultMaxNames + 50 {
		h.OnDone(resilient.DoneEvent{Name: fmt.Sprintf("host-%d", i), Attempts: 1})
	}
	var b strings.Builder
	_, err := m.WriteTo(&b)
	require.NoError(t, err)
	got := parseText(t, b.String())
	calls := 0
	for k := range got {
		if strings.HasPrefix(k, "resilient_calls_total{") {
			calls++
		}
	}
	assert.Equal(t, resilient.DefaultMaxNames+1, calls, "one series per name kept, plus the overflow")
	assert.Equal(t, 50.0, got[`resilient_calls_total{executor="`+resilient.OverflowName+`",reason="success"}`])
	assert.Equal(t, 1.0, got[`resilient_calls_total{executor="host-0",reason="success"}`])
	assert.Zero(t, got[`resilient_calls_total{executor="host-120",reason="success"}`])
}

func TestTextMetricsConcurrent(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := resilient.NewTextMetrics()
	const goroutines, calls = 50, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		ex := resilient.MustNew(
			resilient.WithName(fmt.Sprintf("ex-%d", g%5)),
			resilient.WithBackoff(resilient.Constant(0)),
			resilient.WithHooks(m.Hooks()),
		)
		wg.Go(func() {
			for range calls {
				_, _ = resilient.Do(t.Context(), obsScript(errObsFlaky), ex)
			}
		})
		wg.Go(func() { // scrapes race with counting
			var b strings.Builder
			_, _ = m.WriteTo(&b)
		})
	}
	wg.Wait()
	var b strings.Builder
	_, err := m.WriteTo(&b)
	require.NoError(t, err)
	got := parseText(t, b.String())
	for i := range 5 {
		name := fmt.Sprintf("ex-%d", i)
		// Every call fails once, then succeeds.
		assert.Equal(t, float64(goroutines/5*calls), got[`resilient_calls_total{executor="`+name+`",reason="success"}`], name)
		assert.Equal(t, float64(goroutines/5*calls), got[`resilient_attempts_total{executor="`+name+`",outcome="retry"}`], name)
		assert.Equal(t, float64(goroutines/5*calls), got[`resilient_retries_total{executor="`+name+`",source="backoff"}`], name)
		assert.Equal(t, float64(goroutines/5*calls), got[`resilient_attempt_duration_seconds_count{executor="`+name+`",outcome="success"}`], name)
	}
}

// TestHotPathAllocs pins the cost of observing: an executor without hooks
// allocates nothing, and neither does one counted by TextMetrics once its
// name has been seen.
func TestHotPathAllocs(t *testing.T) {
	m := resilient.NewTextMetrics()
	ok := func(context.Context) (int, error) { return 1, nil }
	cases := []struct {
		name string
		ex   *resilient.Executor
	}{
		{"no hooks", resilient.MustNew(resilient.WithName("plain"))},
		{"text metrics", resilient.MustNew(resilient.WithName("metered"), resilient.WithHooks(m.Hooks()))},
		{"observe nil", resilient.MustNew(resilient.WithHooks(resilient.Observe(nil)))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			_, _ = resilient.Do(ctx, ok, tc.ex) // first sight of the name
			allocs := testing.AllocsPerRun(1000, func() {
				_, _ = resilient.Do(ctx, ok, tc.ex)
			})
			assert.Zero(t, allocs)
		})
	}
}

// BenchmarkObserveHooks measures what each way of observing adds to a
// successful call through a prebuilt executor.
func BenchmarkObserveHooks(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	debug := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ok := func(context.Context) (int, error) { return 1, nil }
	cases := []struct {
		name string
		h    resilient.Hooks
	}{
		{"none", resilient.Hooks{}},
		// The floor of any hook: the executor then reads the clock around
		// each attempt and call.
		{"empty-hook", resilient.Hooks{OnDone: func(resilient.DoneEvent) {}}},
		{"text-metrics", resilient.NewTextMetrics().Hooks()},
		{"slog-info", resilient.SlogHooks(quiet)},
		{"slog-debug", resilient.SlogHooks(debug)},
		{"observe", resilient.Observe(func(resilient.Event) {})},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			ex := resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(tc.h))
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				_, _ = resilient.Do(ctx, ok, ex)
			}
		})
	}
}
