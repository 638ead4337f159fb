package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/resilient-go/resilient"
)

// Breaker is a circuit breaker shared by every replica that builds one
// with the same name on the same Redis: when the fleet's calls to an
// upstream fail, it opens for all of them at once, and in half-open it lets
// at most N probes through across the whole fleet.
//
// It is a [resilient.Policy]: give it to executors with
// [resilient.WithPolicy]. Each replica's Breaker wraps a local
// [resilient.Breaker] (see [Breaker.Local]), which makes every decision on
// the caller's goroutine from memory, and a background goroutine that syncs
// it with Redis every sync interval ([WithSyncInterval]); see the package
// documentation for the model and its staleness bound.
//
// A Breaker is safe for concurrent use. Its success path in the closed
// state takes no lock, reads no clock, allocates nothing and makes no Redis
// call. [Breaker.Close] stops its goroutine.
type Breaker struct {
	name    string
	cfg     *config
	rdb     goredis.UniversalClient
	keys    []string
	local   *resilient.Breaker
	replica string // this replica's id, in probe permits and batch records
	h       *health

	// view is the fleet's state as this replica last learnt it. It is
	// replaced, never changed, when the state or generation changes; its
	// counters batch this replica's outcomes until the next sync.
	view atomic.Pointer[view]
	seq  atomic.Uint32 // probe permit numbers
	// probing counts this replica's fleet-wide probe admissions in flight
	// and probe permits held: never more than the fleet's probes, since
	// the fleet could not grant more.
	probing atomic.Int32

	// applyMu orders changes of view and of the local breaker's mirrored
	// state, so that an older reply never undoes a newer one.
	applyMu sync.Mutex
	lastMS  int64 // the server time of the last reply applied; guarded by applyMu

	causeMu sync.Mutex // guards cause; taken only with TryLock, on failures
	cause   string

	// syncMu makes syncs one at a time and guards batch and batchSeq.
	syncMu   sync.Mutex
	batch    *countBatch // counts sent but not acknowledged
	batchSeq uint64      // the last batch's number

	// reportsMu guards reports: probe reports and releases that Redis has
	// not acknowledged, oldest first, at most maxReports. Each sync
	// delivers them.
	reportsMu sync.Mutex
	reports   []probeReport
	reportSeq uint64

	closeOnce sync.Once
	stop      context.CancelFunc
	done      chan struct{}

	// Shared parameters, as the scripts take them.
	bucketMS, openMS, openMaxMS, ttlMS, probeMS int64
}

// countBatch is a batch of counts sent to Redis with a number: a batch
// whose reply was lost is sent again as it is, under the same number, and
// the server applies each number once.
type countBatch struct {
	seq          uint64
	gen          uint64
	calls, fails int64
	cause        string
}

// probeReport is a probe's result (or the release of a permit whose
// admission's reply was lost) that Redis has not acknowledged yet.
type probeReport struct {
	id     uint64
	member string
	result string // resultSuccess, resultFailure or resultRelease
	cause  string
}

// The results a probe report carries, as the scripts read them.
const (
	resultFailure = "0"
	resultSuccess = "1"
	resultRelease = "2"
)

// Bounds of the queue of undelivered probe reports: how many it holds
// (beyond, the oldest is dropped, and its permit expires by its TTL), and
// how many one sync delivers.
const (
	maxReports        = 256
	maxReportsPerSync = 32
)

// view is the fleet's state in one generation.
type view struct {
	state resilient.State
	gen   uint64
	// initial marks the view a replica starts with, before its first
	// sync.
	initial bool
	// refusal is handed to calls refused because every fleet-wide probe
	// slot is taken.
	refusal *resilient.OpenError
	// full is set while the fleet is half-open and its last reply said
	// every probe slot was taken: calls are then refused without a round
	// trip, until a reply says a slot is free (a sync, at most one
	// interval later, or this replica's own probe report).
	full atomic.Bool
	// calls and fails batch this replica's outcomes in this generation;
	// the sync swaps them to zero and sends them.
	calls, fails atomic.Int64
}

