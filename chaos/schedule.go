package chaos

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Fault is what the upstream does to one request.
type Fault uint8

const (
	// None serves the request after the base latency.
	None Fault = iota
	// Unavailable answers 503 Service Unavailable without executing it.
	Unavailable
	// Throttled answers 429 Too Many Requests with a Retry-After, without
	// executing it.
	Throttled
	// Spike executes the request and answers after an extra delay.
	Spike
	// SlowHeaders executes the request and holds the response headers back
	// for [Config.SlowHeaders].
	SlowHeaders
	// Reset executes the request, sends the headers and half the body, then
	// resets the connection.
	Reset
	// Down is the outage: the connection is refused or reset, or the
	// request gets 503 (see [OutageMode]); it is not executed.
	Down

	numFaults = iota
)

var faultNames = [numFaults]string{"none", "unavailable", "throttled", "spike", "slow-headers", "reset", "down"}

// String returns the fault's lower-case name.
func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", uint8(f))
}

// Profile is the share of requests, each in [0, 1], that meet each fault
// during a phase. The shares add up to at most 1; the rest are served.
type Profile struct {
	Unavailable float64 // 503
	Throttled   float64 // 429 with Retry-After
	Spike       float64 // extra latency, in [Config.SpikeMin, Config.SpikeMax]
	SlowHeaders float64 // headers held back for Config.SlowHeaders
	Reset       float64 // connection reset mid-body
}

func (p Profile) validate() error {
	sum := 0.0
	for _, v := range [...]float64{p.Unavailable, p.Throttled, p.Spike, p.SlowHeaders, p.Reset} {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fmt.Errorf("shares must be in [0, 1], got %v", v)
		}
		sum += v
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("shares add up to %v, more than 1", sum)
	}
	return nil
}

// OutageMode is what the upstream does during an [Outage].
type OutageMode uint8

const (
	// Refuse closes the listener for the outage, so that new connections
	// are refused, and resets every open connection when it starts. An
	// upstream that is not listening (used as a handler) resets the
	// connection of any request it is given.
	Refuse OutageMode = iota
	// Fail503 answers 503 to every request.
	Fail503
)

// String returns "refuse" or "503".
func (m OutageMode) String() string {
	if m == Fail503 {
		return "503"
	}
	return "refuse"
}

// Config describes an upstream. Start from [DefaultConfig]: the zero Config
// is not valid.
type Config struct {
	// Seed fixes the fault schedule: the same seed, the same decisions.
	Seed uint64
	// Timeline is the schedule of phases.
	Timeline Timeline
	// Profiles gives the share of each fault per kind of phase. Outage
	// ignores its profile: everything is down.
	Profiles [numKinds]Profile
	// Latency is the service time of every request (>= 0).
	Latency time.Duration
	// SpikeMin and SpikeMax bound the extra delay of a latency spike
	// (0 <= SpikeMin <= SpikeMax).
	SpikeMin, SpikeMax time.Duration
	// SlowHeaders is how long headers are held back (>= 0).
	SlowHeaders time.Duration
	// RetryAfter lists the hints a 429 carries, one drawn per response
	// (each >= 1s: Retry-After has a resolution of one second).
	RetryAfter []time.Duration
	// DateShare is the share of hints, in [0, 1], written as an HTTP-date
	// rather than in seconds. A date hint asks for at least the listed
	// duration, rounded up to the next whole second.
	DateShare float64
	// Outage is what an outage does (default [Refuse]).
	Outage OutageMode
	// IgnoreIdempotencyKeys makes the upstream execute every POST it gets,
	// as one without idempotency support would; then a POST executed twice
	// with the same Idempotency-Key is a duplicate too. By default a repeated
	// key is answered with the first execution's response, not executed.
	IgnoreIdempotencyKeys bool
	// BodySize is the size of a successful response's body, in bytes (>= 2).
	BodySize int
	// HTTP2 makes [Upstream.Start] serve unencrypted HTTP/2 (with prior
	// knowledge) besides HTTP/1.1. Over HTTP/2 a client that cancels a
	// request resets its stream and keeps the connection; over HTTP/1.1 it
	// has to close the connection. Default: HTTP/1.1 only.
	HTTP2 bool
}

