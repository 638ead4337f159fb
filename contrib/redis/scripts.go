package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts below run atomically on the Redis server: each one is a
// single round trip that reads, decides and writes a breaker's or a
// budget's shared state, so that no two replicas can act on the same stale
// read.
//
// Time is the server's (the TIME command), never a replica's clock, so a
// replica whose clock is skewed neither opens early nor keeps the fleet
// open. Replicas receive durations relative to that clock (time left open,
// time in state) and turn them into local times on arrival.
//
// A breaker's keys share the hash tag {name}, so a Redis Cluster keeps them
// in one slot, as a multi-key script requires:
//
//	KEYS[1] prefix:{name}:state     hash: state gen until cause succ rounds since
//	KEYS[2] prefix:{name}:window    hash: "<bucket>:c" and "<bucket>:f" counts
//	KEYS[3] prefix:{name}:probes    sorted set: probe permit -> expiry (ms)
//	KEYS[4] prefix:{name}:released  sorted set: released permit -> expiry (ms)
//	KEYS[5] prefix:{name}:seen:breaker:<replica>  string: the last batch applied
//
// States are the numbers of resilient.State: 0 closed, 1 open,
// 2 half-open, 3 forced-open, 4 disabled.

// breakerLib is the code shared by the breaker's scripts.
const breakerLib = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load(now)
  local v = redis.call('HMGET', KEYS[1], 'state', 'gen', 'until', 'cause', 'succ', 'rounds', 'since')
  return {
    state = tonumber(v[1]) or 0, gen = tonumber(v[2]) or 0, untl = tonumber(v[3]) or 0,
    cause = v[4] or '', succ = tonumber(v[5]) or 0, rounds = tonumber(v[6]) or 0,
    since = tonumber(v[7]) or now,
  }
end

-- open_ms is the open duration after s.rounds failed probe rounds: the base
-- duration doubled per round, up to max (max 0: no growth).
local function open_ms(s, base, maxd)
  if maxd <= base then return base end
  local d = base
  for _ = 1, s.rounds do
    d = d * 2
    if d >= maxd then return maxd end
  end
  return d
end

-- enter makes state 'to' current, in a new generation, with a fresh window
-- and no probe permits.
local function enter(s, to, now, openms, cause)
  s.state = to
  s.gen = s.gen + 1
  s.since = now
  s.succ = 0
  s.untl = 0
  if to == 1 then
    s.untl = now + openms
    s.cause = cause
  elseif to == 0 or to == 4 then
    s.cause = ''
    if to == 0 then s.rounds = 0 end
  end
  redis.call('DEL', KEYS[2], KEYS[3])
end

-- advance turns an open breaker whose open duration has passed half-open.
local function advance(s, now)
  if s.state == 1 and now >= s.untl then
    local cause = s.cause
    enter(s, 2, now, 0, '')
    s.cause = cause
  end
end

-- free_slots is how many probe permits are free in half-open, once the
-- expired ones are dropped; -1 in other states.
local function free_slots(s, now, probes)
  if s.state ~= 2 then return -1 end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  return math.max(probes - redis.call('ZCARD', KEYS[3]), 0)
end

-- report applies a probe's result ('1' success, '0' failure, '2' release)
-- if its permit is held and current: a success counts towards closing, a
-- failure reopens, a release frees the slot. A permit that has expired, or
-- belongs to an earlier round, is ignored, so a report delivered twice
-- counts once. A release of a permit that is not held leaves a tombstone
-- until probe_ms from now: the permit's admission may not have run yet (it
-- was sent before a stall and its reply given up on), and must not be
-- granted when it does.
local function report(s, now, member, result, successes, openms, openmax, probems, cause)
  local exp = tonumber(redis.call('ZSCORE', KEYS[3], member))
  if exp then redis.call('ZREM', KEYS[3], member) end
  if s.state == 2 and exp and exp > now then
    if result == '1' then
      s.succ = s.succ + 1
      if s.succ >= successes then enter(s, 0, now, 0, '') end
    elseif result == '0' then
      s.rounds = s.rounds + 1
      enter(s, 1, now, open_ms(s, openms, openmax), cause)
    end
  elseif result == '2' and not exp then
    redis.call('ZADD', KEYS[4], now + probems, member)
    redis.call('PEXPIRE', KEYS[4], probems)
  end
end

local function save(s, ttl)
  redis.call('HSET', KEYS[1], 'state', s.state, 'gen', s.gen, 'until', s.untl,
    'cause', s.cause, 'succ', s.succ, 'rounds', s.rounds, 'since', s.since)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end

local function reply(s, now, extra, probes)
  local left = 0
  if s.state == 1 then left = math.max(s.untl - now, 0) end
  return {extra, s.state, s.gen, left, s.cause, s.rounds, math.max(now - s.since, 0), now,
    free_slots(s, now, probes)}
end
`

// syncScript delivers a replica's undelivered probe reports, adds its
// batch of counts to the shared window, judges it, and returns the shared
// state. It is the one round trip each replica makes per sync interval.
//
// A batch carries a number, increasing per replica; the script applies it
// only if it is higher than the last one applied for the replica (kept in
// KEYS[5]), so a batch sent again because its reply was lost counts once.
//
// ARGV: gen calls fails bucket_ms buckets min_calls rate open_ms open_max_ms
// ttl_ms cause batch successes probe_ms probes, then a (member result
// cause) triple per probe report.
var syncScript = goredis.NewScript(breakerLib + `
local now = now_ms()
local s = load(now)
advance(s, now)
local openms, openmax, probems = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[14])
for i = 16, #ARGV, 3 do
  report(s, now, ARGV[i], ARGV[i + 1], tonumber(ARGV[13]), openms, openmax, probems, ARGV[i + 2])
