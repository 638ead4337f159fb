package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
)

// Defaults of the fleet components.
const (
	// DefaultPrefix starts every key: "resilient:{name}:state" and so on.
	DefaultPrefix = "resilient"
	// DefaultTimeout bounds each Redis call.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultSyncInterval is how often a replica flushes its counts and
	// reads the shared state: the staleness bound.
	DefaultSyncInterval = 100 * time.Millisecond
	// DefaultKeyTTL is how long keys live after their last use.
	DefaultKeyTTL = time.Hour
	// DefaultWindow and DefaultWindowBuckets are the shared breaker's
	// sliding window: the last minute, in 10 buckets.
	DefaultWindow        = time.Minute
	DefaultWindowBuckets = 10
	// DefaultProbeTTL is how long a half-open probe permit holds its slot
	// if its result is never reported.
	DefaultProbeTTL = 30 * time.Second
	// DefaultDegradeAfter is how many Redis calls in a row must fail before
	// a component falls back to local state.
	DefaultDegradeAfter = 3
)

// maxCause bounds the length of a cause written to Redis, in bytes.
const maxCause = 256

// Option configures a [Breaker], a [Budget] or a [Store]. Options that do
// not concern a component are accepted and ignored by it, so one option
// list can serve a breaker and a budget of the same upstream; each option
// says what it configures. An invalid option is an error that names it,
// when the component is built.
type Option func(*config) error

type config struct {
	prefix   string
	timeout  time.Duration
	interval time.Duration
	ttl      time.Duration
	onEvent  func(Event)
	// degradeAfter is how many failed Redis calls in a row degrade.
	degradeAfter int

	// Breaker.
	failureRate float64
	minCalls    int
	window      time.Duration
	buckets     int
	openDur     time.Duration
	openMax     time.Duration
	probes      int
	successes   int
	probeTTL    time.Duration
	local       []resilient.BreakerOption

	// Budget.
	budget []resilient.BudgetOption
	ratio  float64
	burst  int
	floor  float64
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		prefix:       DefaultPrefix,
		timeout:      DefaultTimeout,
		interval:     DefaultSyncInterval,
		ttl:          DefaultKeyTTL,
		degradeAfter: DefaultDegradeAfter,
		failureRate:  resilient.DefaultFailureRate,
		minCalls:     resilient.DefaultMinCalls,
		window:       DefaultWindow,
		buckets:      DefaultWindowBuckets,
		openDur:      resilient.DefaultOpenDuration,
		probes:       resilient.DefaultHalfOpenProbes,
		probeTTL:     DefaultProbeTTL,
		ratio:        resilient.DefaultRetryRatio,
		burst:        resilient.DefaultRetryBurst,
		floor:        resilient.DefaultMinRetryRate,
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("resilient: redis: nil option")
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.successes == 0 {
		c.successes = c.probes
	}
	if c.openMax > 0 && c.openMax < c.openDur {
		return nil, fmt.Errorf("resilient: WithOpenBackoff: max must be >= the open duration (%v), got %v", c.openDur, c.openMax)
	}
	if longest := max(c.window, c.openDur, c.openMax, c.probeTTL, c.interval); c.ttl < longest {
		return nil, fmt.Errorf("resilient: WithKeyTTL: d must be at least the window, open duration, probe TTL and sync interval (%v), got %v", longest, c.ttl)
	}
	return c, nil
}

// key is prefix:{name}:suffix. The braces make name a Redis Cluster hash
// tag, so a component's keys live in one slot.
func (c *config) key(name, suffix string) string {
	return c.prefix + ":{" + name + "}:" + suffix
}

// WithPrefix sets the first part of every key (see [DefaultPrefix]), to
// keep several programs or environments apart on one Redis. It must not be
// empty nor contain '{' or '}'.
func WithPrefix(p string) Option {
	return func(c *config) error {
		if p == "" || strings.ContainsAny(p, "{}") {
			return fmt.Errorf("resilient: WithPrefix: prefix must be non-empty and free of braces, got %q", p)
		}
		c.prefix = p
		return nil
	}
}

// WithTimeout bounds each Redis call: d > 0, default [DefaultTimeout]
// (50ms). A call that takes longer counts as a Redis failure: what it was
// for is decided on local state, and [WithDegradeAfter] failures in a row
// degrade the component; an answer that takes half of d or more does not
// recover a degraded one. The bound holds whatever the server does, but
// only for clients built with ContextTimeoutEnabled (see [NewBreaker]).
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("resilient: WithTimeout: d must be > 0, got %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithSyncInterval sets how often a replica flushes its batched counts to
// Redis and reads the shared state back: d >= 1ms, default
// [DefaultSyncInterval] (100ms). It bounds how stale a replica's view of
// the fleet can be, and is one round trip per interval per breaker or
// budget in use.
func WithSyncInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("resilient: WithSyncInterval: d must be >= 1ms, got %v", d)
		}
		c.interval = d
		return nil
	}
}