// DefaultConfig is the demo's upstream: [DefaultTimeline]; a brownout with
// 8% 503s, 8% latency spikes of 150-400ms, 1% slow headers (1.5s) and
// 0.1% resets mid-body; throttling that answers 40% of requests with 429
// and a hint of 1s, 2s or 4s (half of them as HTTP-dates); an outage that
// refuses connections; a 2ms service time and 1 KiB bodies.
func DefaultConfig(seed uint64) Config {
	c := Config{
		Seed:        seed,
		Timeline:    DefaultTimeline(),
		Latency:     2 * time.Millisecond,
		SpikeMin:    150 * time.Millisecond,
		SpikeMax:    400 * time.Millisecond,
		SlowHeaders: 1500 * time.Millisecond,
		RetryAfter:  []time.Duration{time.Second, 2 * time.Second, 4 * time.Second},
		DateShare:   0.5,
		Outage:      Refuse,
		BodySize:    1024,
	}
	c.Profiles[Brownout] = Profile{Unavailable: 0.08, Spike: 0.08, SlowHeaders: 0.01, Reset: 0.001}
	c.Profiles[Throttling] = Profile{Throttled: 0.40}
	return c
}

// Validate reports the first problem that keeps the configuration from
// running, naming the field.
func (c *Config) Validate() error {
	if err := c.Timeline.Validate(); err != nil {
		return err
	}
	for k, p := range c.Profiles {
		if err := p.validate(); err != nil {
			return fmt.Errorf("chaos: Profiles[%s]: %w", Kind(k), err)
		}
	}
	switch {
	case c.Latency < 0:
		return fmt.Errorf("chaos: Latency must be >= 0, got %v", c.Latency)
	case c.SpikeMin < 0 || c.SpikeMax < c.SpikeMin:
		return fmt.Errorf("chaos: SpikeMin, SpikeMax must satisfy 0 <= min <= max, got %v, %v", c.SpikeMin, c.SpikeMax)
	case c.SlowHeaders < 0:
		return fmt.Errorf("chaos: SlowHeaders must be >= 0, got %v", c.SlowHeaders)
	case math.IsNaN(c.DateShare) || c.DateShare < 0 || c.DateShare > 1:
		return fmt.Errorf("chaos: DateShare must be in [0, 1], got %v", c.DateShare)
	case c.Outage > Fail503:
		return fmt.Errorf("chaos: Outage: unknown mode %d", c.Outage)
	case c.BodySize < 2:
		return fmt.Errorf("chaos: BodySize must be >= 2, got %d", c.BodySize)
	}
	for _, p := range c.Profiles {
		if p.Throttled > 0 && len(c.RetryAfter) == 0 {
			return errors.New("chaos: RetryAfter must list at least one hint when a phase throttles")
		}
	}
	for _, d := range c.RetryAfter {
		if d < time.Second {
			return fmt.Errorf("chaos: RetryAfter hints must be >= 1s, got %v", d)
		}
	}
	return nil
}

// Decision is the fate of one request.
type Decision struct {
	Fault Fault
	// Delay is the extra wait before the response headers (Spike,
	// SlowHeaders).
	Delay time.Duration
	// RetryAfter is the hint of a Throttled response, and HTTPDate tells
	// whether it is written as a date rather than in seconds.
	RetryAfter time.Duration
	HTTPDate   bool
}

// Decide returns the fate of the n-th arrival (from 1) of the request with
// logical id id during phase number phase of the timeline. It is a pure
// function of the configuration (its seed, timeline and profiles) and its
// arguments: this is the fault schedule.
func (c *Config) Decide(phase int, id string, n int) Decision {
	if phase < 0 || phase >= len(c.Timeline) {
		return Decision{}
	}
	kind := c.Timeline[phase].Kind
	if kind == Outage {
		return Decision{Fault: Down}
	}
	p := c.Profiles[kind]
	h := mix(c.Seed ^ mix(uint64(phase)+1) ^ mix(fnv(id)) ^ mix(uint64(n)<<20))
	u := unit(h)
	var d Decision
	switch {
	case u < p.Unavailable:
		d.Fault = Unavailable
	case u < p.Unavailable+p.Throttled:
		d.Fault = Throttled
		h2 := mix(h + 1)
		d.RetryAfter = c.RetryAfter[h2%uint64(len(c.RetryAfter))]
		d.HTTPDate = unit(mix(h+2)) < c.DateShare
	case u < p.Unavailable+p.Throttled+p.Spike:
		d.Fault = Spike
		d.Delay = c.SpikeMin + time.Duration(unit(mix(h+3))*float64(c.SpikeMax-c.SpikeMin))
	case u < p.Unavailable+p.Throttled+p.Spike+p.SlowHeaders:
		d.Fault = SlowHeaders
		d.Delay = c.SlowHeaders
	case u < p.Unavailable+p.Throttled+p.Spike+p.SlowHeaders+p.Reset:
		d.Fault = Reset
	}
	return d
}

// mix is the splitmix64 finaliser: a bijection that scatters nearby inputs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// fnv is FNV-1a over s.
func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unit maps h to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }
