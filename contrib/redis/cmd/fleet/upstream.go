package main

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// mode is what the upstream does with a request.
type mode int32

const (
	healthy mode = iota // 200 at once
	down                // 503 after failLatency: a struggling upstream
	slow                // 200 after slowLatency: back, but slow
)

const (
	failLatency = 100 * time.Millisecond
	slowLatency = 600 * time.Millisecond
)

// arrival is one request as the upstream saw it.
type arrival struct {
	at       time.Time
	inFlight int // requests in flight once it arrived, itself included
}

// upstream is the flaky HTTP upstream every replica calls, on loopback,
// in the parent process: it follows the mode the schedule sets, and
// records when each request arrived and how many were in flight.
type upstream struct {
	srv  *http.Server
	l    net.Listener
	mode atomic.Int32

	inFlight atomic.Int64
	// onSlow is called with each request that arrives in slow mode.
	onSlow func()

	mu       sync.Mutex
	arrivals []arrival
}

func startUpstream() (*upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{l: l}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = u.srv.Serve(l) }()
	return u, nil
}

func (u *upstream) URL() string { return "http://" + u.l.Addr().String() + "/" }

func (u *upstream) set(m mode) { u.mode.Store(int32(m)) }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	u.mu.Lock()
	u.arrivals = append(u.arrivals, arrival{at: time.Now(), inFlight: int(n)})
	onSlow := u.onSlow
	u.mu.Unlock()
	switch mode(u.mode.Load()) {
	case down:
		wait(r, failLatency)
		w.WriteHeader(http.StatusServiceUnavailable)
	case slow:
		if onSlow != nil {
			onSlow()
		}
		wait(r, slowLatency)
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// wait waits d, or less if the caller goes.
func wait(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// reset forgets the arrivals, for a new trial.
func (u *upstream) reset(onSlow func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.arrivals = nil
	u.onSlow = onSlow
}

func (u *upstream) seen() []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.arrivals...)
}

func (u *upstream) close() { _ = u.srv.Close() }