// A Permit's token: the local breaker's token in the low 32 bits, then a
// flag for a fleet-wide probe, then the shared generation (or, for a probe,
// the permit's number).
const (
	tokLocalMask = 1<<32 - 1
	tokProbe     = 1 << 32
	tokShift     = 33
	tokGenMask   = 1<<31 - 1
)

// NewBreaker builds this replica's share of the fleet breaker name, on
// rdb. The name must not be empty; opts configure the shared window, its
// trip condition, the open duration, the probes, the keys and the sync
// (see [Option]); an invalid option is an error that names it.
//
// rdb must be built with ContextTimeoutEnabled set (for a *redis.Client or
// *redis.ClusterClient this is checked, and an error otherwise), because
// only then does [WithTimeout] bound every call. The Breaker does not own
// rdb: close it after the Breaker.
//
// NewBreaker reads the shared state once, within the timeout, so that a
// replica that starts while the fleet's breaker is open starts open.
//
// Decision: if Redis cannot be reached, NewBreaker still succeeds, on local
// state; the background sync goes on trying, degrades the breaker (see
// [WithDegradeAfter]) and syncs when Redis is back. A replica must be able
// to start during a Redis outage.
func NewBreaker(rdb goredis.UniversalClient, name string, opts ...Option) (*Breaker, error) {
	if err := checkClient("NewBreaker", rdb); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("resilient: NewBreaker: name must not be empty")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	// The local breaker judges this replica's own calls by the same rules,
	// and serves alone while Redis is away.
	local, err := resilient.NewBreaker(append([]resilient.BreakerOption{
		resilient.WithBreakerName(name),
		resilient.WithTimeWindow(c.window, c.buckets),
		resilient.WithFailureRate(c.failureRate),
		resilient.WithMinCalls(c.minCalls),
		resilient.WithOpenDuration(c.openDur),
		resilient.WithHalfOpenProbes(c.probes),
		resilient.WithHalfOpenSuccesses(c.successes),
		resilient.WithHalfOpenMaxWait(c.probeTTL),
	}, c.local...)...)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	replica := hex.EncodeToString(id[:])
	b := &Breaker{
		name: name,
		cfg:  c,
		rdb:  rdb,
		keys: []string{c.key(name, "state"), c.key(name, "window"), c.key(name, "probes"),
			c.key(name, "released"), c.key(name, "seen:breaker:"+replica)},
		local:   local,
		replica: replica,
		h:       newHealth("breaker", name, c),

		bucketMS:  max(int64(c.window/time.Duration(c.buckets)/time.Millisecond), 1),
		openMS:    c.openDur.Milliseconds(),
		openMaxMS: c.openMax.Milliseconds(),
		ttlMS:     c.ttl.Milliseconds(),
		probeMS:   c.probeTTL.Milliseconds(),
	}
	v := b.newView(resilient.StateClosed, 0, "")
	v.initial = true
	b.view.Store(v)
	ctx, stop := context.WithCancel(context.Background())
	b.stop, b.done = stop, make(chan struct{})
	_ = b.sync(ctx)
	go b.loop(ctx)
	return b, nil
}

// MustNewBreaker is like [NewBreaker] but panics on an invalid argument.
func MustNewBreaker(rdb goredis.UniversalClient, name string, opts ...Option) *Breaker {
	b, err := NewBreaker(rdb, name, opts...)
	if err != nil {
		panic(err)
	}
	return b
}

func (b *Breaker) newView(s resilient.State, gen uint64, cause string) *view {
	var c error
	if cause != "" {
		c = causeError(cause)
	}
	return &view{state: s, gen: gen & tokGenMask,
		refusal: &resilient.OpenError{Name: b.name, State: resilient.StateHalfOpen, Cause: c}}
}

// causeError is a cause read from Redis: only its message.
type causeError string

func (e causeError) Error() string { return string(e) }

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Local returns the replica's local breaker. It mirrors the fleet's state
// (open, half-open, closed), and also judges this replica's own calls: it
// may open on its own before the fleet's window trips. Use it to read
// [resilient.Breaker.State] and [resilient.Breaker.Metrics]; its manual
// controls act on this replica only (see [Breaker.ForceOpen] for the
// fleet's).
func (b *Breaker) Local() *resilient.Breaker { return b.local }

