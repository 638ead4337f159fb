// Package chaos is a flaky HTTP upstream for demonstrations and tests: a
// server that runs a timeline of phases (healthy, brownout, throttling,
// outage, recovery), injects faults on a schedule fixed by a seed, and
// counts what its clients did to it.
//
//	up, err := chaos.New(chaos.DefaultConfig(1))
//	if err != nil { ... }
//	if err := up.Start(); err != nil { ... } // listens on 127.0.0.1
//	defer up.Close()
//	resp, err := client.Get(up.URL() + "/items/1")
//	...
//	s := up.Stats() // per phase: requests received, duplicates, early retries, …
//
// # Phases and faults
//
// A [Timeline] is a list of [Phase]s, each a [Kind] held for a duration;
// after the last phase ends, the last phase goes on. What the upstream does
// to each request is a [Decision] drawn from the phase's [Profile]: serve it,
// fail it with 503, throttle it with 429 and a Retry-After (in seconds or as
// an HTTP-date), add a latency spike, hold the response headers back, or
// reset the connection in the middle of the body. During an [Outage] the
// upstream either refuses connections (its listener is closed and every open
// connection is reset) or answers 503 to everything ([OutageMode]).
//
// # Determinism
//
// Decisions are a pure function of the seed, the phase, the request's
// logical id (the [RequestIDHeader] header) and how many times that id was
// received before: the same seed gives the same fault schedule, whatever the
// order in which concurrent requests arrive, and the same logical request
// meets the same faults at every upstream built with that seed. Which phase
// a request falls in depends on when it arrives.
//
// # What it counts
//
// Per phase: requests received, executed, replayed from an idempotency key,
// answered by status, connections opened, duplicate executions of
// non-idempotent requests (a POST without an Idempotency-Key received twice
// with the same logical id, or a POST with a key executed twice when keys
// are ignored), and requests that came back sooner than a Retry-After the
// upstream gave them allowed.
//
// # Testing
//
// An [Upstream] is an http.Handler: inside a testing/synctest bubble, build
// it and call ServeHTTP directly, and its phase clock runs on fake time.
// [Upstream.Start] serves it on a loopback listener, for real clients.
package chaos
