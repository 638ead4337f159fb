package main

import (
	"context"
	"sync"

	"github.com/resilient-go/resilient"
	"github.com/resilient-go/resilient/httpx"
)

// -budget swaps the httpx client's retry budget per host, to compare the
// kinds on one scenario: a budget that lets the retries a brownout needs
// through may also let an outage's through, and one that stops an
// outage's may starve a brownout's. Each host gets a budget of its own, as
// httpx's default gives each host its adaptive one.

// The -budget choices.
const (
	budgetAdaptive = "adaptive" // httpx's default: resilient.NewAdaptiveBudget()
	budgetRatio    = "ratio"    // Finagle's: 20% of requests + 10 retries/s
	budgetGRPC     = "grpc"     // gRPC's retry throttling: 10 tokens, ratio 0.1
	budgetNone     = "none"     // no budget: every attempt allowed
)

func budgetNames() []string { return []string{budgetAdaptive, budgetRatio, budgetGRPC, budgetNone} }

// budgetDescriptions say what each budget is, for the client's description.
var budgetDescriptions = map[string]string{
	budgetAdaptive: "an adaptive retry budget per host (httpx's default: half a retry earned per call that succeeds at once, one spent per retry that fails)",
	budgetRatio:    "a fixed-ratio retry budget per host instead of the adaptive one (-budget ratio: 20% of requests + 10 retries/s, Finagle's)",
	budgetGRPC:     "gRPC's retry throttling per host instead of the adaptive budget (-budget grpc: 10 tokens, -1 per failed attempt, +0.1 per success, retries while above 5)",
	budgetNone:     "no retry budget (-budget none)",
}

// budgetOptions gives each host a retry budget of kind: nothing to add for
// the default, adaptive.
func budgetOptions(kind string) []httpx.Option {
	var budget func() resilient.Option
	switch kind {
	case budgetRatio:
		budget = func() resilient.Option {
			// Cannot fail: the options are valid.
			return resilient.WithBudget(resilient.MustNewBudget(resilient.WithRetryRatio(0.2), resilient.WithMinRetryRate(10)))
		}
	case budgetGRPC:
		budget = func() resilient.Option { return resilient.WithPolicy(newGRPCThrottle(10, 0.1)) }
	case budgetNone:
		return []httpx.Option{httpx.WithoutHostBudget()}
	default:
		return nil
	}
	return []httpx.Option{
		httpx.WithoutHostBudget(),
		httpx.WithHostPolicies(func(string) []resilient.Option { return []resilient.Option{budget()} }),
	}
}

// grpcThrottle is gRPC's retry throttling (gRFC A6, "Retry Throttling"),
// written as a policy of the library so that the demo can put it in the
// adaptive budget's place: a bucket of maxTokens, starting full; every
// attempt that fails with a retryable error costs one token, every attempt
// that succeeds earns ratio; a retry is allowed while the bucket holds
// more than half of maxTokens. It never refuses a first attempt. It is
// safe for concurrent use.
//
// Decision: a mutex, not atomics: it serves a comparison, and its lock is
// taken once per attempt, which the demo's load does not notice.
type grpcThrottle struct {
	mu                sync.Mutex
	tokens, maxTokens float64
	ratio             float64
}

func newGRPCThrottle(maxTokens, ratio float64) *grpcThrottle {
	return &grpcThrottle{tokens: maxTokens, maxTokens: maxTokens, ratio: ratio}
}

// Admit admits every attempt: the throttle decides retries (AllowRetry).
func (g *grpcThrottle) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, nil
}

// Done counts an attempt's outcome: a success earns ratio, a retryable
// failure costs a token; a permanent failure, an attempt that never ran or
// a hedge that lost (Fail, Ignore) count neither way.
func (g *grpcThrottle) Done(_ resilient.Permit, r resilient.Report) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch r.Outcome {
	case resilient.Success:
		g.tokens = min(g.tokens+g.ratio, g.maxTokens)
	case resilient.Retry:
		g.tokens = max(g.tokens-1, 0)
	}
}

// AllowRetry allows a retry while more than half the tokens are left; it
// refuses with resilient.ErrBudgetExhausted, as a budget does.
func (g *grpcThrottle) AllowRetry(int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tokens > g.maxTokens/2 {
		return nil
	}
	return resilient.ErrBudgetExhausted
}
