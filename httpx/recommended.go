package httpx

import (
	"time"

	"github.com/resilient-go/resilient"
)

// The recommended host breaker (see [Recommended]).
const (
	// recommendedFailureRate: open when three attempts in four fail. A
	// brownout that fails 30% of the attempts must never trip it: retries
	// rescue nearly every call then (1 - 0.3^4 = 99.2% with 4 attempts),
	// and the budget keeps them cheap. Over 50 such attempts, 38 failures
	// have a chance of 3e-11; half of them (25) would come once in 400
	// judgements, and a breaker judges at every failure: every 14s at 100
	// attempts a second. An outage reaches 75% after 38 failed attempts.
	recommendedFailureRate = 0.75
	// recommendedWindow: the last 50 attempts, judged from 20. A count
	// window sees an outage after the same number of attempts at any
	// rate (0.4s at 100 requests a second), where a time window long
	// enough for a quiet host's attempts would take most of its length to
	// fill with a busy host's failures.
	recommendedWindow   = 50
	recommendedMinCalls = 20
	// recommendedOpen: probe after 1s, every 1s, with no growth: a
	// recovered upstream is noticed within a second, and a dead one costs
	// one attempt a second per host.
	recommendedOpen = time.Second
	// recommendedIdle: a breaker unused for 5 minutes is forgotten; an
	// open one is kept (see resilient.Breakers).
	recommendedIdle = 5 * time.Minute
)

// Recommended is the setup we recommend for a service's client of its
// upstreams: the default policy (4 attempts, exponential backoff with full
// jitter from 100ms up to 10s, Retry-After honoured up to 30s, an adaptive
// retry budget per host) and a circuit breaker per host ([WithHostBreakers])
// that opens when 75% of the last 50 attempts failed (judged from 20
// attempts on) and lets one probe through after 1s, every 1s. Numbers and
// reasons are in the README's "Recommended production setup".
//
//	client := httpx.NewClient(httpx.Recommended(),
//		httpx.WithExecutorOptions(resilient.WithName("users-api"), resilient.WithHooks(metrics.Hooks())))
//
// It keeps a request's deadline as the only bound on its attempts (no
// per-attempt timeout) and does not hedge: both depend on the upstream's
// latency, and both cut answers that were merely slow. Set a deadline on
// every request's context. Add [WithAttemptTimeout] or hedging
// ([WithExecutorOptions] with [resilient.WithHedge]) where the upstream's
// latency is known.
//
// opts are added to the breakers' options: a name ([resilient.WithBreakerName]
// names the set), a state listener, or a change of any number above. An
// invalid one is an error of [NewTransport] that names it. Each Transport
// built with the returned option gets breakers of its own, for up to
// [DefaultMaxHosts] hosts, forgetting one unused for 5 minutes. A later
// [WithHostBreakers] replaces them; with [WithExecutor], the executor's
// policy replaces the rest of the default policy, per-host budgets included.
func Recommended(opts ...resilient.BreakerOption) Option {
	bopts := append([]resilient.BreakerOption{
		resilient.WithFailureRate(recommendedFailureRate),
		resilient.WithCountWindow(recommendedWindow),
		resilient.WithMinCalls(recommendedMinCalls),
		resilient.WithOpenDuration(recommendedOpen),
	}, opts...)
	return optionFunc(func(c *config) error {
		set, err := resilient.NewBreakers(DefaultMaxHosts, recommendedIdle, bopts...)
		if err != nil {
			return join(within("Recommended", err))
		}
		c.breakers = set
		return nil
	})
}
