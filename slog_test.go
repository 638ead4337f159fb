package resilient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/resilient-go/resilient"
)

// slogRecorder is a slog.Handler that keeps every record it is given.
type slogRecorder struct {
	level slog.Level
	mu    *sync.Mutex
	recs  *[]loggedRecord
}

type loggedRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]any
}

func newSlogRecorder(level slog.Level) (*slog.Logger, func() []loggedRecord) {
	h := slogRecorder{level: level, mu: new(sync.Mutex), recs: new([]loggedRecord)}
	return slog.New(h), func() []loggedRecord {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]loggedRecord(nil), *h.recs...)
	}
}

func (h slogRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h slogRecorder) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, loggedRecord{r.Level, r.Message, attrs})
	return nil
}
func (h slogRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h slogRecorder) WithGroup(string) slog.Handler      { return h }

func TestSlogHooksRecords(t *testing.T) {
	errMine := errors.New("no")
	cases := []struct {
		name  string
		level slog.Level
		opts  []resilient.Option
		fn    func(context.Context) (int, error)
		ctx   func(context.Context) context.Context
		want  []loggedRecord
	}{
		{
			name:  "retry then success, debug",
			level: slog.LevelDebug,
			fn:    obsScript(errObsFlaky),
			want: []loggedRecord{
				{slog.LevelDebug, resilient.LogMsgAttempt, map[string]any{"executor": "api", "attempt": int64(1), "outcome": "retry", "duration": time.Millisecond, "error": errObsFlaky}},
				{slog.LevelInfo, resilient.LogMsgRetry, map[string]any{"executor": "api", "attempt": int64(1), "delay": 10 * time.Millisecond, "delay_source": "backoff", "error": errObsFlaky}},
				{slog.LevelDebug, resilient.LogMsgAttempt, map[string]any{"executor": "api", "attempt": int64(2), "outcome": "success", "duration": time.Millisecond}},
				{slog.LevelDebug, resilient.LogMsgDone, map[string]any{"executor": "api", "attempts": int64(2), "reason": "success", "elapsed": 12 * time.Millisecond}},
			},
		},
		{
			name:  "retry then success, info",
			level: slog.LevelInfo,
			fn:    obsScript(errObsFlaky),
			want: []loggedRecord{
				{slog.LevelInfo, resilient.LogMsgRetry, map[string]any{"executor": "api", "attempt": int64(1), "delay": 10 * time.Millisecond, "delay_source": "backoff", "error": errObsFlaky}},
			},
		},
		{
			name:  "give-up is a warning",
			level: slog.LevelWarn,
			opts:  []resilient.Option{resilient.WithAttempts(2)},
			fn:    obsScript(errObsFlaky, errObsFlaky),
			want: []loggedRecord{
				{slog.LevelWarn, resilient.LogMsgGaveUp, map[string]any{"executor": "api", "attempts": int64(2), "reason": "exhausted", "elapsed": 12 * time.Millisecond, "error": nil}},
			},
		},
		{
			name:  "refusal names the policy",
			level: slog.LevelWarn,
			opts:  []resilient.Option{resilient.WithPolicy(obsRefuser{errMine})},
			fn:    obsScript(),
			want: []loggedRecord{
				{slog.LevelWarn, resilient.LogMsgGaveUp, map[string]any{"executor": "api", "attempts": int64(0), "reason": "rejected", "elapsed": time.Duration(0), "error": nil, "policy": resilient.PolicyOther}},
			},
		},
		{
			name:  "caller's cancellation is not a warning",
			level: slog.LevelInfo,
			fn:    obsScript(),
			ctx: func(ctx context.Context) context.Context {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return ctx
			},
			want: []loggedRecord{
				{slog.LevelInfo, resilient.LogMsgGaveUp, map[string]any{"executor": "api", "attempts": int64(0), "reason": "canceled", "elapsed": time.Duration(0), "error": nil}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logger, records := newSlogRecorder(tc.level)
				opts := append([]resilient.Option{
					resilient.WithName("api"),
					resilient.WithBackoff(resilient.Constant(10 * time.Millisecond)),
					resilient.WithJitter(resilient.NoJitter),
					resilient.WithHooks(resilient.SlogHooks(logger)),
				}, tc.opts...)
				ex, err := resilient.New(opts...)
				require.NoError(t, err)
				ctx := t.Context()
				if tc.ctx != nil {
					ctx = tc.ctx(ctx)
				}
				fn := func(ctx context.Context) (int, error) {
					time.Sleep(time.Millisecond)
					return tc.fn(ctx)
				}
				_, callErr := resilient.Do(ctx, fn, ex)
				got := records()
				// A give-up's error is the call's own: check it by identity.
				for i := range tc.want {
					if v, ok := tc.want[i].Attrs["error"]; ok && v == nil {
						require.Less(t, i, len(got))
						assert.Equal(t, callErr, got[i].Attrs["error"])
						tc.want[i].Attrs["error"] = callErr
					}
				}
				assert.Equal(t, tc.want, got)
			})
		})
	}
}