// State returns the fleet's state as this replica last learnt it (at most
// a sync interval old, or older while Redis is away).
func (b *Breaker) State() resilient.State { return b.view.Load().state }

// Degraded reports whether the breaker has lost Redis (see
// [WithDegradeAfter]) and decides on local state alone; only its
// background sync calls Redis then, once per interval, to notice its
// return.
func (b *Breaker) Degraded() bool { return b.h.degraded.Load() }

// Admit implements [resilient.Policy]. The local breaker decides first (a
// refusal costs no Redis call); in the fleet's closed state that is all.
// While the fleet is open past its open duration or half-open, a call the
// local breaker admits must also win one of the fleet's probe slots, one
// Redis call within the timeout; while every slot is known to be taken, it
// is refused without one. While Redis is away (see [Breaker.Degraded]) the
// local breaker alone decides.
func (b *Breaker) Admit(ctx context.Context, _ int) (resilient.Permit, error) {
	v := b.view.Load()
	if v.state == resilient.StateHalfOpen && v.full.Load() && !b.h.degraded.Load() {
		// Every slot is known to be taken: the answer costs no round trip,
		// nor a local probe (whose round would time out locally).
		return resilient.Permit{}, v.refusal
	}
	lp, err := b.local.Allow()
	if err != nil {
		return resilient.Permit{}, err
	}
	if v.state == resilient.StateClosed || v.state == resilient.StateDisabled || b.h.degraded.Load() {
		return resilient.Permit{Token: v.gen<<tokShift | lp.Token}, nil
	}
	return b.admitProbe(ctx, v, lp)
}

func (b *Breaker) admitProbe(ctx context.Context, v *view, lp resilient.Permit) (resilient.Permit, error) {
	if !b.takeProbing() {
		// This replica already asks for, or holds, as many slots as the
		// fleet has: the answer is known, and costs no round trip.
		b.local.Done(lp, resilient.Report{Outcome: resilient.Ignore})
		return resilient.Permit{}, v.refusal
	}
	seq := uint64(b.seq.Add(1)) & tokGenMask
	member := b.member(seq)
	r, err := b.run(ctx, "probe", probeScript, member, b.probeMS, b.cfg.probes, b.ttlMS)
	if err != nil {
		b.probing.Add(-1)
		// The script may have run, or may still run (a request sent before
		// a stall is served when the server resumes), and hold a slot for
		// a caller that no longer waits for it: release the permit once
		// Redis answers again.
		b.queueReport(member, resultRelease, "")
		if cerr := ctx.Err(); cerr != nil {
			// The caller has gone (a hedge that lost, say): nothing to
			// admit, and an attempt let through now would run without a
			// slot.
			b.local.Done(lp, resilient.Report{Outcome: resilient.Ignore})
			return resilient.Permit{}, cerr
		}
		// Redis failed: the local breaker, which admitted the call, decides.
		return resilient.Permit{Token: v.gen<<tokShift | lp.Token}, nil
	}
	nv := b.apply(r)
	switch {
	case r.extra == 1:
		return resilient.Permit{Token: seq<<tokShift | tokProbe | lp.Token}, nil
	case nv.state == resilient.StateClosed || nv.state == resilient.StateDisabled:
		// The fleet closed meanwhile: an ordinary call.
		b.probing.Add(-1)
		return resilient.Permit{Token: nv.gen<<tokShift | lp.Token}, nil
	}
	b.probing.Add(-1)
	b.local.Done(lp, resilient.Report{Outcome: resilient.Ignore})
	switch nv.state {
	case resilient.StateOpen:
		// This replica's clock ran ahead of the server's: still open.
		return resilient.Permit{}, &resilient.OpenError{Name: b.name, State: resilient.StateOpen,
			Until: r.arrivedAt.Add(r.left), Cause: nv.refusal.Cause}
	case resilient.StateForcedOpen:
		return resilient.Permit{}, &resilient.OpenError{Name: b.name, State: resilient.StateForcedOpen}
	}
	return resilient.Permit{}, nv.refusal
}

