package httpx

import (
	"sync/atomic"

	"github.com/resilient-go/resilient"
)

// DefaultMaxHosts is how many hosts a Transport keeps per-host policies for
// (see [WithHostPolicies] and [WithMaxHosts]).
const DefaultMaxHosts = 1000

// hostPolicy is one host's executors: the Transport's, with the host's
// own policies added (its breaker, budget, limiters).
//
// Decision: a host's policies are policies of a copy of the executor made
// for that host, not guards inside the attempt function, because a policy
// is told nothing of the request. With a copy per host, each is an
// ordinary policy with nothing of ours around it: its refusal is a
// rejection, a retry gate is asked before the wait (and a breaker that
// opens during the wait ends it at once), a hedge that lost counts as
// Ignore, hooks see it all. The price is one lookup per request
// (resilient.Keyed: no lock, no allocation) and about 900 bytes per host.
type hostPolicy struct {
	cur atomic.Pointer[hostExecutors]
}

// hostExecutors is what a host's requests run on. It is immutable.
type hostExecutors struct {
	ex      *resilient.Executor
	once    *resilient.Executor // ex without hedging
	breaker *resilient.Breaker  // the host's breaker from WithHostBreakers' set, or nil
	err     error               // the host's options were invalid: its requests fail with it
}

// WithHostPolicies gives each host its own policies: f is called with a
// host (the request URL's host, as written: "api.example.com" and
// "api.example.com:443" are two hosts) the first time a request goes to
// it, and the options it returns are added to that host's copy of the
// Transport's executor, after the Transport's own policies and the host's
// default budget. So each host has its own budget, breaker, rate or
// concurrency limiter, while the executor's settings (attempts, backoff,
// hooks, name) and its policies stay shared by every host:
//
//	httpx.WithHostPolicies(func(host string) []resilient.Option {
//		return []resilient.Option{
//			resilient.WithConcurrencyLimit(resilient.MustNewConcurrencyLimiter()),
//		}
//	})
//
// A policy of a host is an ordinary policy of its executor: its refusal is
// a rejection (nothing is sent, no attempt is counted, the call ends at once
// and [resilient.RejectedBy] names the policy), and a retry gate, a budget,
// is asked before each wait. Any other option applies to the host alone
// too: hooks or a name per host, to tell hosts apart in metrics. For
// breakers, prefer [WithHostBreakers]: its set keeps an open breaker when
// it forgets others, where a host forgotten here starts closed.
//
// f must return new stateful values on each call (a value returned for two
// hosts is shared by them), and must not fail: an option [resilient.New]
// refuses, or an [*resilient.Executor] among the options, fails every
// request to that host, without sending it, with an error that names the
// host. f is called under a lock of the Transport's, one host at a time: it
// must not send requests through the same Transport. Several
// WithHostPolicies add up, in order. Nil is invalid.
//
// The default policy gives each host an adaptive retry budget
// ([resilient.NewAdaptiveBudget] with its defaults): retries go on while
// they succeed, as in a brownout, and stop when they fail, as in an outage,
// whatever the other hosts do. [WithExecutor] replaces it with the rest of
// the policy; [WithoutHostBudget] removes it alone.
//
// A Transport keeps the policies of at most [WithMaxHosts] hosts (default
// [DefaultMaxHosts]). Beyond that, it forgets those of a host not used
// lately (see [resilient.Keyed]); that host's next request starts afresh,
// with a full budget and a new limiter. Finding a host's policies takes no
// lock and allocates nothing; building them is done once per host.
func WithHostPolicies(f func(host string) []resilient.Option) Option {
	return optionFunc(func(c *config) error {
		if f == nil {
			return optionError("WithHostPolicies", "nil function")
		}
		c.hostOpts = append(c.hostOpts[:len(c.hostOpts):len(c.hostOpts)], f)
		return nil
	})
}

// WithoutHostBudget removes the default policy's per-host adaptive retry
// budget (see [WithHostPolicies]), and keeps the rest of the policy. To
// give each host a budget of another kind, add it with WithHostPolicies.
// With [WithExecutor] there is no default budget to remove.
func WithoutHostBudget() Option {
	return optionFunc(func(c *config) error {
		c.noHostBudget = true
		return nil
	})
}

