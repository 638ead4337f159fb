package chaos

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RequestIDHeader carries a request's logical id: every attempt (retry,
// hedge) of one logical request carries the same id. The upstream draws its
// faults per id and arrival, remembers the Retry-After it gave to an id, and
// tells a POST received twice from one executed twice. A request without an
// id gets a fresh one.
const RequestIDHeader = "X-Request-Id"

// PhaseStats counts what happened during one phase. Requests are counted in
// the phase in which they arrived.
type PhaseStats struct {
	Phase Phase
	// Received is every request that reached the handler.
	Received int
	// Executed is every request whose work was done (a POST's side effect
	// happened), even if its response was then delayed or cut.
	Executed int
	// Replayed is every POST answered from an earlier execution with the
	// same Idempotency-Key, without executing it again.
	Replayed int
	// Duplicates is every execution of a non-idempotent request that had
	// already been executed: a POST without an Idempotency-Key received
	// again with the same logical id (or, with
	// [Config.IgnoreIdempotencyKeys], with the same key).
	Duplicates int
	// EarlyRetries is every request that came back sooner than the
	// Retry-After the upstream gave to the same logical id allowed.
	EarlyRetries int
	// Connections is every connection accepted.
	Connections int
	// Responses by what the upstream did.
	OK, Unavailable, Throttled, Spikes, SlowHeaders, Resets, Down int
}

// Stats is a snapshot of an upstream's counters, per phase and in all.
type Stats struct {
	Phases []PhaseStats
	Total  PhaseStats // Phase is the zero Phase
}

// Upstream is a flaky HTTP upstream that runs a [Timeline] of phases from
// the moment it is built (or started) and injects faults decided by its
// [Config]. It is an http.Handler, safe for concurrent use; [Upstream.Start]
// serves it on loopback.
//
// Reset faults, and requests that reach it during a refusing outage,
// abort the connection by panicking with http.ErrAbortHandler, as net/http
// handlers do; when the connection is known (the upstream serves it), it is
// reset (RST) rather than closed.
type Upstream struct {
	cfg  Config
	body []byte

	mu     sync.Mutex
	start  time.Time
	phases []PhaseStats
	ids    map[string]*idState
	keys   map[string]int // executions per Idempotency-Key
	seq    uint64

	// Serving, when started.
	srv     *http.Server
	addr    string
	ln      net.Listener // nil while refusing
	conns   map[net.Conn]struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	started bool
	closed  bool
}

type idState struct {
	n         int       // arrivals
	executed  int       // executions of a non-idempotent request
	notBefore time.Time // from the last Retry-After given
}

type connKey struct{}

// New builds an upstream from cfg and starts its phase clock. It does not
// listen: use it as a handler, or call [Upstream.Start].
func New(cfg Config) (*Upstream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Timeline = append(Timeline(nil), cfg.Timeline...)
	cfg.RetryAfter = append([]time.Duration(nil), cfg.RetryAfter...)
	u := &Upstream{
		cfg:    cfg,
		body:   make([]byte, cfg.BodySize),
		start:  time.Now(),
		phases: make([]PhaseStats, len(cfg.Timeline)),
		ids:    make(map[string]*idState),
		keys:   make(map[string]int),
		conns:  make(map[net.Conn]struct{}),
		done:   make(chan struct{}),
	}
	for i := range u.body {
		u.body[i] = 'a' + byte(i%26)
	}
	for i, p := range cfg.Timeline {
		u.phases[i].Phase = p
	}
	return u, nil
}

// Config returns the upstream's configuration.
func (u *Upstream) Config() Config { return u.cfg }

// Started returns the moment the timeline started.
func (u *Upstream) Started() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.start
}

// Start listens on a free loopback port, restarts the phase clock and serves
// until [Upstream.Close]. During a refusing outage the listener is closed and
// every open connection reset; it listens again on the same port when the
// outage ends.
func (u *Upstream) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	u.mu.Lock()
	if u.started || u.closed {
		u.mu.Unlock()
		ln.Close()
		return errors.New("chaos: Start: upstream already started or closed")
	}
	u.started = true
	u.addr = ln.Addr().String()
	u.srv = &http.Server{
		Handler:     u,
		ErrorLog:    log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ConnState:   u.connState,
	}
	if u.cfg.HTTP2 {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		u.srv.Protocols = &p
	}
	u.start = time.Now()
	u.ln = ln
	u.serve(ln)
	u.wg.Add(1)
	u.mu.Unlock()
	go u.run()
	return nil
}

