package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
)

// tokenUnit is one retry, in the units the shared balance is kept in (as
// in resilient.Budget).
const tokenUnit = 1_000_000

// Budget is a retry budget shared by every replica that builds one with
// the same name on the same Redis: the retries of the whole fleet are kept
// to a share of the fleet's requests, with the token semantics of
// [resilient.Budget] (each first attempt deposits ratio of a retry, each
// retry withdraws one, the bucket holds at most burst and starts full, and
// a floor of retries per second is allowed when it is empty).
//
// It is a [resilient.Policy] and a [resilient.RetryGate]: give it to
// executors with [resilient.WithPolicy]. Deposits are batched in memory
// and flushed every sync interval (an atomic add per first attempt, no
// Redis call); each retry withdraws from Redis, one call within the
// timeout, and only retries pay it. While Redis is away, retries are judged
// by a local [resilient.Budget] fed with this replica's own requests, and
// the degradation is reported through the event hook.
//
// A Budget is safe for concurrent use. [Budget.Close] stops its goroutine.
type Budget struct {
	name  string
	cfg   *config
	rdb   goredis.UniversalClient
	keys  []string
	local *resilient.Budget
	h     health

	// pending counts first attempts not yet deposited in Redis.
	pending atomic.Int64

	deposit, burst int64 // in tokenUnits
	ttlMS          int64

	closeOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{}
}

// NewBudget builds this replica's share of the fleet retry budget name on
// rdb (see [NewBreaker] for what rdb must be). The name must not be empty;
// the budget's options are [WithRetryRatio], [WithRetryBurst] and
// [WithMinRetryRate], with the defaults of [resilient.NewBudget]; the
// common ones ([WithTimeout], [WithSyncInterval], [WithKeyTTL],
// [WithPrefix], [WithEventHook]) apply too. It makes no Redis call.
func NewBudget(rdb goredis.UniversalClient, name string, opts ...Option) (*Budget, error) {
	if err := checkClient("NewBudget", rdb); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("resilient: NewBudget: name must not be empty")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	local, err := resilient.NewBudget(c.budget...)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &Budget{
		name:    name,
		cfg:     c,
		rdb:     rdb,
		keys:    []string{c.key(name, "budget")},
		local:   local,
		h:       health{component: "budget", name: name, onEvent: c.onEvent},
		deposit: int64(math.Round(c.ratio * tokenUnit)),
		burst:   int64(c.burst) * tokenUnit,
		ttlMS:   c.ttl.Milliseconds(),
		stop:    stop,
		done:    make(chan struct{}),
	}
	go b.loop(ctx)
	return b, nil
}

// MustNewBudget is like [NewBudget] but panics on an invalid argument.
func MustNewBudget(rdb goredis.UniversalClient, name string, opts ...Option) *Budget {
	b, err := NewBudget(rdb, name, opts...)
	if err != nil {
		panic(err)
	}
	return b
}

// Name returns the budget's name.
func (b *Budget) Name() string { return b.name }

// Degraded reports whether the budget has lost Redis and judges retries by
// its local budget alone.
func (b *Budget) Degraded() bool { return b.h.degraded.Load() }

// Admit implements [resilient.Policy]: a budget never refuses a call, only
// retries.
func (b *Budget) Admit(context.Context, int) (resilient.Permit, error) {
	return resilient.Permit{}, nil
}

// Done implements [resilient.Policy]: each first attempt that reached the
// upstream (whatever its outcome, except [resilient.Ignore]) deposits the
// ratio, in the local budget at once and in the shared one at the next
// sync.
func (b *Budget) Done(p resilient.Permit, r resilient.Report) {
	if r.Attempt != 1 || r.Outcome == resilient.Ignore {
		return
	}
	b.local.Done(p, r)
	b.pending.Add(1)
}

// AllowRetry implements [resilient.RetryGate]: it withdraws one retry from
// the shared budget (flushing this replica's pending deposits first, in the
// same call), and returns [resilient.ErrBudgetExhausted] when neither the
// bucket nor the floor can pay. Attempt 1 is always allowed. If Redis fails
// or is slower than the timeout, the local budget decides.
func (b *Budget) AllowRetry(attempt int) error {
	if attempt <= 1 {
		return nil
	}
	ok, _, err := b.run(context.Background(), "retry", true)
	if err != nil {
		return b.local.AllowRetry(attempt)
	}
	if !ok {
		return resilient.ErrBudgetExhausted
	}
	return nil
}

// Available returns how many retries the shared budget would allow now
// from its ratio share, not counting the floor, after depositing this
// replica's pending requests. It needs Redis.
func (b *Budget) Available(ctx context.Context) (float64, error) {
	_, bal, err := b.run(ctx, "deposit", false)
	if err != nil {
		return 0, fmt.Errorf("resilient: budget %q: %w", b.name, err)
	}
	return float64(bal) / tokenUnit, nil
}

// Close stops the budget's background flush, after a last one (within the
// timeout). It does not close the Redis client; retries may still be
// asked for after Close. Close is idempotent.
func (b *Budget) Close() error {
	b.closeOnce.Do(func() {
		b.stop()
		<-b.done
		if b.pending.Load() > 0 {
			_, _, _ = b.run(context.Background(), "deposit", false)
		}
	})
	return nil
}

func (b *Budget) loop(ctx context.Context) {
	defer close(b.done)
	t := time.NewTicker(b.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// An unused budget makes no call, so its key expires.
			if b.pending.Load() > 0 || b.h.degraded.Load() {
				// Not ctx, as in Breaker.loop.
				_, _, _ = b.run(context.Background(), "deposit", false)
			}
		}
	}
}

// run deposits the pending requests and, with withdraw, takes one retry.
func (b *Budget) run(ctx context.Context, op string, withdraw bool) (bool, int64, error) {
	n := b.pending.Swap(0)
	w := 0
	if withdraw {
		w = 1
	}
	res, err := call(ctx, b.cfg.timeout, func(ctx context.Context) ([]int64, error) {
		return budgetScript.Run(ctx, b.rdb, b.keys, n, b.deposit, b.burst, b.cfg.floor, w, b.ttlMS).Int64Slice()
	})
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("resilient: redis: unexpected script reply %v", res)
	}
	if err != nil {
		// Deposits that could not be made are kept for the next try; the
		// bucket's cap bounds what they can add when Redis is back.
		b.pending.Add(n)
		if ctx.Err() == nil {
			b.h.fail(op, err)
		}
		return false, 0, err
	}
	b.h.ok(op)
	return res[0] == 1, res[1], nil
}

var (
	_ resilient.Policy    = (*Budget)(nil)
	_ resilient.RetryGate = (*Budget)(nil)
)