// takeProbing counts one more fleet-wide probe of this replica, unless it
// already has as many as the fleet's probes.
func (b *Breaker) takeProbing() bool {
	for {
		n := b.probing.Load()
		if int(n) >= b.cfg.probes {
			return false
		}
		if b.probing.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (b *Breaker) member(seq uint64) string {
	return b.replica + ":" + strconv.FormatUint(seq, 10)
}

// Done implements [resilient.Policy]: the local breaker learns the outcome
// at once; the fleet learns it at the next sync (a counter add), or, for a
// fleet-wide probe, now (one Redis call within the timeout). A probe's
// report that cannot be delivered now (the call failed, or Redis is known
// to be away) is delivered by the next sync that reaches Redis, once.
func (b *Breaker) Done(p resilient.Permit, r resilient.Report) {
	b.local.Done(resilient.Permit{Token: p.Token & tokLocalMask}, r)
	if p.Token&tokProbe != 0 {
		b.probeDone(p.Token>>tokShift, r)
		return
	}
	v := b.view.Load()
	if v.gen != p.Token>>tokShift {
		return // admitted in another generation
	}
	switch r.Outcome {
	case resilient.Success:
		v.calls.Add(1)
	case resilient.Retry, resilient.Fail:
		v.calls.Add(1)
		v.fails.Add(1)
		b.noteCause(r.Err)
	}
}

// NeedsDuration implements [resilient.DurationPolicy] for the local
// breaker.
func (b *Breaker) NeedsDuration() bool { return b.local.NeedsDuration() }

func (b *Breaker) noteCause(err error) {
	if err == nil || !b.causeMu.TryLock() {
		return
	}
	if b.cause == "" {
		b.cause = truncate(err.Error())
	}
	b.causeMu.Unlock()
}

func (b *Breaker) takeCause() string {
	b.causeMu.Lock()
	defer b.causeMu.Unlock()
	c := b.cause
	b.cause = ""
	return c
}

func (b *Breaker) probeDone(seq uint64, r resilient.Report) {
	defer b.probing.Add(-1)
	result, cause := resultRelease, ""
	switch r.Outcome {
	case resilient.Success:
		result = resultSuccess
	case resilient.Retry, resilient.Fail:
		result = resultFailure
		if r.Err != nil {
			cause = truncate(r.Err.Error())
		}
	}
	member := b.member(seq)
	if b.h.degraded.Load() {
		// Redis is away: the next sync that reaches it delivers the report.
		b.queueReport(member, result, cause)
		return
	}
	// The caller's context is gone by now; the timeout bounds the call.
	res, err := b.run(context.Background(), "probe-done", probeDoneScript,
		member, result, b.cfg.successes, b.openMS, b.openMaxMS, b.ttlMS, cause, b.probeMS, b.cfg.probes)
	if err != nil {
		// The script may have run: delivered again, a report counts once.
		b.queueReport(member, result, cause)
		return
	}
	b.apply(res)
}

// queueReport keeps a probe report for the next sync.
func (b *Breaker) queueReport(member, result, cause string) {
	b.reportsMu.Lock()
	defer b.reportsMu.Unlock()
	if len(b.reports) == maxReports {
		// The oldest permit frees its slot by its TTL instead.
		b.reports = append(b.reports[:0], b.reports[1:]...)
	}
	b.reportSeq++
	b.reports = append(b.reports, probeReport{id: b.reportSeq, member: member, result: result, cause: cause})
}

// pendingReports returns the oldest undelivered reports, at most n.
func (b *Breaker) pendingReports(n int) []probeReport {
	b.reportsMu.Lock()
	defer b.reportsMu.Unlock()
	return append([]probeReport(nil), b.reports[:min(n, len(b.reports))]...)
}

// delivered drops the reports up to id, which Redis has applied.
func (b *Breaker) delivered(id uint64) {
	b.reportsMu.Lock()
	defer b.reportsMu.Unlock()
	i := 0
	for i < len(b.reports) && b.reports[i].id <= id {
		i++
	}
	b.reports = append(b.reports[:0], b.reports[i:]...)
}

// ForceOpen opens the breaker for the whole fleet until [Breaker.Reset]:
// every replica refuses every call from its next sync. It needs Redis: an
// error means nothing changed fleet-wide (use the local breaker's
// controls, through [Breaker.Local], for this replica alone).
func (b *Breaker) ForceOpen(ctx context.Context) error {
	return b.control(ctx, resilient.StateForcedOpen)
}

// Disable keeps the breaker closed for the whole fleet until
// [Breaker.Reset]: calls are still counted but never open it.
func (b *Breaker) Disable(ctx context.Context) error {
	return b.control(ctx, resilient.StateDisabled)
}

// Reset closes the breaker for the whole fleet, with a fresh window; it
// ends a ForceOpen or a Disable.
func (b *Breaker) Reset(ctx context.Context) error {
	return b.control(ctx, resilient.StateClosed)
}

func (b *Breaker) control(ctx context.Context, to resilient.State) error {
	r, err := b.run(ctx, "control", controlScript, int(to), b.openMS, b.ttlMS, b.cfg.probes)
	if err != nil {
		return fmt.Errorf("resilient: breaker %q: %w", b.name, err)
	}
	b.apply(r)
	return nil
}

// Close stops the breaker's background sync, after a last one (within the
// timeout) that flushes the batched counts and probe reports. It does not
// close the Redis client. Calls may still go through the breaker after
// Close, on local state. Close is idempotent.
func (b *Breaker) Close() error {
	b.closeOnce.Do(func() {
		b.stop()
		<-b.done
		_ = b.sync(context.Background())
	})
	return nil
}

func (b *Breaker) loop(ctx context.Context) {
	defer close(b.done)
	t := time.NewTicker(b.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Not ctx: a sync under way when Close is called ends within
			// the timeout, rather than being cut off with its batch sent
			// or not.
			_ = b.sync(context.Background())
		}
	}
}

// sync delivers the undelivered probe reports, flushes the batched counts
// and applies the fleet's state, in one round trip. A batch or a report
// whose reply was lost (the call failed or timed out, but the script may
// have run) is sent again as it is by the next sync, and applied once.
func (b *Breaker) sync(ctx context.Context) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	v := b.view.Load()
	if b.h.degradedFor() > b.cfg.window {
		// Decision: counts batched during an outage longer than the window
		// are dropped, not flushed: judged as recent, they could trip the
		// fleet on a past failure.
		b.batch = nil
		v.fails.Store(0)
		v.calls.Store(0)
	}
	if b.batch == nil {
		// A Done between the two swaps may leave its failure for the next
		// batch: the window's totals are what is judged, and they agree.
		calls := v.calls.Swap(0)
		fails := v.fails.Swap(0)
		if calls > 0 || fails > 0 {
			b.batchSeq++
			b.batch = &countBatch{seq: b.batchSeq, gen: v.gen, calls: calls, fails: fails}
			if fails > 0 {
				b.batch.cause = b.takeCause()
			}
		}
	}
	var batch countBatch
	if b.batch != nil {
		batch = *b.batch
	}
	reports := b.pendingReports(maxReportsPerSync)
	args := make([]any, 0, 15+3*len(reports))
	args = append(args, batch.gen, batch.calls, batch.fails, b.bucketMS, b.cfg.buckets,
		b.cfg.minCalls, b.cfg.failureRate, b.openMS, b.openMaxMS, b.ttlMS, batch.cause,
		batch.seq, b.cfg.successes, b.probeMS, b.cfg.probes)
	for _, rep := range reports {
		args = append(args, rep.member, rep.result, rep.cause)
	}
	r, err := b.run(ctx, "sync", syncScript, args...)
	if err != nil {
		return err
	}
	b.batch = nil
	if len(reports) > 0 {
		b.delivered(reports[len(reports)-1].id)
	}
	b.apply(r)
	return nil
}

