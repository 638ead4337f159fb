package resilient

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var err429 = Throttled(errBrBoom)

// TestThrottledIsNotAFailure: an upstream asking for less traffic (an
// error marked Throttled, or one carrying a hint) counts neither way in a
// breaker's window or failure run, through either API.
func TestThrottledIsNotAFailure(t *testing.T) {
	for _, via := range brVias {
		t.Run(via.name, func(t *testing.T) {
			for name, err := range map[string]error{
				"marked":         err429,
				"hinted":         RetryAfter(errBrBoom, time.Second),
				"marked, hinted": Throttled(RetryAfter(errBrBoom, time.Second)),
				"wrapped":        &wrapped{err429},
			} {
				t.Run(name, func(t *testing.T) {
					b := MustNewBreaker(WithConsecutiveFailures(2), WithCountWindow(10), WithMinCalls(10))
					require.True(t, via.call(b, errBrBoom), "a real failure")
					for range 10 {
						require.True(t, via.call(b, err))
					}
					m := b.Metrics()
					assert.Equal(t, StateClosed, m.State)
					assert.Equal(t, 1, m.Calls, "only the real failure is in the window")
					assert.Equal(t, 1, m.ConsecutiveFailures, "throttling neither counts in nor ends a failure run")
					via.call(b, errBrBoom)
					assert.Equal(t, StateOpen, b.State(), "the second real failure in a row opens it")
					b.Reset()
				})
			}
		})
	}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "call: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// TestThrottledProbe: in half-open, a probe answered with a 429 frees its
// slot without closing or reopening the breaker; with WithOpenFromHint a
// hinted one reopens it for the hint.
func TestThrottledProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(time.Second))
		brCall(b, errBrBoom)
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, StateHalfOpen, b.State())
		for _, err := range []error{err429, RetryAfter(errBrBoom, time.Minute)} {
			p, aerr := b.Allow()
			require.NoError(t, aerr)
			b.Record(p, err)
			assert.Equal(t, StateHalfOpen, b.State())
			assert.Zero(t, b.Metrics().Probes, "the slot is free again")
		}
		require.True(t, brCall(b, nil))
		assert.Equal(t, StateClosed, b.State(), "a real success closes it")
		b.Reset()

		hinted := MustNewBreaker(WithConsecutiveFailures(1), WithOpenDuration(time.Second), WithOpenFromHint(time.Hour))
		brCall(hinted, errBrBoom)
		time.Sleep(time.Second)
		synctest.Wait()
		p, err := hinted.Allow()
		require.NoError(t, err)
		hinted.Record(p, err429)
		assert.Equal(t, StateHalfOpen, hinted.State(), "a throttle without a hint has no duration to give")
		p, err = hinted.Allow()
		require.NoError(t, err)
		hinted.Record(p, RetryAfter(err429, 42*time.Second))
		assert.Equal(t, StateOpen, hinted.State())
		assert.Equal(t, time.Now().Add(42*time.Second), hinted.Snapshot().OpenUntil, "open for the hint")
		hinted.Reset()
	})
}

// TestThrottledOpensFromHint: with WithOpenFromHint, hinted errors count as
// failures, and the one that opens the breaker sets the open duration,
// capped.
func TestThrottledOpensFromHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(2), WithOpenFromHint(10*time.Second))
		ex := MustNew(WithBreaker(b), WithAttempts(1))
		for range 2 {
			_, err := Do(t.Context(), func(context.Context) (int, error) {
				return 0, RetryAfter(err429, time.Minute)
			}, ex)
			require.Error(t, err)
		}
		assert.Equal(t, StateOpen, b.State())
		assert.Equal(t, time.Now().Add(10*time.Second), b.Snapshot().OpenUntil, "the hint, capped")
		b.Reset()
	})
}

// TestThrottledIsRetried: the marker changes nothing for the executor: a
// throttled error is retried, its hint honoured, and the caller gets the
// error without the marker.
func TestThrottledIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := MustNewBreaker(WithConsecutiveFailures(1))
		calls := 0
		start := time.Now()
		_, err := Do(t.Context(), script(&calls, Throttled(RetryAfter(errFlaky, 3*time.Second)), err429), WithBreaker(b),
			WithBackoff(Constant(time.Second)), WithJitter(NoJitter), WithAttempts(2))
		assert.Equal(t, 3*time.Second, time.Since(start), "the hint held")
		assert.Equal(t, 2, calls)
		var rerr *Error
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonExhausted, rerr.Reason)
		assert.Same(t, errBrBoom, rerr.Last, "markers removed")
		assert.Equal(t, StateClosed, b.State())
		assert.Zero(t, b.Metrics().Calls)
		assert.Nil(t, Throttled(nil))
	})
}

// TestThrottledFeedsTheThrottle: the adaptive throttle sees a throttled
// answer as the upstream refusing work, even when the executor classified
// it Fail (a 429 to a request that may not be retried).
func TestThrottledFeedsTheThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		th := MustNewThrottle(WithThrottleRandom(func() float64 { return 0.9999999 }))
		for _, o := range []Outcome{Retry, Fail} {
			for range 50 {
				p, err := th.Admit(t.Context(), 1)
				require.NoError(t, err)
				th.Done(p, Report{Attempt: 1, Outcome: o, Err: err429})
			}
		}
		assert.InDelta(t, 100.0/101, th.Probability(), 1e-12, "no accept among 100 requests")
	})
}