// WithMaxHosts bounds how many hosts a Transport keeps per-host policies
// for (see [WithHostPolicies]): n >= 1. Default [DefaultMaxHosts]. A host
// forgotten beyond the bound starts afresh on its next request, so choose n
// above the number of hosts the client calls in any few minutes. It does
// not bound [WithHostBreakers]' set, which has its own.
func WithMaxHosts(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return optionError("WithMaxHosts", "n must be >= 1, got %d", n)
		}
		c.maxHosts = n
		return nil
	})
}

// hostBudget reports whether each host gets the default adaptive budget.
//
// Decision: an executor of the caller's (WithExecutor) is the whole policy,
// and gets no default budget per host: it often has a budget of its own,
// and a second one would refuse retries the caller's allows, unasked.
// WithExecutorOptions, which adds to the default policy, keeps it.
func (c *config) hostBudget() bool { return !c.custom && !c.noHostBudget }

// policy returns the executors for a request to host.
func (c *config) policy(host string) (ex, once *resilient.Executor, err error) {
	if c.hosts == nil {
		return c.ex, c.once, nil
	}
	p := c.hosts.Get(host)
	e := p.cur.Load()
	if c.breakers != nil {
		if br := c.breakers.Get(host); br != e.breaker {
			e = c.replaceBreaker(p, e, host, br)
		}
	}
	return e.ex, e.once, e.err
}

// replaceBreaker rebuilds a host's executors around br, the breaker its
// set now holds for it.
//
// Decision: the set of WithHostBreakers stays the one truth about a host's
// breaker. When it has forgotten one (unused, or to make room) and made a
// new one, the host's executors take the new one, rather than keep
// counting on a breaker the set, and whoever reads it, no longer sees.
// This is rare, and costs a rebuild under c.mu; the host's other
// policies are built anew with it, as for a host the Transport forgot.
func (c *config) replaceBreaker(p *hostPolicy, e *hostExecutors, host string, br *resilient.Breaker) *hostExecutors {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := p.cur.Load(); cur != e {
		return cur // replaced meanwhile
	}
	ne := c.executors(host, br)
	p.cur.Store(ne)
	return ne
}

// buildHost builds host's policy, for c.hosts (under its lock).
func (c *config) buildHost(host string) *hostPolicy {
	var br *resilient.Breaker
	if c.breakers != nil {
		br = c.breakers.Get(host)
	}
	p := new(hostPolicy)
	c.mu.Lock()
	defer c.mu.Unlock()
	p.cur.Store(c.executors(host, br))
	return p
}

// executors builds host's executors: the Transport's, with the host's
// breaker, budget and policies, then the Transport's own settings again,
// which no host option may undo. The breaker comes first, so that a
// request it refuses takes nothing from a budget or a limiter.
func (c *config) executors(host string, br *resilient.Breaker) *hostExecutors {
	opts := []resilient.Option{c.ex}
	if br != nil {
		opts = append(opts, resilient.WithBreaker(br))
	}
	if c.hostBudget() {
		// Cannot fail: no options.
		b, _ := resilient.NewAdaptiveBudget()
		opts = append(opts, resilient.WithBudget(b))
	}
	for _, f := range c.hostOpts {
		hopts := f(host)
		if err := noExecutor(hopts); err != nil {
			return &hostExecutors{breaker: br, err: optionError("WithHostPolicies", "host %q: %w", host, err)}
		}
		opts = append(opts, hopts...)
	}
	opts = append(opts, own...)
	ex, err := resilient.New(opts...)
	if err != nil {
		return &hostExecutors{breaker: br, err: optionError("WithHostPolicies", "host %q: %w", host, err)}
	}
	once, err := resilient.New(ex, resilient.WithoutHedging())
	if err != nil {
		return &hostExecutors{breaker: br, err: optionError("WithHostPolicies", "host %q: %w", host, err)}
	}
	return &hostExecutors{ex: ex, once: once, breaker: br}
}
