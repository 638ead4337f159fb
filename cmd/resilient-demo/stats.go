package main

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// Figures is everything the demo measured: what -json writes.
type Figures struct {
	Seed      uint64  `json:"seed"`
	Callers   int     `json:"callers"`
	Rate      float64 `json:"rate_per_client"`
	TimeoutMs float64 `json:"timeout_ms"`
	// Timeline is the built-in upstream's phases, or with -url the one span
	// the figures cover ("run=23s").
	Timeline string `json:"timeline"`
	Upstream string `json:"upstream"` // "built-in" or the -url
	Protocol string `json:"protocol"` // "HTTP/1.1" or "HTTP/2" (-http2)
	Outage   string `json:"outage_mode,omitempty"`
	// Brownout is the share of the brownout's requests the built-in
	// upstream answers 503 (-brownout); 0 with -url.
	Brownout   float64 `json:"brownout_503_share,omitempty"`
	Interrupts bool    `json:"interrupted,omitempty"`
	// Setup is how the flags set up the library's clients.
	Setup Setup `json:"setup"`
	// Fidelity says whether the lab kept to its schedule: when it did
	// not, the figures describe the machine, and Targets are not judged.
	Fidelity Fidelity        `json:"fidelity"`
	Clients  []ClientFigures `json:"clients"`
	// Targets are the library's promises checked on this run, for the
	// built-in upstream only (none with -url).
	Targets []Target `json:"targets,omitempty"`
}

// Setup is how the flags set up the library's clients: by default httpx is
// httpx.NewClient() and tuned httpx.Recommended(), as they are.
type Setup struct {
	// Budget is the httpx client's retry budget per host (-budget):
	// "adaptive" is httpx's default.
	Budget string `json:"httpx_budget"`
	// OpenMs is how long tuned's breakers stay open before a probe (-open).
	OpenMs float64 `json:"tuned_open_ms"`
	// HedgeMs is tuned's hedging delay (-hedge); 0: no hedging.
	HedgeMs float64 `json:"tuned_hedge_ms"`
	// Limit is tuned's concurrency limiter per host (-limit): "none",
	// "gradient2" or "aimd".
	Limit string `json:"tuned_limit"`
	// Recommended reports whether tuned is the recommended setup as it is.
	Recommended bool `json:"tuned_recommended"`
}

// builtIn reports whether the figures are of the built-in upstream.
func (f *Figures) builtIn() bool { return f.Upstream == "built-in" }

// ClientFigures are one client's figures.
type ClientFigures struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Library marks a client built on the library; Breaker, one with a
	// circuit breaker.
	Library bool           `json:"library"`
	Breaker bool           `json:"breaker"`
	Phases  []PhaseFigures `json:"phases"`
	Total   PhaseFigures   `json:"total"`
	// Lag is how late its logical requests started after their schedule.
	Lag Delays `json:"load_lag"`
	// Connections is every connection the client's transport opened.
	Connections int `json:"connections"`
	// Refused is every request on the wire whose connection was refused.
	Refused int `json:"refused_connections"`
	// Cut is every request on the wire the client cancelled before its
	// response came (a hedge that lost, a timeout): over HTTP/1.1 each one
	// closes its connection, and a later request opens another.
	Cut int `json:"cancelled_in_flight"`
	// CutByDeadline are those of them cancelled by the caller's deadline;
	// the others the client cancelled itself (a hedge that lost, a
	// per-attempt timeout).
	CutByDeadline int `json:"cancelled_in_flight_by_deadline"`
	// OutageUpstream is every request sent on the wire (or connection
	// tried) during outage phases, and OutageAmplification that per
	// logical request started in them.
	OutageUpstream      int     `json:"outage_upstream_requests"`
	OutageAmplification float64 `json:"outage_amplification"`
	// AfterOpen: the same, from the moment the breaker first opened in an
	// outage to the end of that outage; nil when it never opened.
	AfterOpen *AfterOpen `json:"after_open,omitempty"`
	// RecoveryLagMs is the time from the end of the first outage to the
	// first successful response the client's callers got; nil if none.
	RecoveryLagMs *float64 `json:"recovery_lag_ms,omitempty"`
	// Throttled are the logical requests that ended with a 429;
	// ThrottledHeld those of them whose 429 the client kept 50ms or more
	// before handing it over (it waited for a hint that could not fit the
	// deadline), and MaxHeldMs the longest it kept one.
	Throttled     Latencies `json:"throttled_429"`
	ThrottledHeld int       `json:"throttled_429_held"`
	MaxHeldMs     float64   `json:"throttled_429_max_held_ms"`
	// Rejected are the logical requests the client refused itself (an open
	// breaker, an empty budget), without a request on the wire.
	Rejected    Latencies      `json:"rejected"`
	Transitions []transition   `json:"breaker_transitions"`
	Series      []SecondFigure `json:"per_second"`
}

