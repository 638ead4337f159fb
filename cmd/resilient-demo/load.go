package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// call is one logical request, as its caller saw it.
type call struct {
	At      time.Duration // start, from the start of the timeline
	Took    time.Duration
	Method  string
	Keyed   bool
	OK      bool
	Status  int    // final status, 0 when no response came
	Outcome string // "ok", "status 503", "refused", "reset", "deadline", "breaker open", …
	// Held is, for a request answered with a 429, how long the client
	// kept that 429 before handing it to the caller.
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
	transitions []transition
	answered    map[string]time.Duration // logical id: when its last response came

	conns          atomic.Int64
	refused        atomic.Int64 // attempts whose connection was refused
	cut            atomic.Int64 // attempts cancelled before their response came
	started, done  atomic.Int64
	ok             atomic.Int64
	windowDone     atomic.Int64 // since the last progress line
	windowOK       atomic.Int64
	attemptsNumber atomic.Int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, answered: make(map[string]time.Duration)}
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

func (r *recorder) attempt() {
	at := time.Since(r.start)
	r.attemptsNumber.Add(1)
	r.mu.Lock()
	r.attempts = append(r.attempts, at)
	r.mu.Unlock()
}

func (r *recorder) conn() { r.conns.Add(1) }

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
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// payload is the body of every POST.
var payload = []byte(`{"item":"demo","quantity":1}`)

// runLoad drives cfg.callers callers through do for the whole timeline.
// Each caller starts a logical request every callers/rate seconds, on a
// fixed schedule, whether or not its earlier requests have ended.
//
// Decision: the load is open (requests arrive at a fixed rate, as users'
// do) rather than closed (each caller waiting for its answer before the
// next). A closed loop would send fewer requests through a client that is
// slow to fail, such as a retry loop in an outage, and make the clients'
// success rates incomparable; open, every client gets the same logical
// requests (ids, methods, start times), drawn from the seed. It returns
// when every request has ended.
func runLoad(ctx context.Context, cfg *config, base string, do doFunc, rec *recorder) {
	interval := time.Duration(float64(cfg.callers) * float64(time.Second) / cfg.rate)
	end := cfg.timeline.Total()
	var wg sync.WaitGroup
	for c := range cfg.callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.seed, uint64(c)))
			offset := interval * time.Duration(c) / time.Duration(cfg.callers)
			t := time.NewTimer(0)
			defer t.Stop()
			<-t.C
			for k := 0; ; k++ {
				next := offset + time.Duration(k)*interval
				if next >= end {
					return
				}
				t.Reset(time.Until(rec.start.Add(next)))
				select {
				case <-ctx.Done():
					return
				case <-t.C:
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
				wg.Go(func() { one(ctx, cfg, base, do, rec, id, method, keyed) })
			}
		})
	}
	wg.Wait()
}

// one sends one logical request and records it.
func one(ctx context.Context, cfg *config, base string, do doFunc, rec *recorder, id, method string, keyed bool) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
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
	c := call{At: t0.Sub(rec.start), Method: method, Keyed: keyed}
	rec.started.Add(1)
	resp, err := do(req)
	if err == nil {
		c.Status = resp.StatusCode
		if c.Status == http.StatusTooManyRequests {
			c.Held = max(0, time.Since(rec.start)-rec.answeredAt(id))
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

// progress prints a live line every period until ctx is done.
func progress(ctx context.Context, w io.Writer, tty bool, cfg *config, names []string, recs []*recorder, start time.Time) {
	period := 250 * time.Millisecond
	if !tty {
		period = 2 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
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
		p := cfg.timeline[cfg.timeline.Index(el)]
		var b bytes.Buffer
		fmt.Fprintf(&b, "%-10s %5.1fs/%.0fs", p.Kind, el.Seconds(), cfg.timeline.Total().Seconds())
		for i, r := range recs {
			d, ok := r.windowDone.Swap(0), r.windowOK.Swap(0)
			rate := "    -"
			if d > 0 {
				rate = fmt.Sprintf("%4.0f%%", 100*float64(ok)/float64(d))
			}
			fmt.Fprintf(&b, " | %s %d req %s", names[i], r.done.Load(), rate)
		}
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", b.Bytes())
		} else {
			fmt.Fprintf(w, "%s\n", b.Bytes())
		}
	}
}