// reply is what every breaker script returns.
type reply struct {
	extra     int64
	state     resilient.State
	gen       uint64
	left      time.Duration
	cause     string
	rounds    int
	inState   time.Duration
	serverMS  int64 // the server's clock when the script ran, in ms
	free      int64 // free probe slots in half-open, -1 in other states
	arrivedAt time.Time
}

// run runs a script within the timeout, and tells the health tracker how
// it went.
func (b *Breaker) run(ctx context.Context, op string, s *goredis.Script, args ...any) (reply, error) {
	return call(ctx, b.h, op, b.cfg.timeout, func(ctx context.Context) (reply, error) {
		res, err := s.Run(ctx, b.rdb, b.keys, args...).Slice()
		if err != nil {
			return reply{}, err
		}
		return parseReply(res)
	})
}

func parseReply(res []any) (reply, error) {
	if len(res) != 9 {
		return reply{}, fmt.Errorf("resilient: redis: unexpected script reply %v", res)
	}
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	cause, _ := res[4].(string)
	st := resilient.State(n(1))
	if st > resilient.StateDisabled {
		return reply{}, fmt.Errorf("resilient: redis: unknown breaker state %d", n(1))
	}
	return reply{
		extra:     n(0),
		state:     st,
		gen:       uint64(n(2)) & tokGenMask,
		left:      time.Duration(n(3)) * time.Millisecond,
		cause:     cause,
		rounds:    int(n(5)),
		inState:   time.Duration(n(6)) * time.Millisecond,
		serverMS:  n(7),
		free:      n(8),
		arrivedAt: time.Now(),
	}, nil
}