func TestSlogHooksNilLoggerIsDefault(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))

	_, err := resilient.Do(t.Context(), obsScript(errObsFlaky), resilient.WithName("d"),
		resilient.WithBackoff(resilient.Constant(0)), resilient.WithHooks(resilient.SlogHooks(nil)))
	require.NoError(t, err)
	assert.Contains(t, buf.String(), `level=INFO msg="resilient: retry" executor=d attempt=1 delay=0s delay_source=backoff error=flaky`)
}

// TestSlogHooksAllocs pins the cost of logging: a logger that is not
// enabled for a successful call's Debug records costs no allocation.
func TestSlogHooksAllocs(t *testing.T) {
	ok := func(context.Context) (int, error) { return 1, nil }
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ex := resilient.MustNew(resilient.WithName("quiet"), resilient.WithHooks(resilient.SlogHooks(quiet)))
	ctx := t.Context()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = resilient.Do(ctx, ok, ex) }))
}

func TestSlogStateListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logger, records := newSlogRecorder(slog.LevelDebug)
		br, err := resilient.NewBreaker(
			resilient.WithBreakerName("db"),
			resilient.WithConsecutiveFailures(2),
			resilient.WithOpenDuration(time.Second),
			resilient.WithStateListener(resilient.SlogStateListener(logger)),
		)
		require.NoError(t, err)
		ex := resilient.MustNew(resilient.WithAttempts(1), resilient.WithBreaker(br))
		for range 2 {
			_, _ = resilient.Do(t.Context(), obsScript(errObsFlaky), ex)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		_, err = resilient.Do(t.Context(), obsScript(), ex)
		require.NoError(t, err)
		br.ForceOpen()

		got := records()
		require.Len(t, got, 5)
		type step struct {
			level    slog.Level
			from, to string
		}
		var steps []step
		for _, r := range got {
			assert.Equal(t, resilient.LogMsgBreaker, r.Msg)
			assert.Equal(t, "db", r.Attrs["breaker"])
			steps = append(steps, step{r.Level, r.Attrs["from"].(string), r.Attrs["to"].(string)})
		}
		assert.Equal(t, []step{
			{slog.LevelDebug, "closed", "closed"},
			{slog.LevelWarn, "closed", "open"},
			{slog.LevelInfo, "open", "half-open"},
			{slog.LevelInfo, "half-open", "closed"},
			{slog.LevelWarn, "closed", "forced-open"},
		}, steps)
		// Why it tripped: the counts at the change, and the error.
		trip := got[1].Attrs
		assert.Equal(t, int64(2), trip["consecutive_failures"])
		assert.Equal(t, int64(2), trip["failures"])
		assert.Equal(t, int64(2), trip["calls"])
		assert.Equal(t, 1.0, trip["failure_rate"])
		assert.Equal(t, 0.0, trip["slow_call_rate"])
		assert.Equal(t, int64(0), trip["slow_calls"])
		assert.ErrorIs(t, trip["error"].(error), errObsFlaky)
	})
}