// WithKeyTTL sets how long keys live after their last use, so that the
// keys of breakers and budgets nobody uses any more go away: every use
// renews it. d must be at least the window, the open duration, the probe
// TTL and the sync interval. Default [DefaultKeyTTL] (1h).
func WithKeyTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("resilient: WithKeyTTL: d must be >= 1ms, got %v", d)
		}
		c.ttl = d
		return nil
	}
}

// WithEventHook sets a function told when a component loses Redis (and
// falls back to local state) and when it gets it back (see
// [WithDegradeAfter] for when that is). It is called once per change, not
// per failed call, one call at a time and in the order of the changes, on
// a goroutine that noticed one (a caller's, or the component's own): it
// should be quick, and must not block, since Close waits for a hook under
// way on the component's goroutine. The component's Degraded reports a
// change before the hook is told of it. nil is refused. Default: none.
func WithEventHook(fn func(Event)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("resilient: WithEventHook: nil hook")
		}
		c.onEvent = fn
		return nil
	}
}

// WithDegradeAfter sets how many Redis calls in a row must fail (an error
// or a timeout) before a component falls back to local state and reports
// [EventDegraded]: n >= 1, default [DefaultDegradeAfter] (3). A degraded
// component recovers ([EventRecovered]) on the first call that succeeds in
// less than half the timeout. One slow call on a busy machine then neither
// degrades a component nor, once degraded, brings it back. Until it is
// degraded, a call whose Redis call failed is still decided on local
// state.
func WithDegradeAfter(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("resilient: WithDegradeAfter: n must be >= 1, got %d", n)
		}
		c.degradeAfter = n
		return nil
	}
}

// WithFailureRate sets the failure rate over the shared window at which
// the fleet's breaker opens: rate in (0, 1], default
// [resilient.DefaultFailureRate]. Breaker only.
func WithFailureRate(rate float64) Option {
	return func(c *config) error {
		if !(rate > 0 && rate <= 1) {
			return fmt.Errorf("resilient: WithFailureRate: rate must be in (0, 1], got %v", rate)
		}
		c.failureRate = rate
		return nil
	}
}

// WithMinCalls sets how many calls, fleet-wide, the shared window must hold
// before its rate is judged: n >= 1, default [resilient.DefaultMinCalls].
// Breaker only.
func WithMinCalls(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("resilient: WithMinCalls: n must be >= 1, got %d", n)
		}
		c.minCalls = n
		return nil
	}
}

// WithWindow sets the shared sliding window: the calls of the last d, in
// buckets of d/buckets each. d/buckets must be at least a millisecond and
// buckets in [1, [resilient.MaxTimeBuckets]]. Default [DefaultWindow] in
// [DefaultWindowBuckets] buckets. Breaker only.
func WithWindow(d time.Duration, buckets int) Option {
	return func(c *config) error {
		switch {
		case buckets < 1 || buckets > resilient.MaxTimeBuckets:
			return fmt.Errorf("resilient: WithWindow: buckets must be in [1, %d], got %d", resilient.MaxTimeBuckets, buckets)
		case d <= 0 || d/time.Duration(buckets) < time.Millisecond:
			return fmt.Errorf("resilient: WithWindow: a bucket (d/buckets) must be at least 1ms, got %v/%d", d, buckets)
		}
		c.window, c.buckets = d, buckets
		return nil
	}
}

// WithOpenDuration sets how long the fleet's breaker stays open before it
// lets probes through: d >= 1ms, default [resilient.DefaultOpenDuration].
// Breaker only.
func WithOpenDuration(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("resilient: WithOpenDuration: d must be >= 1ms, got %v", d)
		}
		c.openDur = d
		return nil
	}
}

// WithOpenBackoff doubles the open duration with each failed probe round,
// up to max, which must be >= the open duration. A successful round resets
// it. Default: no growth. Breaker only.
func WithOpenBackoff(max time.Duration) Option {
	return func(c *config) error {
		if max <= 0 {
			return fmt.Errorf("resilient: WithOpenBackoff: max must be > 0, got %v", max)
		}
		c.openMax = max
		return nil
	}
}

// WithHalfOpenProbes sets how many probes the whole fleet may have in
// flight at once in half-open: n in [1, [resilient.MaxProbes]], default
// [resilient.DefaultHalfOpenProbes]. Breaker only.
func WithHalfOpenProbes(n int) Option {
	return func(c *config) error {
		if n < 1 || n > resilient.MaxProbes {
			return fmt.Errorf("resilient: WithHalfOpenProbes: n must be in [1, %d], got %d", resilient.MaxProbes, n)
		}
		c.probes = n
		return nil
	}
}

