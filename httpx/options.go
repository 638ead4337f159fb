package httpx

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/resilient-go/resilient"
)

// Defaults of the policy used by the zero [Transport], by [NewClient]
// without [WithExecutor], and by [Get] and [Do]. The wait before retry n is
// drawn uniformly (full jitter) from [0, min(DefaultMaxBackoff,
// DefaultBaseDelay·2^(n-1))], and never below the response's Retry-After.
// Each host also has its own adaptive retry budget (see [WithHostPolicies]).
const (
	DefaultAttempts   = 4
	DefaultBaseDelay  = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// MaxRedirects is how many redirects clients made with [NewClient] follow
// before they stop with [ErrTooManyRedirects], as net/http's default does.
const MaxRedirects = 10

// defaultExecutor is the default policy, but for its per-host budgets. It
// is immutable.
var defaultExecutor = resilient.MustNew(
	resilient.WithAttempts(DefaultAttempts),
	resilient.WithBackoff(resilient.Exponential(DefaultBaseDelay, DefaultMaxBackoff)),
	resilient.WithMaxDelay(DefaultMaxRetryAfter),
)

// config is a Transport's configuration, immutable once built but for the
// per-host state in hosts.
type config struct {
	ex             *resilient.Executor // derived from the caller's, once
	once           *resilient.Executor // ex without hedging, for requests not safe to repeat
	base           http.RoundTripper
	attemptTimeout time.Duration
	replayLimit    int64 // see WithReplayLimit
	genKeys        bool
	nonIdempotent  bool
	status         func(*http.Response) resilient.Outcome
	breakers       *resilient.Breakers
	dedup          *dedup
	err            error // an invalid option, for clients made by NewClient

	// Before the build: what the options asked for.
	custom       bool                                   // WithExecutor: no default host budget
	exOpts       []resilient.Option                     // WithExecutorOptions, on top of ex
	noHostBudget bool                                   // WithoutHostBudget
	hostOpts     []func(host string) []resilient.Option // WithHostPolicies
	maxHosts     int                                    // WithMaxHosts

	// hosts holds each host's policy; nil when there is none (then every
	// host uses ex and once).
	hosts *resilient.Keyed[*hostPolicy]
	mu    sync.Mutex // serialises rebuilds of a host's policy (see replaceBreaker)
}

// Option configures a [Transport] (see [NewTransport] and [NewClient]).
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// own are the settings the Transport gives every executor it derives, after
// the caller's: a value check of the caller's is removed (the Transport
// classifies responses itself, see WithStatusClassifier), and the release
// of discarded responses is the Transport's (see DrainLimit).
var own = []resilient.Option{
	resilient.CheckValue[*http.Response](nil),
	resilient.OnDiscard(discard),
}

// optionError is the error of an invalid option of this package (see the
// package doc's Errors): a *resilient.OptionError that names the option
// with the package's name, "httpx.WithMaxHosts".
func optionError(option, format string, args ...any) error {
	return &resilient.OptionError{Option: "httpx." + option, Err: fmt.Errorf(format, args...)}
}

// join returns the one error of errs, or all of them joined.
func join(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// split returns the errors err joins, or err alone.
func split(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// within makes the core's errors for options that option passed on (to
// resilient.New, resilient.NewBreakers) errors of option: one
// *resilient.OptionError for each, wrapping the core's own.
func within(option string, err error) []error {
	var errs []error
	for _, e := range split(err) {
		errs = append(errs, &resilient.OptionError{Option: "httpx." + option, Err: e})
	}
	return errs
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{ex: defaultExecutor, replayLimit: DefaultReplayLimit, maxHosts: DefaultMaxHosts}
	var errs []error // every invalid option is reported, not only the first
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("NewTransport", "nil option"))
		} else if err := o.apply(cfg); err != nil {
			errs = append(errs, split(err)...)
		}
	}
	// The Transport's own executor, derived once from the caller's (or the
	// default one): it keeps every setting of it (attempts, backoff, cap,
	// classifier, policies, hooks), then takes WithExecutorOptions' on top,
	// then the Transport's own. It is built even when another option was
	// invalid, so that an invalid option among WithExecutorOptions' is
	// reported too.
	eopts := make([]resilient.Option, 0, 1+len(cfg.exOpts)+len(own))
	eopts = append(append(append(eopts, cfg.ex), cfg.exOpts...), own...)
	ex, err := resilient.New(eopts...)
	if err != nil {
		errs = append(errs, within("WithExecutorOptions", err)...)
	}
	if errs != nil {
		return nil, join(errs)
	}
	cfg.ex = ex
	// Decision: a request that may not be sent twice is never hedged, so
	// it runs on a copy of the executor without hedging (sharing its
	// breaker and budget) rather than having hedges started and refused,
	// which would cost attempts and budget tokens and count as failures.
	if cfg.once, err = resilient.New(ex, resilient.WithoutHedging()); err != nil {
		return nil, err
	}
	if cfg.hostBudget() || len(cfg.hostOpts) > 0 || cfg.breakers != nil {
		if cfg.hosts, err = resilient.NewKeyed(cfg.maxHosts, cfg.buildHost); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// WithExecutor replaces the retry policy, wholesale: attempts, backoff and
// jitter, the cap on waits and Retry-After hints
// ([resilient.WithMaxDelay]), time limits, classifier, policies (a breaker,
// a budget) and hooks are ex's, and the default policy's per-host retry
// budgets are gone with the rest (add them back, or any per-host policy,
// with [WithHostPolicies]). To keep the default policy and add to it (hooks,
// a name, a breaker, a budget), use [WithExecutorOptions] instead.
//
// The Transport derives its own executor from ex once, when it is built,
// keeping all of ex's settings and shared state but two: a
// [resilient.CheckValue] check (responses are classified by status, see
// [WithStatusClassifier]) and an [resilient.OnDiscard] hook (the Transport
// closes what it discards, see [DrainLimit]). The executor's classifier sees
// every transport error and [*StatusError] that the Transport does not
// already mark permanent.
//
// An executor that hedges ([resilient.WithHedge]) races slow attempts of
// requests that are safe to repeat (see the package doc); the attempts of
// other requests are never hedged.
//
// A [resilient.WithAttemptTimeout] of ex bounds each attempt only until its
// response headers arrive; use this package's [WithAttemptTimeout] to bound
// the reading of the body too. Default: the policy in the package doc. Nil
// is invalid.
func WithExecutor(ex *resilient.Executor) Option {
	return optionFunc(func(c *config) error {
		if ex == nil {
			return optionError("WithExecutor", "nil executor")
		}
		c.ex, c.custom = ex, true
		return nil
	})
}

// WithExecutorOptions adds opts to the Transport's policy and keeps
// everything else of it: NewClient(WithExecutorOptions(resilient.WithHooks(h)))
// is the default policy with hooks, its 4 attempts, its Retry-After cap of
// 30s and its per-host budgets included. opts are applied, in order, on top
// of the default policy or of [WithExecutor]'s executor, wherever they stand
// among the Transport's options; several WithExecutorOptions add up in the
// order given. Like any options after an executor (see [resilient.New]),
// they derive a copy that shares its state (breaker, budget) and add
// policies after its own.
//
// Hooks, a name ([resilient.WithName]), a breaker or budget for every host
// together, a classifier, hedging, a time limit: any [resilient.Option] but
// an [*resilient.Executor], which would replace the policy (that is what
// WithExecutor is for) and is refused, as are nil options. An option
// [resilient.New] refuses is an error of [NewTransport] that names it. A
// [resilient.CheckValue] or [resilient.OnDiscard] among opts has no effect
// (see WithExecutor).
func WithExecutorOptions(opts ...resilient.Option) Option {
	return optionFunc(func(c *config) error {
		if err := noExecutor(opts); err != nil {
			return optionError("WithExecutorOptions", "%w", err)
		}
		c.exOpts = append(c.exOpts[:len(c.exOpts):len(c.exOpts)], opts...)
		return nil
	})
}

// noExecutor refuses nil options and executors among opts, which options
// of the core are given to the Transport's executor.
func noExecutor(opts []resilient.Option) error {
	for _, o := range opts {
		switch o.(type) {
		case nil:
			return errors.New("nil option")
		case *resilient.Executor:
			return errors.New("an *Executor would replace the policy: give options, or use WithExecutor")
		}
	}
	return nil
}

// WithBase sets the RoundTripper that sends each attempt (the Transport's
// Base field). Default, and nil: http.DefaultTransport.
func WithBase(rt http.RoundTripper) Option {
	return optionFunc(func(c *config) error {
		c.base = rt
		return nil
	})
}

// WithAttemptTimeout bounds each attempt to d, like http.Client.Timeout
// bounds a request: from sending it to the end of reading the response
// body. An attempt whose headers do not arrive within d is cancelled and
// retried like any timeout. The response that is returned keeps its
// timeout: its body stays readable until it is read to the end, d runs out
// (a stalled read is then cut), or the caller closes it. d must be > 0.
// Default: none; the request's context alone bounds it.
func WithAttemptTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return optionError("WithAttemptTimeout", "d must be > 0, got %v", d)
		}
		c.attemptTimeout = d
		return nil
	})
}

