package resilient_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/resilient-go/resilient"
)

// TestLimitsSeenByMetricsAndSlog: refusals by a rate limit and by a
// concurrency limiter are counted and logged under their policy's name, as
// other policies' are.
func TestLimitsSeenByMetricsAndSlog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		metrics := resilient.NewTextMetrics()
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, nil))
		hooks := []resilient.Option{resilient.WithHooks(metrics.Hooks()), resilient.WithHooks(resilient.SlogHooks(logger))}

		rate := resilient.MustNew(append(hooks, resilient.WithName("rated"),
			resilient.WithRateLimit(resilient.MustNewRateLimiter(1), resilient.RateLimitNoWait()))...)
		_, err := resilient.Do(t.Context(), protectSucceeding, rate)
		require.NoError(t, err)
		_, err = resilient.Do(t.Context(), protectSucceeding, rate)
		require.ErrorIs(t, err, resilient.ErrRateLimited)

		lim := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(1, 1))
		limited := resilient.MustNew(append(hooks, resilient.WithName("limited"), resilient.WithConcurrencyLimit(lim))...)
		p, err := lim.Admit(t.Context(), 1)
		require.NoError(t, err)
		_, err = resilient.Do(t.Context(), protectSucceeding, limited)
		require.ErrorIs(t, err, resilient.ErrConcurrencyLimit)
		lim.Done(p, resilient.Report{Attempt: 1, Outcome: resilient.Success})

		var out strings.Builder
		_, err = metrics.WriteTo(&out)
		require.NoError(t, err)
		assert.Contains(t, out.String(), `resilient_rejections_total{executor="rated",policy="ratelimit"} 1`)
		assert.Contains(t, out.String(), `resilient_rejections_total{executor="limited",policy="concurrency"} 1`)
		assert.Contains(t, logs.String(), "policy=ratelimit")
		assert.Contains(t, logs.String(), "policy=concurrency")
	})
}

// TestLimitsComposed: a breaker, an adaptive budget, a rate limit and a
// concurrency limiter on one executor: the success path allocates nothing;
// each refusal is named for the policy that made it; and no slot or token
// is held after the calls.
func TestLimitsComposed(t *testing.T) {
	defer goleak.VerifyNone(t)
	synctest.Test(t, func(t *testing.T) {
		br := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(3))
		budget := resilient.MustNewAdaptiveBudget(resilient.WithRetryBurst(1), resilient.WithMinRetryRate(0))
		rl := resilient.MustNewRateLimiter(100, resilient.WithBurst(100))
		lim := resilient.MustNewConcurrencyLimiter(resilient.WithLimitBounds(2, 2))
		ex := resilient.MustNew(
			resilient.WithAttempts(4),
			resilient.WithBackoff(resilient.Constant(10*time.Millisecond)),
			resilient.WithBreaker(br),
			resilient.WithBudget(budget),
			resilient.WithRateLimit(rl),
			resilient.WithConcurrencyLimit(lim),
		)
		ctx := t.Context()
		assert.Zero(t, testing.AllocsPerRun(50, func() { _, _ = resilient.Do(ctx, protectSucceeding, ex) }))

		// The budget holds one retry: the call's second retry is refused.
		_, err := resilient.Do(ctx, protectFailing, ex)
		assert.Equal(t, resilient.PolicyBudget, resilient.RejectedBy(err))
		// One more failure opens the breaker (three in a row).
		_, err = resilient.Do(ctx, protectFailing, ex)
		assert.Equal(t, resilient.PolicyBreaker, resilient.RejectedBy(err))
		_, err = resilient.Do(ctx, protectSucceeding, ex)
		assert.ErrorIs(t, err, resilient.ErrOpen)
		assert.Equal(t, 0, lim.InFlight(), "a call the breaker refused took no slot")

		br.Reset()
		// Two calls hold both slots; a third is refused by the limiter.
		release := make(chan struct{})
		hold := func(context.Context) (int, error) { <-release; return 1, nil }
		go func() { _, _ = resilient.Do(ctx, hold, ex) }()
		go func() { _, _ = resilient.Do(ctx, hold, ex) }()
		synctest.Wait()
		_, err = resilient.Do(ctx, protectSucceeding, ex)
		assert.Equal(t, resilient.PolicyConcurrency, resilient.RejectedBy(err))
		close(release)
		synctest.Wait()
		assert.Equal(t, 0, lim.InFlight())

		// Rate: the burst spent, a call whose deadline comes before the next
		// token is refused at once. The next token is due within one
		// interval (10ms), at a phase the jittered waits above chose: only a
		// deadline shorter than any such wait (1ns: the bubble's clock does
		// not move meanwhile) comes before it every time.
		for rl.Allow() {
		}
		short, cancel := context.WithTimeout(ctx, time.Nanosecond)
		defer cancel()
		_, err = resilient.Do(short, protectSucceeding, ex)
		assert.Equal(t, resilient.PolicyRateLimit, resilient.RejectedBy(err), "%v", err)
		assert.Equal(t, 0, lim.InFlight(), "the rate limit, before the limiter, refused the call before it took a slot")
	})
}