// URL returns the base URL, such as "http://127.0.0.1:41234", once started.
func (u *Upstream) URL() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.addr == "" {
		return ""
	}
	return "http://" + u.addr
}

// Close stops serving: it closes the listener and every connection, and
// returns once every goroutine the upstream started has ended. The counters
// stay readable.
func (u *Upstream) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	close(u.done)
	srv := u.srv
	u.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	u.wg.Wait()
	return err
}

// serve runs srv.Serve on ln; u.mu is held.
func (u *Upstream) serve(ln net.Listener) {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		_ = u.srv.Serve(ln)
	}()
}

// run drives the listener through the timeline: closed during a refusing
// outage, open otherwise.
func (u *Upstream) run() {
	defer u.wg.Done()
	if u.cfg.Outage != Refuse {
		return
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, p := range u.cfg.Timeline {
		timer.Reset(time.Until(u.start.Add(u.cfg.Timeline.Start(i))))
		select {
		case <-u.done:
			return
		case <-timer.C:
		}
		if p.Kind == Outage {
			u.refuse()
		} else {
			u.listen()
		}
	}
}

// refuse closes the listener and resets every open connection.
func (u *Upstream) refuse() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ln == nil || u.closed {
		return
	}
	u.ln.Close()
	u.ln = nil
	for c := range u.conns {
		reset(c)
	}
}