// WithIdempotencyKeys makes the Transport give every POST and PATCH request
// that has no idempotency key (see [HasIdempotencyKey]) a fresh random one
// in the [IdempotencyKeyHeader], generated once per request and identical
// on every attempt of it, so that such requests are retried like
// idempotent ones. Use it only with servers that deduplicate by that
// header. The caller's request is not modified; its attempts are sent as
// clones that carry the key. Default: off.
func WithIdempotencyKeys() Option {
	return optionFunc(func(c *config) error {
		c.genKeys = true
		return nil
	})
}

// WithNonIdempotentRetries opts in to retrying requests of every method,
// POST and PATCH without an idempotency key included, after any retryable
// failure. Use it only when running such a request twice is harmless.
// Default: off; they are retried only after failures that prove they were
// never sent (see [NeverSent]).
func WithNonIdempotentRetries() Option {
	return optionFunc(func(c *config) error {
		c.nonIdempotent = true
		return nil
	})
}

// WithStatusClassifier sets how responses are classified: f returns
// [resilient.Retry] for a response to retry (its Retry-After header still
// gives the hint), [resilient.Fail] for one that ends the call and counts
// as a failure of the upstream, [resilient.Success] (or
// [resilient.Ignore]) for one to return as it is, and
// [resilient.Unclassified] to leave it to [StatusOutcome]. Either way the
// caller gets the last response. f must be safe for concurrent use and
// must not read the body. Default, and nil: [StatusOutcome].
func WithStatusClassifier(f func(*http.Response) resilient.Outcome) Option {
	return optionFunc(func(c *config) error {
		c.status = f
		return nil
	})
}