end
local batch, calls, fails = tonumber(ARGV[12]), tonumber(ARGV[2]), tonumber(ARGV[3])
if batch > 0 then
  if batch > (tonumber(redis.call('GET', KEYS[5])) or 0) then
    redis.call('SET', KEYS[5], ARGV[12], 'PX', ARGV[10])
  else
    calls = 0
  end
end
-- Counts made in another generation (before a trip or a reset) are dropped,
-- so they never pollute the current window.
if tonumber(ARGV[1]) == s.gen and calls > 0 and (s.state == 0 or s.state == 4) then
  local bms, nb = tonumber(ARGV[4]), tonumber(ARGV[5])
  local b = math.floor(now / bms)
  redis.call('HINCRBY', KEYS[2], b .. ':c', calls)
  if fails > 0 then redis.call('HINCRBY', KEYS[2], b .. ':f', fails) end
  local all = redis.call('HGETALL', KEYS[2])
  local tc, tf, old = 0, 0, {}
  for i = 1, #all, 2 do
    local k = all[i]
    local sep = string.find(k, ':', 1, true)
    local idx = tonumber(string.sub(k, 1, sep - 1))
    if idx <= b - nb then
      old[#old + 1] = k
    elseif string.sub(k, sep + 1) == 'c' then
      tc = tc + tonumber(all[i + 1])
    else
      tf = tf + tonumber(all[i + 1])
    end
  end
  if #old > 0 then redis.call('HDEL', KEYS[2], unpack(old)) end
  -- Judged on failures only, as the in-process breaker does.
  if s.state == 0 and fails > 0 and tc >= tonumber(ARGV[6]) and tf >= tonumber(ARGV[7]) * tc then
    enter(s, 1, now, open_ms(s, openms, openmax), ARGV[11])
  end
end
save(s, tonumber(ARGV[10]))
return reply(s, now, 0, tonumber(ARGV[15]))
`)

// probeScript hands out a half-open probe permit, at most probes at once
// fleet-wide. A permit expires after permit_ms, so a replica that dies
// holding one frees its slot; a permit released before its admission ran
// (a tombstone in KEYS[4]) is not granted.
//
// ARGV: member permit_ms probes ttl_ms
var probeScript = goredis.NewScript(breakerLib + `
local now = now_ms()
local s = load(now)
advance(s, now)
local granted, probes = 0, tonumber(ARGV[3])
if s.state == 2 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if free_slots(s, now, probes) > 0 and not redis.call('ZSCORE', KEYS[4], ARGV[1]) then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
    granted = 1
  end
end
save(s, tonumber(ARGV[4]))
return reply(s, now, granted, probes)
`)

// probeDoneScript reports a probe's result, at once (see report).
//
// ARGV: member result(1 success, 0 failure, 2 release) successes open_ms
// open_max_ms ttl_ms cause probe_ms probes
var probeDoneScript = goredis.NewScript(breakerLib + `
local now = now_ms()
local s = load(now)
advance(s, now)
report(s, now, ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[8]), ARGV[7])
save(s, tonumber(ARGV[6]))
return reply(s, now, 0, tonumber(ARGV[9]))
`)

// controlScript is a manual change of state, for the whole fleet.
//
// ARGV: to open_ms ttl_ms probes
var controlScript = goredis.NewScript(breakerLib + `
local now = now_ms()
local s = load(now)
enter(s, tonumber(ARGV[1]), now, tonumber(ARGV[2]), '')
save(s, tonumber(ARGV[3]))
return reply(s, now, 0, tonumber(ARGV[4]))
`)

// budgetScript deposits a replica's batch of first attempts into a shared
// retry budget and, when asked, withdraws one retry from it or from its
// floor. Balances are in millionths of a retry, as in resilient.Budget.
// A batch is applied once, as in syncScript (batch 0: no deposit).
//
//	KEYS[1] prefix:{name}:budget  hash: bal floor fts
//	KEYS[2] prefix:{name}:seen:budget:<replica>  string: the last batch applied
//
// ARGV: batch requests deposit burst rate withdraw(1/0) ttl_ms
var budgetScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local unit = 1000000
local burst, rate = tonumber(ARGV[4]), tonumber(ARGV[5])
local cap = math.max(rate, 1)
local v = redis.call('HMGET', KEYS[1], 'bal', 'floor', 'fts')
local bal = tonumber(v[1]) or burst
local fl = tonumber(v[2]) or cap
local fts = tonumber(v[3]) or now
local batch = tonumber(ARGV[1])
if batch > 0 and batch > (tonumber(redis.call('GET', KEYS[2])) or 0) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[7])
  bal = math.min(bal + tonumber(ARGV[2]) * tonumber(ARGV[3]), burst)
end
local ok = 0
if ARGV[6] == '1' then
  if bal >= unit then
    bal = bal - unit
    ok = 1
  elseif rate > 0 then
    fl = math.min(fl + (now - fts) / 1000 * rate, cap)
    fts = now
    if fl >= 1 then
      fl = fl - 1
      ok = 1
    end
  end
end
redis.call('HSET', KEYS[1], 'bal', string.format('%d', bal), 'floor', string.format('%.6f', fl), 'fts', string.format('%d', fts))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
return {ok, bal}
`)