// AfterOpen measures the outage once the breaker has opened.
type AfterOpen struct {
	AtS           float64 `json:"opened_at_s"`
	Requests      int     `json:"requests"`
	Upstream      int     `json:"upstream_requests"`
	Amplification float64 `json:"amplification"`
	P50Ms         float64 `json:"p50_ms"`
}

// Latencies counts requests and their latency.
type Latencies struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	MaxMs float64 `json:"max_ms"`
}

// PhaseFigures are a client's figures for one phase (or for all of them).
// Logical requests count in the phase in which they started; requests on
// the wire, in the phase in which they were sent.
type PhaseFigures struct {
	Phase     string  `json:"phase"`
	StartS    float64 `json:"start_s"`
	DurationS float64 `json:"duration_s"`

	// Planned is how many logical requests the schedule starts in the
	// phase; Requests, how many the client started (see Fidelity).
	Planned  int     `json:"planned_requests"`
	Requests int     `json:"requests"`
	OK       int     `json:"ok"`
	Success  float64 `json:"success_rate"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// RetrySafe counts the requests a client may send again (GETs and
	// POSTs with an Idempotency-Key), RetrySafeOK those that succeeded.
	RetrySafe     int            `json:"retry_safe_requests"`
	RetrySafeOK   int            `json:"retry_safe_ok"`
	Upstream      int            `json:"upstream_requests"`
	Amplification float64        `json:"amplification"`
	Transitions   int            `json:"breaker_transitions"`
	Outcomes      map[string]int `json:"outcomes"`
	// Dials is every connection the client's transport opened in the
	// phase; PeakInFlight the most requests it had on the wire at once
	// (sent, their response not yet read to the end): over HTTP/1.1, one
	// connection each.
	Dials        int `json:"connections_opened"`
	PeakInFlight int `json:"peak_in_flight"`

	// Seen by the built-in upstream (nil with -url).
	Server *ServerFigures `json:"server,omitempty"`
}

// ServerFigures are what the built-in upstream counted.
type ServerFigures struct {
	Received     int `json:"received"`
	Executed     int `json:"executed"`
	Replayed     int `json:"replayed"`
	Duplicates   int `json:"duplicate_executions"`
	EarlyRetries int `json:"early_retries"`
	Connections  int `json:"connections"`
}

// SecondFigure is one second of a client's timeline.
type SecondFigure struct {
	Second   int     `json:"second"`
	Upstream int     `json:"upstream_requests"`
	Requests int     `json:"requests"`
	OK       int     `json:"ok"`
	Success  float64 `json:"success_rate"` // NaN-free: 0 when no request
	P99Ms    float64 `json:"p99_ms"`
	Dials    int     `json:"connections_opened"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// quantile returns the q-quantile of sorted (nearest rank), 0 if empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func latencies(ds []time.Duration) Latencies {
	slices.Sort(ds)
	if len(ds) == 0 {
		return Latencies{}
	}
	return Latencies{Count: len(ds), P50Ms: ms(quantile(ds, 0.5)), MaxMs: ms(ds[len(ds)-1])}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// summarize turns a client's records into figures (but its description).
// plan is the planned requests per span; server is nil with -url.
func summarize(kind clientKind, sp spans, rec *recorder, server *chaos.Stats, plan []int) ClientFigures {
	rec.mu.Lock()
	calls := slices.Clone(rec.calls)
	attempts := slices.Clone(rec.attempts)
	ends := slices.Clone(rec.ends)
	dials := slices.Clone(rec.dials)
	trans := slices.Clone(rec.transitions)
	rec.mu.Unlock()

	f := ClientFigures{Name: kind.name, Library: kind.library, Breaker: kind.breaker,
		Connections: int(rec.conns.Load()), Refused: int(rec.refused.Load()),
		Cut: int(rec.cut.Load()), CutByDeadline: int(rec.deadline.Load()), Transitions: trans}
	if f.Transitions == nil {
		f.Transitions = []transition{}
	}
	phase := sp.index

	type acc struct {
		lat      []time.Duration
		ok, up   int
		safe     int
		safeOK   int
		trans    int
		dials    int
		peak     int
		outcomes map[string]int
	}
	accs := make([]acc, len(sp)+1) // the last one is the total
	for i := range accs {
		accs[i].outcomes = map[string]int{}
	}
	var throttled, rejected, lags []time.Duration
	for _, c := range calls {
		lags = append(lags, max(0, c.At-c.Sched))
		for _, a := range []*acc{&accs[phase(c.At)], &accs[len(sp)]} {
			a.lat = append(a.lat, c.Took)
			a.outcomes[c.Outcome]++
			if c.OK {
				a.ok++
			}
			if c.Method != http.MethodPost || c.Keyed {
				a.safe++
				if c.OK {
					a.safeOK++
				}
			}
		}
		if c.Status == 429 {
			throttled = append(throttled, c.Took)
			if c.Held >= 50*time.Millisecond {
				f.ThrottledHeld++
			}
			f.MaxHeldMs = max(f.MaxHeldMs, ms(c.Held))
		}
		if isRejection(c.Outcome) {
			rejected = append(rejected, c.Took)
		}
	}
	f.Lag = delaysOf(lags)
	for _, at := range attempts {
		accs[phase(at)].up++
		accs[len(sp)].up++
	}
	for _, b := range inFlight(attempts, ends) {
		for _, a := range []*acc{&accs[phase(b.at)], &accs[len(sp)]} {
			a.peak = max(a.peak, b.n)
		}
	}
	for _, at := range dials {
		accs[phase(at)].dials++
		accs[len(sp)].dials++
	}
	for _, t := range trans {
		accs[phase(t.At)].trans++
		accs[len(sp)].trans++
	}
	for i, a := range accs {
		slices.Sort(a.lat)
		p := PhaseFigures{
			Requests: len(a.lat), OK: a.ok, Success: ratio(a.ok, len(a.lat)),
			P50Ms: ms(quantile(a.lat, 0.5)), P99Ms: ms(quantile(a.lat, 0.99)), MaxMs: ms(quantile(a.lat, 1)),
			RetrySafe: a.safe, RetrySafeOK: a.safeOK,
			Upstream: a.up, Amplification: ratio(a.up, len(a.lat)), Transitions: a.trans, Outcomes: a.outcomes,
			Dials: a.dials, PeakInFlight: a.peak,
		}
		var s chaos.PhaseStats
		if i < len(sp) {
			p.Phase = sp[i].Name
			p.StartS, p.DurationS = sp.start(i).Seconds(), sp[i].Duration.Seconds()
			if i < len(plan) {
				p.Planned = plan[i]
			}
			if server != nil {
				s = server.Phases[i]
			}
		} else {
			p.Phase = "all"
			p.DurationS = sp.total().Seconds()
			for _, n := range plan {
				p.Planned += n
			}
			if server != nil {
				s = server.Total
			}
		}
		if server != nil {
			p.Server = &ServerFigures{Received: s.Received, Executed: s.Executed, Replayed: s.Replayed,
				Duplicates: s.Duplicates, EarlyRetries: s.EarlyRetries, Connections: s.Connections}
		}
		if i < len(sp) {
			f.Phases = append(f.Phases, p)
		} else {
			f.Total = p
		}
	}
	f.Throttled = latencies(throttled)
	f.Rejected = latencies(rejected)

	// The outage, and the breaker in it.
	outReq := 0
	for i, p := range sp {
		if p.Name == chaos.Outage.String() {
			outReq += len(accs[i].lat)
			f.OutageUpstream += accs[i].up
		}
	}
	f.OutageAmplification = ratio(f.OutageUpstream, outReq)
	if i := sp.find(chaos.Outage.String()); i >= 0 {
		from, to := sp.start(i), sp.start(i)+sp[i].Duration
		if j := slices.IndexFunc(trans, func(t transition) bool { return t.To == "open" && t.At >= from && t.At < to }); j >= 0 {
			open := trans[j].At
			ao := &AfterOpen{AtS: math.Round(open.Seconds()*1000) / 1000}
			var lat []time.Duration
			for _, c := range calls {
				if c.At >= open && c.At < to {
					ao.Requests++
					lat = append(lat, c.Took)
				}
			}
			for _, at := range attempts {
				if at >= open && at < to {
					ao.Upstream++
				}
			}
			slices.Sort(lat)
			ao.Amplification = ratio(ao.Upstream, ao.Requests)
			ao.P50Ms = ms(quantile(lat, 0.5))
			f.AfterOpen = ao
		}
		lag := time.Duration(-1)
		for _, c := range calls {
			if end := c.At + c.Took; c.OK && end >= to && (lag < 0 || end-to < lag) {
				lag = end - to
			}
		}
		if lag >= 0 {
			v := ms(lag)
			f.RecoveryLagMs = &v
		}
	}

	// Per second.
	n := int(math.Ceil(sp.total().Seconds()))
	secs := make([]acc, n)
	for _, c := range calls {
		if s := int(c.At / time.Second); s >= 0 && s < n {
			secs[s].lat = append(secs[s].lat, c.Took)
			if c.OK {
				secs[s].ok++
			}
		}
	}
	for _, at := range attempts {
		if s := int(at / time.Second); s >= 0 && s < n {
			secs[s].up++
		}
	}
	for _, at := range dials {
		if s := int(at / time.Second); s >= 0 && s < n {
			secs[s].dials++
		}
	}
	for s, a := range secs {
		slices.Sort(a.lat)
		f.Series = append(f.Series, SecondFigure{Second: s, Upstream: a.up, Requests: len(a.lat), OK: a.ok,
			Success: ratio(a.ok, len(a.lat)), P99Ms: ms(quantile(a.lat, 0.99)), Dials: a.dials})
	}
	return f
}

// busy is how many requests a client had on the wire just after it sent
// one at at.
type busy struct {
	at time.Duration
	n  int
}

// inFlight replays the starts and ends of the requests on the wire and
// returns how many were on it after each start. A request that ended at
// the very moment another started does not count against it: the order of
// goroutines within one instant (on fake time, many share one) does not
// change the figure.
func inFlight(starts, ends []time.Duration) []busy {
	starts, ends = slices.Clone(starts), slices.Clone(ends)
	slices.Sort(starts)
	slices.Sort(ends)
	out := make([]busy, 0, len(starts))
	n, j := 0, 0
	for _, at := range starts {
		for j < len(ends) && ends[j] <= at {
			n--
			j++
		}
		n++
		out = append(out, busy{at, max(n, 1)})
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
