package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
// timeout, and only retries pay it. When that call fails, and while Redis
// is known to be away (see [Budget.Degraded]), retries are judged by a
// local [resilient.Budget] fed with this replica's own requests. Deposits
// whose reply was lost are sent again and applied once.
//
// A Budget is safe for concurrent use. [Budget.Close] stops its goroutine.
type Budget struct {
	name  string
	cfg   *config
	rdb   goredis.UniversalClient
	keys  []string
	local *resilient.Budget
	h     *health

	// pending counts first attempts not yet deposited in Redis.
	pending atomic.Int64
	// batchMu is held by the one call that carries deposits to Redis (see
	// run); it guards batchSeq and the writes of unacked.
	batchMu  sync.Mutex
	batchSeq uint64
	// unacked is the deposit batch sent but not acknowledged: sent again,
	// as it is, by the next call that carries deposits.
	unacked atomic.Pointer[deposits]

	deposit, burst int64 // in tokenUnits
	ttlMS          int64

	closeOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{}
}

// deposits is a batch of first attempts sent to Redis with a number, which
// the server applies once (see [Breaker]'s batches).
type deposits struct {
	seq uint64
	n   int64
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
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, stop := context.WithCancel(context.Background())
	b := &Budget{
		name:    name,
		cfg:     c,
		rdb:     rdb,
		keys:    []string{c.key(name, "budget"), c.key(name, "seen:budget:"+hex.EncodeToString(id[:]))},
		local:   local,
		h:       newHealth("budget", name, c),
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

// Degraded reports whether the budget has lost Redis (see
// [WithDegradeAfter]) and judges retries by its local budget alone, with no
// Redis call; only its background flush calls Redis then, once per
// interval, to notice its return.
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
// or is slower than the timeout, the local budget decides; while Redis is
// known to be away (see [Budget.Degraded]), it decides at once, without a
// Redis call.
func (b *Budget) AllowRetry(attempt int) error {
	if attempt <= 1 {
		return nil
	}
	if b.h.degraded.Load() {
		// A call would only wait out the timeout; the background flush
		// notices when Redis is back.
		return b.local.AllowRetry(attempt)
	}
	ok, _, err := b.run(context.Background(), "retry", true, false)
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
	_, bal, err := b.run(ctx, "deposit", false, false)
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
		if b.pending.Load() > 0 || b.unacked.Load() != nil {
			_, _, _ = b.run(context.Background(), "deposit", false, true)
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
			// An unused budget makes no call, so its key expires; a degraded
			// one calls once per interval, to notice Redis's return.
			if b.pending.Load() > 0 || b.unacked.Load() != nil || b.h.degraded.Load() {
				_, _, _ = b.run(context.Background(), "deposit", false, false)
			}
		}
	}
}

// run deposits the pending requests and, with withdraw, takes one retry.
//
// Deposits travel in numbered batches, applied once by the server: a
// batch whose reply was lost is sent again as it is, not added back to
// the pending requests, which would deposit it twice if the script had
// run. One call at a time carries them: a call that finds another one
// carrying them (batchMu held) carries none, and does not wait, unless
// wait is set.
func (b *Budget) run(ctx context.Context, op string, withdraw, wait bool) (bool, int64, error) {
	var batch deposits
	if wait {
		b.batchMu.Lock()
	}
	if wait || b.batchMu.TryLock() {
		defer b.batchMu.Unlock()
		if b.unacked.Load() == nil {
			if n := b.pending.Swap(0); n > 0 {
				b.batchSeq++
				b.unacked.Store(&deposits{seq: b.batchSeq, n: n})
			}
		}
		if d := b.unacked.Load(); d != nil {
			batch = *d
		}
	}
	w := 0
	if withdraw {
		w = 1
	}
	res, err := call(ctx, b.h, op, b.cfg.timeout, func(ctx context.Context) ([]int64, error) {
		res, err := budgetScript.Run(ctx, b.rdb, b.keys, batch.seq, batch.n, b.deposit, b.burst, b.cfg.floor, w, b.ttlMS).Int64Slice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("resilient: redis: unexpected script reply %v", res)
		}
		return res, err
	})
	if err != nil {
		return false, 0, err
	}
	if batch.seq != 0 {
		b.unacked.Store(nil)
	}
	return res[0] == 1, res[1], nil
}

var (
	_ resilient.Policy    = (*Budget)(nil)
	_ resilient.RetryGate = (*Budget)(nil)
)
