// Package redis shares circuit breakers and retry budgets across the
// replicas of a service through Redis, so that the fleet learns of an
// outage once and retries within one budget, through
// github.com/redis/go-redis/v9.
//
//	rdb := goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true})
//	br := redis.MustNewBreaker(rdb, "users-api", redis.WithHalfOpenProbes(2))
//	defer br.Close()
//	budget := redis.MustNewBudget(rdb, "users-api")
//	defer budget.Close()
//	usersAPI := resilient.MustNew(resilient.WithPolicy(budget, br))
//
// Replicas that build a [Breaker] (or a [Budget]) with the same name on the
// same Redis share it. [Store] is the plain alternative: a
// [resilient.Store] that keeps one breaker's snapshot across restarts.
//
// # Model
//
// Each replica's [Breaker] wraps a local [resilient.Breaker], built with the
// same window, rate and open duration, which makes every decision on the
// caller's goroutine, from memory. A background goroutine syncs it with
// Redis every sync interval ([WithSyncInterval], default 100ms): one Lua
// script, one round trip, adds the replica's batched counts (calls and
// failures since the last sync, kept in two atomic counters) to the shared
// window, judges it, and returns the shared state. The scripts run
// atomically on the server, so the window is judged on everyone's counts
// and the breaker opens once, for everyone, with one generation number.
//
// The shared state is mirrored into the local breaker: the fleet opening
// opens it (until the same instant), the fleet closing resets it.
// Half-open, a call the local breaker admits must also win one of the
// fleet's probe slots (a script that hands out at most
// [WithHalfOpenProbes] permits in total, not per replica); a probe's result
// is reported to Redis at once, and closes or reopens the fleet. A permit
// whose result never comes back (its replica died) frees its slot after
// [WithProbeTTL].
//
// Decision: a probe permit that expires frees its slot rather than
// reopening the breaker, as the in-process half-open max wait does. A
// replica that dies holding a probe says nothing about the upstream; the
// next probe, from a live replica, does. The probe TTL is also the local
// breaker's half-open max wait: no slot outlives its holder by more.
//
// While every slot is taken, a replica knows it from its last reply (its
// own admission, or a sync) and refuses calls without a round trip; it
// learns that a slot is free at its next sync, or at once from its own
// probe's report.
//
// The local breaker also judges this replica's own calls: it may open on
// them before the fleet's window trips (with the same thresholds, on fewer
// calls), which protects a replica whose own path to the upstream is
// broken. [Breaker.Local] returns it, for its state, metrics and listeners.
//
// # Staleness
//
// A failure is flushed at its replica's next sync, at most one interval
// after it happened; if it trips the shared window, the fleet's breaker is
// open in Redis from then on, and every other replica reads that at its own
// next sync, at most one more interval later. So every replica refuses
// calls within two sync intervals (plus two round trips) of the failure
// that trips the fleet, and the shared window lags the fleet's calls by at
// most one interval. Probe results and manual changes ([Breaker.ForceOpen],
// [Breaker.Disable], [Breaker.Reset]) take effect in Redis at once, for the
// replica that made them at once, and for the others within one interval.
//
// # Cost
//
// The success path in the closed state is the local breaker's, plus three
// atomic loads and an atomic add: no lock, no clock read, no allocation,
// no Redis call. Each replica makes one round trip per sync interval per
// breaker, whatever its traffic; half-open probes cost two round trips each
// (admission and result); a refusal costs nothing, also in half-open while
// the slots are taken. A [Budget] deposits in memory (an atomic add per
// request), flushes every interval when it has deposits, and makes one
// round trip per retry. The README gives measured figures.
//
// # When Redis fails
//
// A Redis failure never fails a call, and Redis never holds a caller past
// [WithTimeout] (default 50ms): every Redis call is bounded by it, whatever
// the server does (down, refusing connections, or stalled with requests
// in flight). That bound holds only if the go-redis client is built with
// ContextTimeoutEnabled, which [NewBreaker], [NewBudget] and [NewStore]
// check for a *redis.Client or *redis.ClusterClient. A call whose Redis
// call fails is decided on local state (the local breaker, a local
// [resilient.Budget] fed with this replica's requests).
//
// After [WithDegradeAfter] failed calls in a row (default 3) a component
// is degraded: it tells the [WithEventHook] function once
// ([EventDegraded]), decides on local state alone and makes no Redis call
// on the caller's path (a retry, a probe admission or a probe's report
// does not wait out a timeout); its background sync goes on once per
// interval. The first call that Redis answers in less than half the
// timeout recovers it ([EventRecovered]) and resynchronises it with the
// shared state. A slow answer neither degrades nor recovers, so a busy
// machine that misses a timeout now and then does not make a component
// flap.
//
// Nothing is lost or counted twice across a failure. A call whose reply
// was lost may still have run on the server (a request sent before a stall
// is served when Redis resumes), so what a replica sends is sent again
// until Redis acknowledges it, and applied once: batches of counts and of
// deposits carry a number per replica, and the server applies each number
// once; probe reports are kept and delivered by the next sync that reaches
// Redis (a report counts only while its permit is held, so twice is once);
// a probe admission whose reply was lost is released the same way, and if
// the release reaches the server before the admission does, a tombstone
// keeps it from being granted. So after a stall of any length the fleet
// serves again within one open duration of Redis's return (or of the
// upstream's, whichever is later), instead of waiting for the probe TTL.
// Counts batched during an outage longer than the window are dropped
// rather than judged as recent.
//
// Decision: [NewBreaker] succeeds when Redis is down, on local state: a
// replica must be able to start during a Redis outage.
//
// A Redis that loses its data (a restart without persistence) starts every
// breaker closed, with a fresh window; replicas follow it at their next
// sync. Keep Redis persistent (AOF) when an open breaker must survive a
// Redis restart.
//
// # Logging
//
// The components log nothing: they report through [WithEventHook]. go-redis
// itself logs through a process-wide logger, a line per failed dial during
// an outage; this package leaves it alone (see [Logger] for why), and
// [NewLogger] routes it through log/slog, collapsed, for applications that
// set it in main.
//
// # Keys
//
// Keys are prefix:{name}:kind (prefix [DefaultPrefix], see [WithPrefix]);
// the braces are a Redis Cluster hash tag, so a breaker's keys share a slot
// as its scripts require. Every key carries a TTL ([WithKeyTTL], default
// 1h) renewed on each use, so the keys of a breaker or budget nobody uses
// any more expire. Nothing grows with traffic: a breaker holds a state hash
// of 7 fields, a window hash of at most 2×(buckets+1) fields (old buckets
// are deleted as the window moves), at most [WithHalfOpenProbes] probe
// permits, and tombstones of released permits for at most the probe TTL;
// a budget holds a hash of 3 fields; a [Store] one string per breaker.
// Each replica also keeps, per breaker and per budget, the number of the
// last batch the server applied (prefix:{name}:seen:breaker:<replica>, and
// :seen:budget:), which expires with the key TTL once the replica is gone.
//
// Time is Redis's own (the TIME command, inside the scripts), so replicas
// with skewed clocks agree on when the breaker half-opens; replicas receive
// durations, not instants.
//
// # Retry budget
//
// A [Budget] has the token semantics of [resilient.Budget], fleet-wide: each
// first attempt deposits ratio of a retry, each retry withdraws one, the
// bucket holds at most burst and starts full, and a floor of retries per
// second ([WithMinRetryRate]) is shared by the fleet too. Deposits reach
// Redis within one sync interval; withdrawals are immediate.
package redis