// newIdempotencyKey returns a random version 4 UUID.
func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// WithHostBreakers guards each host with its own circuit breaker, taken
// from set by the request URL's host (as written: "api.example.com" and
// "api.example.com:443" are two hosts). Build the set with
// [resilient.NewBreakers]; its options decide when a host's breaker opens.
// Each attempt is counted: a retryable or permanent status (5xx, 408) or a
// transport error is a failure, any other response a success. Neither way
// count: the caller's own cancellation; an attempt the executor abandoned
// ([resilient.ErrAbandoned]: a hedge that lost its round); and the upstream
// asking for less traffic, a 429 or any status with a Retry-After (see
// [resilient.Throttled]). With [resilient.WithOpenFromHint] in the set's
// options, a response with a Retry-After counts as a failure again, and
// its Retry-After sets how long the breaker it opens stays open.
//
// An attempt refused by its host's open breaker is not sent, and is a
// rejection, exactly as a refusal by the executor's own breaker: it is no
// attempt (the [*resilient.Error] counts 0 for it, hooks see no attempt),
// the call ends at once with [resilient.ReasonRejected], its error matches
// [resilient.ErrOpen] (the [*resilient.OpenError] says when the breaker lets
// a probe through) and [resilient.RejectedBy] names the breaker. When an
// earlier attempt of the call got a response, the caller gets that
// response. The request's body is closed. A call whose retry its host's
// breaker would refuse ends at once with the response or error it has:
// when the breaker is open as that response comes back, and the moment it
// opens while the call waits to retry. In a hedged round, a hedge the
// breaker refuses leaves the round to the attempts in flight (a half-open
// breaker's probe among them). Default: no breakers ([Recommended] builds
// a set). Nil is invalid.
//
// Each host's breaker is a policy of that host's copy of the executor (see
// [WithHostPolicies]), first among the host's policies, so that a request
// it refuses takes nothing from the host's budget or limiters. The set
// stays the one truth: when it forgets a host's breaker (unused for its
// idle time, or to make room) and makes a new one, the host's requests go
// through the new one. A breaker given to the executor itself with
// [resilient.WithBreaker] guards every host together.
func WithHostBreakers(set *resilient.Breakers) Option {
	return optionFunc(func(c *config) error {
		if set == nil {
			return optionError("WithHostBreakers", "nil set")
		}
		c.breakers = set
		return nil
	})
}