// apply makes the fleet's state in r this replica's view, and mirrors it in
// the local breaker, when its state or generation is new. It returns the
// current view.
func (b *Breaker) apply(r reply) *view {
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	cur := b.view.Load()
	// Replies can arrive out of order (a sync and a probe's report on two
	// connections): one that ran earlier on the server than the last one
	// applied is stale. Decision: order by the server's clock, not by
	// generation, because a Redis that lost its data starts again from
	// generation 0 and must still be followed; within one millisecond the
	// higher generation wins. A reply can only be stale by less than two
	// timeouts (a call is abandoned after one); one older than that means
	// the server's clock was stepped back, and is followed.
	if back := b.lastMS - r.serverMS; (back > 0 && back < 2*b.cfg.timeout.Milliseconds()+1) ||
		(back == 0 && r.gen < cur.gen) {
		return cur
	}
	b.lastMS = r.serverMS
	if cur.gen == r.gen && cur.state == r.state && !cur.initial {
		cur.full.Store(r.state == resilient.StateHalfOpen && r.free == 0)
		switch ls := b.local.State(); {
		case r.state == resilient.StateOpen && r.left > 0 && ls == resilient.StateHalfOpen:
			// The local open duration ended before the server's: stay open
			// locally for what the server says is left.
			b.mirrorOpen(r)
		case r.state == resilient.StateHalfOpen && ls == resilient.StateOpen:
			// The local breaker reopened on its own in the fleet's half-open
			// state: its round's max wait passed while the fleet refused
			// its probes, or it judged alone while Redis was away. Redis
			// answers, and the fleet's probes decide again.
			b.mirrorOpen(r)
		}
		return cur
	}
	nv := b.newView(r.state, r.gen, r.cause)
	nv.full.Store(r.state == resilient.StateHalfOpen && r.free == 0)
	b.view.Store(nv)
	switch r.state {
	case resilient.StateClosed:
		// A new closed generation is a fresh window for everyone (a trip
		// that ended, or a Reset); a replica that just started has one.
		if !cur.initial || b.local.State() != resilient.StateClosed {
			b.local.Reset()
		}
	case resilient.StateDisabled:
		b.local.Disable()
	case resilient.StateForcedOpen:
		b.local.ForceOpen()
	case resilient.StateOpen, resilient.StateHalfOpen:
		b.mirrorOpen(r)
	}
	return nv
}

// mirrorOpen puts the local breaker in r's open or half-open state.
func (b *Breaker) mirrorOpen(r reply) {
	s := resilient.Snapshot{
		Version: resilient.SnapshotVersion,
		State:   r.state,
		Since:   r.arrivedAt.Add(-r.inState),
		Rounds:  r.rounds,
		Cause:   r.cause,
	}
	if r.state == resilient.StateOpen {
		s.OpenUntil = r.arrivedAt.Add(r.left)
	}
	_ = b.local.Restore(s) // a valid snapshot by construction
}

var (
	_ resilient.Policy         = (*Breaker)(nil)
	_ resilient.DurationPolicy = (*Breaker)(nil)
)
