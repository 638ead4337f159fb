package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilient-go/resilient/chaos"
	"github.com/resilient-go/resilient/httpx"
)

// call is one logical request, as its caller saw it.
type call struct {
	// Sched is when the load's schedule said it should start, At when it
	// did (both from the start of the run): At-Sched is the lab's lag.
	Sched, At time.Duration
	Took      time.Duration
	Method    string
	Keyed     bool
	OK        bool
	Status    int    // final status, 0 when no response came
	Outcome   string // "ok", "status 503", "refused", "reset", "deadline", "breaker open", …
	// Held is, for a request answered with a 429 whose Retry-After could
	// not fit before its deadline, how long the client kept that 429
	// before handing it to the caller. A 429 whose hint fits is not held
	// but waited out, as the upstream asked: a client may end that wait
	// early (its breaker opened meanwhile), and hand the 429 over then.
	Held time.Duration
}

// transition is a change of a breaker's state.
type transition struct {
	At   time.Duration `json:"at_ns"` // from the start of the timeline
	From string        `json:"from"`
	To   string        `json:"to"`
}

// recorder collects everything one client did. It is safe for concurrent
// use.
type recorder struct {
	start time.Time

	mu          sync.Mutex
	calls       []call
	attempts    []time.Duration // start of each request on the wire
	ends        []time.Duration // when each was done with (its response read or closed, or no response)
	dials       []time.Duration // each connection opened
	transitions []transition
	answered    map[string]time.Duration // logical id: when its last response came

	conns    atomic.Int64
	refused  atomic.Int64 // attempts whose connection was refused
	cut      atomic.Int64 // attempts cancelled before their response came
	deadline atomic.Int64 // of them, those cancelled by the caller's deadline
	started  atomic.Int64
	done     atomic.Int64
	ok       atomic.Int64
	// Since the last progress line: requests ended, of them successes, and
	// the largest lag of a request's start behind its schedule.
	windowDone, windowOK, windowLag atomic.Int64
	attemptsNumber                  atomic.Int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, answered: make(map[string]time.Duration)}
}

// hintFits reports whether a Retry-After received at answered leaves time
// for a retry before ctx's deadline.
func hintFits(ctx context.Context, retryAfter string, answered time.Time) bool {
	d, ok := httpx.ParseRetryAfter(retryAfter, answered)
	if !ok {
		return true // no hint: nothing to wait for, nothing held for it
	}
	dl, has := ctx.Deadline()
	return !has || answered.Add(d).Before(dl)
}

// answer notes that a response to logical request id came now.
func (r *recorder) answer(id string) {
	at := time.Since(r.start)
	r.mu.Lock()
	r.answered[id] = at
	r.mu.Unlock()
}

func (r *recorder) answeredAt(id string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answered[id]
}

// attempt notes a request sent on the wire; ended must be called once when
// it is done with (its response read to the end or closed, or no response).
func (r *recorder) attempt() {
	at := time.Since(r.start)
	r.attemptsNumber.Add(1)
	r.mu.Lock()
	r.attempts = append(r.attempts, at)
	r.mu.Unlock()
}

func (r *recorder) ended() {
	at := time.Since(r.start)
	r.mu.Lock()
	r.ends = append(r.ends, at)
	r.mu.Unlock()
}

func (r *recorder) conn() {
	at := time.Since(r.start)
	r.conns.Add(1)
	r.mu.Lock()
	r.dials = append(r.dials, at)
	r.mu.Unlock()
}

func (r *recorder) transition(from, to string) {
	at := time.Since(r.start)
	r.mu.Lock()
	r.transitions = append(r.transitions, transition{At: at, From: from, To: to})
	r.mu.Unlock()
}

func (r *recorder) record(c call) {
	r.done.Add(1)
	r.windowDone.Add(1)
	if c.OK {
		r.ok.Add(1)
		r.windowOK.Add(1)
	}
	lag := int64(c.At - c.Sched)
	for {
		old := r.windowLag.Load()
		if lag <= old || r.windowLag.CompareAndSwap(old, lag) {
			break
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// payload is the body of every POST.
var payload = []byte(`{"item":"demo","quantity":1}`)

// slot returns when caller c starts its k-th logical request (from 0),
// from the start of the run, and false when that is past the end: each
// caller starts one every callers/rate seconds, the callers spread evenly
// over that interval.
func slot(cfg *config, c, k int) (time.Duration, bool) {
	interval := time.Duration(float64(cfg.callers) * float64(time.Second) / cfg.rate)
	at := interval*time.Duration(c)/time.Duration(cfg.callers) + time.Duration(k)*interval
	return at, at < cfg.duration
}

// planned returns how many logical requests the schedule starts in each
// span before cutoff: what every client is given to do.
func planned(cfg *config, sp spans, cutoff time.Duration) []int {
	n := make([]int, len(sp))
	for c := range cfg.callers {
		for k := 0; ; k++ {
			at, ok := slot(cfg, c, k)
			if !ok || at >= cutoff {
				break
			}
			n[sp.index(at)]++
		}
	}
	return n
}

// runLoad drives cfg.callers callers through do for the whole run. Each
// caller starts a logical request at each of its slots, whether or not its
// earlier requests have ended.
//
// Decision: the load is open (requests arrive at a fixed rate, as users'
// do) rather than closed (each caller waiting for its answer before the
// next). A closed loop would send fewer requests through a client that is
// slow to fail, such as a retry loop in an outage, and make the clients'
// success rates incomparable; open, every client gets the same logical
// requests (ids, methods, start times), drawn from the seed. It returns
// when every request has ended.
//
// Decision: a caller that wakes up late (the machine is busy) sends what it
// owes at once rather than skipping it, so that no request is lost; each
// request records how late it started (its lag), and the run's fidelity
// (fidelity.go) judges whether the lab kept to its schedule.
func runLoad(ctx context.Context, cfg *config, base string, do doFunc, rec *recorder) {
	var wg sync.WaitGroup
	for c := range cfg.callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(c)))
			t := time.NewTimer(time.Hour)
			defer t.Stop()
			for k := 0; ; k++ {
				next, ok := slot(cfg, c, k)
				if !ok {
					return
				}
				t.Reset(time.Until(rec.start.Add(next)))
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if cfg.stall != nil {
					cfg.stall(c, k)
				}
				u := rng.Float64()
				method, keyed := http.MethodGet, false
				switch {
				case u < cfg.posts:
					method, keyed = http.MethodPost, true
				case u < cfg.posts+cfg.unkeyed:
					method = http.MethodPost
				}
				id := fmt.Sprintf("c%d-%d", c, k+1)
				wg.Go(func() { one(ctx, cfg, base, do, rec, id, method, keyed, next) })
			}
		})
	}
	wg.Wait()
}

