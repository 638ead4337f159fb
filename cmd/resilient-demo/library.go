package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// The two columns of the library. httpx must stay httpx.NewClient() with
// no options, whatever its defaults become, so that the demo measures what
// a user gets; tuned must stay the README's recommended setup, number for
// number. The descriptions are in clients.go.

// httpxDefaults is the library's client with its defaults: 4 attempts,
// exponential backoff with full jitter, Retry-After honoured, POSTs
// retried only with an Idempotency-Key (or when never sent). With -metrics
// it needs hooks, which today only an executor of its own can carry: that
// executor restates httpx's default policy, and must follow it (or give
// way to an httpx option that adds hooks to the defaults).
func httpxDefaults(cfg *config, base http.RoundTripper, _ *recorder) (doFunc, error) {
	if cfg.metrics == nil {
		return httpx.NewClient(httpx.WithBase(base)).Do, nil
	}
	// httpx's default policy, named and metered for -metrics.
	ex, err := resilient.New(
		resilient.WithName("httpx"),
		resilient.WithAttempts(httpx.DefaultAttempts),
		resilient.WithBackoff(resilient.Exponential(httpx.DefaultBaseDelay, httpx.DefaultMaxBackoff)),
		resilient.WithMaxDelay(httpx.DefaultMaxRetryAfter),
		resilient.WithHooks(cfg.metrics.Hooks()),
	)
	if err != nil {
		return nil, err
	}
	return httpx.NewClient(httpx.WithBase(base), httpx.WithExecutor(ex)).Do, nil
}

// tuned is the library's client as the README recommends for a shared
// upstream: a breaker that opens at 75% failures over the last 50 attempts
// (at least 20) and probes after -open; a retry budget of 30% of requests
// (hedges count as retries); a second attempt (a hedge) for a request safe
// to repeat that has not answered after -hedge. httpx never hedges a POST
// without an Idempotency-Key.
//
// Decision: the hedge delay is fixed, just above the slowest answers the
// upstream gives while it is merely slow (latency spikes of up to 400ms in
// the brownout), so that only requests that are stuck (headers held back
// for 1.5s) are hedged. Over HTTP/1.1 a hedge that wins costs a connection:
// the attempt it beat is cancelled in flight, which closes its connection.
// A 100ms delay hedged every latency spike (about 9% of the brownout's
// requests) and opened five times the plain client's connections; an
// adaptive delay (the p95 or p99 of recent attempts) follows the healthy
// upstream's 2ms answers down and hedges on every small hiccup, even when
// nothing is wrong.
//
// Decision: no per-attempt timeout. The caller's deadline (-timeout, 2s)
// bounds every request, and hedging cuts the tail of those safe to repeat.
// An attempt timeout shorter than the upstream's slowest good answer (1.5s)
// only turns slow successes of POSTs without a key, which may not be sent
// again, into failures, and closes a connection each time.
func tuned(cfg *config, base http.RoundTripper, rec *recorder) (doFunc, error) {
	bopts := []resilient.BreakerOption{
		resilient.WithBreakerName("tuned"),
		resilient.WithFailureRate(0.75),
		resilient.WithCountWindow(50),
		resilient.WithMinCalls(20),
		resilient.WithOpenDuration(cfg.openFor),
		resilient.WithStateListener(func(t resilient.Transition) {
			if t.From != t.To { // the first event tells the initial state
				rec.transition(t.From.String(), t.To.String())
			}
		}),
	}
	if cfg.metrics != nil {
		bopts = append(bopts, resilient.WithStateListener(cfg.metrics.OnTransition))
	}
	br, err := resilient.NewBreaker(bopts...)
	if err != nil {
		return nil, err
	}
	budget, err := resilient.NewBudget(resilient.WithRetryRatio(0.3), resilient.WithRetryBurst(30))
	if err != nil {
		return nil, err
	}
	opts := []resilient.Option{
		resilient.WithName("tuned"),
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Exponential(50*time.Millisecond, time.Second)),
		resilient.WithMaxDelay(10 * time.Second),
		resilient.WithBreaker(br),
		resilient.WithBudget(budget),
	}
	if cfg.hedgeWait > 0 {
		opts = append(opts, resilient.WithHedge(cfg.hedgeWait, 2))
	}
	if cfg.metrics != nil {
		opts = append(opts, resilient.WithHooks(cfg.metrics.Hooks()))
	}
	ex, err := resilient.New(opts...)
	if err != nil {
		return nil, err
	}
	tr, err := httpx.NewTransport(httpx.WithExecutor(ex), httpx.WithBase(base))
	if err != nil {
		return nil, err
	}
	return (&http.Client{Transport: tr}).Do, nil
}

// libraryOutcome names the library's own refusals; "" for other errors.
func libraryOutcome(err error) string {
	switch {
	case errors.Is(err, resilient.ErrOpen):
		return "breaker open"
	case errors.Is(err, resilient.ErrBudgetExhausted):
		return "budget empty"
	}
	return ""
}

// isRejection reports whether an outcome is the client refusing a request
// itself, without sending it.
func isRejection(outcome string) bool {
	return outcome == "breaker open" || outcome == "budget empty"
}
