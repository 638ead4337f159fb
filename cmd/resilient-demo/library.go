package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// The two columns of the library. httpx must stay httpx.NewClient() with
// no options, whatever its defaults become, so that the demo measures what
// a user gets; tuned must stay the README's recommended setup
// (httpx.Recommended), number for number. Options the demo needs of its
// own (hooks and a name for -metrics, the breakers' name and state
// listener) are added with the options that keep every default:
// httpx.WithExecutorOptions and Recommended's breaker options, never
// httpx.WithExecutor, which would replace the policy. A flag that departs
// from them (-budget, -hedge, -limit, -open) says so in the client's
// description and in the output.

// recommendedOpen is how long httpx.Recommended's breakers stay open before
// a probe (the README's "Recommended production setup");
// TestTunedProbesAfterRecommendedOpen checks the two agree.
const recommendedOpen = time.Second

// libraryOptions returns the options every library client starts from: its base,
// and with -metrics its name and hooks (and in tests a seeded jitter).
func libraryOptions(cfg *config, name string, base http.RoundTripper) []httpx.Option {
	opts := []httpx.Option{httpx.WithBase(base)}
	var ex []resilient.Option
	if cfg.metrics != nil {
		ex = append(ex, resilient.WithName(name), resilient.WithHooks(cfg.metrics.Hooks()))
	}
	if cfg.random != nil {
		ex = append(ex, resilient.WithRandom(cfg.random))
	}
	if len(ex) > 0 {
		opts = append(opts, httpx.WithExecutorOptions(ex...))
	}
	return opts
}

// httpxDefaults is httpx.NewClient() with its defaults: 4 attempts,
// exponential backoff with full jitter, Retry-After honoured, POSTs retried
// only with an Idempotency-Key (or when never sent), an adaptive retry
// budget per host. -budget swaps that budget for another kind (see
// budget.go) and keeps the rest.
func httpxDefaults(cfg *config, base http.RoundTripper, _ *recorder) (doFunc, error) {
	opts := append(libraryOptions(cfg, "httpx", base), budgetOptions(cfg.budget)...)
	return newClient(opts)
}

// tuned is the README's recommended setup, httpx.Recommended(): the
// defaults and a circuit breaker per host (opens when 75% of the last 50
// attempts failed, judged from 20 on; probes after 1s, every 1s). Its
// breakers are named "tuned" and report their transitions to rec (and to
// -metrics). No per-attempt timeout and no hedging, as recommended: the
// caller's deadline bounds every request.
//
// -open changes the breakers' open duration; -hedge adds hedging (a
// second attempt of a request safe to repeat that has not answered after
// the delay; over HTTP/1.1 the attempt that loses is cancelled in flight,
// which closes its connection); -limit adds an adaptive concurrency
// limiter per host.
func tuned(cfg *config, base http.RoundTripper, rec *recorder) (doFunc, error) {
	bopts := []resilient.BreakerOption{
		resilient.WithBreakerName("tuned"),
		resilient.WithStateListener(func(t resilient.Transition) {
			if t.From != t.To { // the first event tells the initial state
				rec.transition(t.From.String(), t.To.String())
			}
		}),
	}
	if cfg.metrics != nil {
		bopts = append(bopts, resilient.WithStateListener(cfg.metrics.OnTransition))
	}
	if cfg.openFor > 0 {
		bopts = append(bopts, resilient.WithOpenDuration(cfg.openFor))
	}
	opts := append(libraryOptions(cfg, "tuned", base), httpx.Recommended(bopts...))
	if cfg.hedgeWait > 0 {
		opts = append(opts, httpx.WithExecutorOptions(resilient.WithHedge(cfg.hedgeWait, 2)))
	}
	opts = append(opts, limitOptions(cfg.limit)...)
	return newClient(opts)
}

// newClient builds an httpx client and reports an invalid option now, not
// at the first request.
func newClient(opts []httpx.Option) (doFunc, error) {
	tr, err := httpx.NewTransport(opts...)
	if err != nil {
		return nil, err
	}
	return (&http.Client{Transport: tr}).Do, nil
}

// The -limit choices.
const (
	limitNone      = "none"
	limitGradient2 = "gradient2"
	limitAIMD      = "aimd"
)

func limitNames() []string { return []string{limitNone, limitGradient2, limitAIMD} }

// limitOptions gives each host a concurrency limiter of kind (none: no
// option), with its defaults: a limit that starts at 20, within [1, 1000],
// and refuses at once an attempt over it. AIMD's defaults react to
// failures only (no latency threshold).
func limitOptions(kind string) []httpx.Option {
	var algo resilient.ConcurrencyOption
	switch kind {
	case limitGradient2:
		algo = resilient.WithGradient2(resilient.Gradient2{})
	case limitAIMD:
		algo = resilient.WithAIMD(resilient.AIMD{})
	default:
		return nil
	}
	return []httpx.Option{httpx.WithHostPolicies(func(string) []resilient.Option {
		// Cannot fail: the options are the defaults.
		return []resilient.Option{resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter(algo))}
	})}
}

// describeTuned says what the tuned client is, flags included.
func describeTuned(cfg *config) string {
	open := recommendedOpen
	if cfg.openFor > 0 {
		open = cfg.openFor
	}
	d := fmt.Sprintf("httpx.Recommended(): the defaults and a breaker per host (opens at 75%% failures of the last 50 attempts, from 20; probes after %v)", open)
	if cfg.openFor > 0 && cfg.openFor != recommendedOpen {
		d += " (-open)"
	}
	if cfg.hedgeWait > 0 {
		d += fmt.Sprintf("; hedging after %v (-hedge)", cfg.hedgeWait)
	} else {
		d += "; no hedging"
	}
	if cfg.limit != limitNone {
		d += fmt.Sprintf("; an adaptive concurrency limiter per host (%s, -limit)", limitLabel(cfg.limit))
	}
	return d
}

func limitLabel(kind string) string {
	if kind == limitAIMD {
		return "AIMD"
	}
	return "Gradient2"
}

// recommended reports whether the tuned client is the recommended setup as
// it is, no flag changing it.
func (c *config) recommended() bool {
	return (c.openFor == 0 || c.openFor == recommendedOpen) && c.hedgeWait == 0 && c.limit == limitNone
}

// libraryOutcome names the library's own refusals; "" for other errors.
func libraryOutcome(err error) string {
	switch {
	case errors.Is(err, resilient.ErrOpen):
		return "breaker open"
	case errors.Is(err, resilient.ErrBudgetExhausted):
		return "budget empty"
	case errors.Is(err, resilient.ErrConcurrencyLimit):
		return "limit reached"
	}
	return ""
}

// isRejection reports whether an outcome is the client refusing a request
// itself, without sending it.
func isRejection(outcome string) bool {
	return outcome == "breaker open" || outcome == "budget empty" || outcome == "limit reached"
}