// logicalKey is the context key under which a logical request's context
// carries itself, so that the transport can tell an attempt cut by the
// caller's deadline from one the client cut itself (a hedge that lost).
type logicalKey struct{}

// one sends one logical request, due at sched, and records it.
func one(ctx context.Context, cfg *config, base string, do doFunc, rec *recorder, id, method string, keyed bool, sched time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, logicalKey{}, ctx)
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/items/"+id, body)
	if err != nil {
		panic(err) // the URL was validated
	}
	req.Header.Set(chaos.RequestIDHeader, id)
	if keyed {
		req.Header.Set("Idempotency-Key", id)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	c := call{Sched: sched, At: t0.Sub(rec.start), Method: method, Keyed: keyed}
	rec.started.Add(1)
	resp, err := do(req)
	if err == nil {
		c.Status = resp.StatusCode
		if c.Status == http.StatusTooManyRequests {
			answered := rec.answeredAt(id)
			if !hintFits(ctx, resp.Header.Get("Retry-After"), rec.start.Add(answered)) {
				c.Held = max(0, time.Since(rec.start)-answered)
			}
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.Took = time.Since(t0)
	switch {
	case err != nil:
		c.Outcome = outcomeOf(err)
	case c.Status >= 200 && c.Status < 300:
		c.OK, c.Outcome = true, "ok"
	default:
		c.Outcome = fmt.Sprintf("status %d", c.Status)
	}
	rec.record(c)
}

// progress prints a live line every period until ctx is done: the time
// elapsed and the span in progress, then what each client's requests that
// ended in the last period did, and a warning when the lab fell behind its
// schedule in that period.
//
//	12.0s/23s  now: throttling  |  last 2.0s (brownout→throttling), requests ended, ok: plain 200 93% · httpx 200 100%
func progress(ctx context.Context, w io.Writer, tty bool, sp spans, names []string, recs []*recorder, probe *schedProbe, start time.Time) {
	period := 250 * time.Millisecond
	if !tty {
		period = 2 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	prev := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		case <-t.C:
		}
		el := time.Since(start)
		line := progressLine(sp, names, recs, probe, prev, el)
		prev = el
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
		} else {
			fmt.Fprintf(w, "%s\n", line)
		}
	}
}

// progressLine is one line of progress at el, about the window since prev;
// it takes (and resets) the window's counters.
func progressLine(sp spans, names []string, recs []*recorder, probe *schedProbe, prev, el time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs/%.0fs  now: %-10s |  last %.1fs", el.Seconds(), sp.total().Seconds(), sp[sp.index(el)].Name, (el - prev).Seconds())
	if from, to := sp.index(prev), sp.index(max(prev, el-1)); from == to {
		fmt.Fprintf(&b, " (%s)", sp[from].Name)
	} else {
		fmt.Fprintf(&b, " (%s→%s)", sp[from].Name, sp[to].Name)
	}
	b.WriteString(", requests ended, ok:")
	lag := probe.takeWindow()
	for i, r := range recs {
		d, ok := r.windowDone.Swap(0), r.windowOK.Swap(0)
		lag = max(lag, time.Duration(r.windowLag.Swap(0)))
		rate := "   -"
		if d > 0 {
			rate = fmt.Sprintf("%3.0f%%", 100*float64(ok)/float64(d))
		}
		sep := " · "
		if i == 0 {
			sep = " "
		}
		fmt.Fprintf(&b, "%s%s %d %s", sep, names[i], d, rate)
	}
	if lag > tolerance.max {
		fmt.Fprintf(&b, "  |  LAB BEHIND SCHEDULE by up to %s (tolerance %s)", msStr(ms(lag)), msStr(ms(tolerance.max)))
	}
	return b.String()
}