// WithHalfOpenSuccesses sets how many successful probes, fleet-wide, close
// the breaker: m in [1, [resilient.MaxProbes]], default: the number of
// probes. Breaker only.
func WithHalfOpenSuccesses(m int) Option {
	return func(c *config) error {
		if m < 1 || m > resilient.MaxProbes {
			return fmt.Errorf("resilient: WithHalfOpenSuccesses: m must be in [1, %d], got %d", resilient.MaxProbes, m)
		}
		c.successes = m
		return nil
	}
}

// WithProbeTTL sets how long a probe permit holds its fleet-wide slot when
// its result is never reported (its replica died or hung): d >= 1ms,
// default [DefaultProbeTTL]. It is also the local breaker's half-open max
// wait ([resilient.WithHalfOpenMaxWait]): no slot outlives its holder by
// more. Breaker only.
func WithProbeTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Millisecond {
			return fmt.Errorf("resilient: WithProbeTTL: d must be >= 1ms, got %v", d)
		}
		c.probeTTL = d
		return nil
	}
}

// WithLocalOptions adds options to the replica's local
// [resilient.Breaker], such as [resilient.WithStateListener] to watch it
// (it mirrors the fleet's state) or [resilient.WithConsecutiveFailures].
// The local breaker is built with this package's window, rate, minimum
// calls, open duration and probes, then these options, which may change
// how it judges this replica's own calls (a smaller
// [resilient.WithMinCalls], say). Listeners run while the fleet's state is
// being mirrored and must not call the fleet [Breaker]. Breaker only.
func WithLocalOptions(opts ...resilient.BreakerOption) Option {
	return func(c *config) error {
		c.local = append(c.local, opts...)
		return nil
	}
}

// WithRetryRatio sets the share of requests, fleet-wide, that may be
// retried: r in (0, 1], default [resilient.DefaultRetryRatio]. Budget
// only.
func WithRetryRatio(r float64) Option {
	return func(c *config) error {
		if !(r > 0 && r <= 1) {
			return fmt.Errorf("resilient: WithRetryRatio: r must be in (0, 1], got %v", r)
		}
		c.ratio = r
		c.budget = append(c.budget, resilient.WithRetryRatio(r))
		return nil
	}
}

// WithRetryBurst sets how many retries the shared budget holds at most,
// and when first used: n >= 1, default [resilient.DefaultRetryBurst].
// Budget only.
func WithRetryBurst(n int) Option {
	return func(c *config) error {
		if n < 1 || n > math.MaxInt32 {
			return fmt.Errorf("resilient: WithRetryBurst: n must be in [1, %d], got %d", math.MaxInt32, n)
		}
		c.burst = n
		c.budget = append(c.budget, resilient.WithRetryBurst(n))
		return nil
	}
}

// WithMinRetryRate sets the fleet-wide floor of retries per second allowed
// when the ratio's share is spent: >= 0 and finite, 0 removes it; default
// [resilient.DefaultMinRetryRate]. Budget only.
func WithMinRetryRate(perSecond float64) Option {
	return func(c *config) error {
		if !(perSecond >= 0) || math.IsInf(perSecond, 1) {
			return fmt.Errorf("resilient: WithMinRetryRate: perSecond must be >= 0 and finite, got %v", perSecond)
		}
		c.floor = perSecond
		c.budget = append(c.budget, resilient.WithMinRetryRate(perSecond))
		return nil
	}
}

// checkClient refuses a nil client, and a client whose calls a context
// deadline cannot bound: go-redis ignores context deadlines on its sockets
// unless ContextTimeoutEnabled is set, and a slow Redis would then stall
// callers for its ReadTimeout (3s by default) instead of [WithTimeout].
func checkClient(what string, rdb goredis.UniversalClient) error {
	if rdb == nil {
		return fmt.Errorf("resilient: %s: nil client", what)
	}
	var enabled bool
	switch c := rdb.(type) {
	case *goredis.Client:
		enabled = c.Options().ContextTimeoutEnabled
	case *goredis.ClusterClient:
		enabled = c.Options().ContextTimeoutEnabled
	default:
		return nil // Ring and others: see the documentation.
	}
	if !enabled {
		return fmt.Errorf("resilient: %s: the client must be built with ContextTimeoutEnabled: true, so that WithTimeout bounds every call", what)
	}
	return nil
}

// call runs fn within d and, when h is not nil, tells h how the call went
// (see health). A failure caused by the caller's own context (cancelled,
// or with a deadline shorter than d) is not Redis's, and is not told.
func call[T any](ctx context.Context, h *health, op string, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := fn(cctx)
	if h != nil && (err == nil || ctx.Err() == nil) {
		h.observe(op, time.Since(start), err)
	}
	return v, err
}

func truncate(s string) string {
	if len(s) <= maxCause {
		return s
	}
	return s[:maxCause]
}