// listen listens again on the upstream's address, if it is not listening.
func (u *Upstream) listen() {
	for try := 0; ; try++ {
		u.mu.Lock()
		if u.ln != nil || u.closed {
			u.mu.Unlock()
			return
		}
		ln, err := net.Listen("tcp", u.addr)
		if err == nil {
			u.ln = ln
			u.serve(ln)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
		// The port may be held for a moment by the connections just reset.
		if try == 100 {
			return
		}
		select {
		case <-u.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (u *Upstream) connState(c net.Conn, s http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch s {
	case http.StateNew:
		u.phases[u.index(time.Now())].Connections++
		u.conns[c] = struct{}{}
		if u.ln == nil && !u.closed {
			// Accepted just as the outage began.
			reset(c)
		}
	case http.StateClosed, http.StateHijacked:
		delete(u.conns, c)
	}
}

// reset closes c with an RST rather than a FIN, as a crashed server would.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// index returns the phase in progress at now; u.mu is held.
func (u *Upstream) index(now time.Time) int {
	return u.cfg.Timeline.Index(now.Sub(u.start))
}

// Phase returns the index and the phase in progress now.
func (u *Upstream) Phase() (int, Phase) {
	u.mu.Lock()
	defer u.mu.Unlock()
	i := u.index(time.Now())
	return i, u.cfg.Timeline[i]
}

// Stats returns a snapshot of the counters.
func (u *Upstream) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := Stats{Phases: append([]PhaseStats(nil), u.phases...)}
	for _, p := range u.phases {
		t := &s.Total
		t.Received += p.Received
		t.Executed += p.Executed
		t.Replayed += p.Replayed
		t.Duplicates += p.Duplicates
		t.EarlyRetries += p.EarlyRetries
		t.Connections += p.Connections
		t.OK += p.OK
		t.Unavailable += p.Unavailable
		t.Throttled += p.Throttled
		t.Spikes += p.Spikes
		t.SlowHeaders += p.SlowHeaders
		t.Resets += p.Resets
		t.Down += p.Down
	}
	return s
}

// idempotent reports whether method may be executed twice (RFC 9110).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// ServeHTTP serves one request according to the phase in progress and the
// fault schedule.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	// The request body is read whole before anything else, as a server
	// that parses it would.
	_, _ = io.Copy(io.Discard, r.Body)
	id := r.Header.Get(RequestIDHeader)
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = r.Header.Get("X-Idempotency-Key")
	}

	u.mu.Lock()
	pi := u.index(now)
	ps := &u.phases[pi]
	ps.Received++
	if id == "" {
		u.seq++
		id = "#" + strconv.FormatUint(u.seq, 10)
	}
	st := u.ids[id]
	if st == nil {
		st = &idState{}
		u.ids[id] = st
	}
	st.n++
	n := st.n
	early := now.Before(st.notBefore)
	if early {
		ps.EarlyRetries++
	}
	d := u.cfg.Decide(pi, id, n)
	if early && d.Fault != Throttled && u.cfg.Timeline[pi].Kind == Throttling {
		// Decision: as rate limiters do, a request that comes back sooner
		// than it was told is throttled again, whatever its draw, with the
		// shortest hint, in seconds.
		d = Decision{Fault: Throttled, RetryAfter: u.cfg.RetryAfter[0]}
	}
	switch d.Fault {
	case Down:
		ps.Down++
	case Unavailable:
		ps.Unavailable++
	case Throttled:
		ps.Throttled++
		st.notBefore = notBefore(now, d)
	default:
		// Executed: the work is done before any delay, so a response that
		// arrives late (or never) still had its side effect.
		replay := false
		switch {
		case idempotent(r.Method):
			ps.Executed++
		case key != "" && !u.cfg.IgnoreIdempotencyKeys:
			if u.keys[key] > 0 {
				replay = true
				ps.Replayed++
			} else {
				u.keys[key]++
				ps.Executed++
			}
		default:
			// Not idempotent and not protected by a key the upstream
			// honours: a second execution is a duplicate.
			ps.Executed++
			var execs int
			if key != "" {
				u.keys[key]++
				execs = u.keys[key]
			} else {
				st.executed++
				execs = st.executed
			}
			if execs > 1 {
				ps.Duplicates++
			}
		}
		switch {
		case replay:
			d = Decision{} // a stored response is served as is
		case d.Fault == Spike:
			ps.Spikes++
		case d.Fault == SlowHeaders:
			ps.SlowHeaders++
		case d.Fault == Reset:
			ps.Resets++
		}
		if d.Fault != Reset {
			ps.OK++
		}
	}
	u.mu.Unlock()

	switch d.Fault {
	case Down:
		if u.cfg.Outage == Fail503 {
			u.fail(w, r, http.StatusServiceUnavailable, "")
			return
		}
		abort(r)
	case Unavailable:
		u.fail(w, r, http.StatusServiceUnavailable, "")
		return
	case Throttled:
		u.fail(w, r, http.StatusTooManyRequests, retryAfter(now, d))
		return
	}
	if !sleep(r.Context(), u.cfg.Latency+d.Delay) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(u.body)))
	w.WriteHeader(http.StatusOK)
	if d.Fault == Reset {
		_, _ = w.Write(u.body[:len(u.body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		abort(r)
	}
	_, _ = w.Write(u.body)
}

func (u *Upstream) fail(w http.ResponseWriter, r *http.Request, code int, after string) {
	if !sleep(r.Context(), u.cfg.Latency) {
		return
	}
	if after != "" {
		w.Header().Set("Retry-After", after)
	}
	http.Error(w, http.StatusText(code), code)
}

// notBefore is the earliest moment a retry of a request throttled at now
// with decision d is allowed.
func notBefore(now time.Time, d Decision) time.Time {
	if d.HTTPDate {
		return dateAfter(now, d.RetryAfter)
	}
	return now.Add(d.RetryAfter.Round(time.Second))
}

// dateAfter is now+d rounded up to a whole second: an HTTP-date cannot say
// less, and must not allow a retry sooner than d.
func dateAfter(now time.Time, d time.Duration) time.Time {
	t := now.Add(d)
	if tt := t.Truncate(time.Second); !tt.Equal(t) {
		t = tt.Add(time.Second)
	}
	return t
}

func retryAfter(now time.Time, d Decision) string {
	if d.HTTPDate {
		return dateAfter(now, d.RetryAfter).UTC().Format(http.TimeFormat)
	}
	return strconv.Itoa(int(d.RetryAfter.Round(time.Second) / time.Second))
}

// abort ends the request by dropping its connection: reset when the
// connection is known.
func abort(r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	panic(http.ErrAbortHandler)
}

// sleep waits d, or less if ctx ends first (then false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
