package redis

import (
	"net"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// faultProxy is a loopback TCP proxy in front of a Redis server that makes
// the faults of the network between replicas and Redis: it forwards
// requests at once (the server runs them), and can delay the replies, hold
// them, or drop every connection. It stops when the test ends.
type faultProxy struct {
	t      testing.TB
	l      net.Listener
	target string

	mu      sync.Mutex
	delays  []time.Duration // before each reply is forwarded, in turn
	replies int             // replies forwarded, or about to be
	held    chan struct{}   // non-nil: replies wait until it is closed
	conns   map[net.Conn]struct{}
	closed  chan struct{}
	workers sync.WaitGroup
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &faultProxy{t: t, l: l, target: target, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	p.workers.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.l.Addr().String() }

// Client returns a client that reaches the server through the proxy,
// closed when the test ends.
func (p *faultProxy) Client(s *redisServer) *goredis.Client {
	o := s.options()
	o.Addr = p.Addr()
	c := goredis.NewClient(o)
	p.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Delays makes the replies wait before they are forwarded: the first one
// ds[0], the next ds[1], and so on, round; none: no delay.
func (p *faultProxy) Delays(ds ...time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delays = ds
}

// Replies returns how many replies the proxy has received from the server.
func (p *faultProxy) Replies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replies
}

// Hold keeps every reply from now on until Release: the server runs the
// requests, and their callers time out waiting.
func (p *faultProxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Release lets held replies through (to callers that may have gone).
func (p *faultProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Drop closes every connection open through the proxy.
func (p *faultProxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *faultProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.workers.Go(func() { p.pipe(s, c, false) })
		p.workers.Go(func() { p.pipe(c, s, true) })
	}
}

// pipe copies from src to dst until either fails, then closes both.
// Replies (server to client) go through the faults.
func (p *faultProxy) pipe(dst, src net.Conn, replies bool) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && replies && !p.fault() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// fault applies the reply faults in force; false means the proxy closed.
func (p *faultProxy) fault() bool {
	p.mu.Lock()
	var d time.Duration
	if len(p.delays) > 0 {
		d = p.delays[p.replies%len(p.delays)]
	}
	p.replies++
	held := p.held
	p.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-p.closed:
			return false
		}
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.closed:
			return false
		}
	}
	return true
}

func (p *faultProxy) close() {
	_ = p.l.Close()
	close(p.closed)
	p.Drop()
	done := make(chan struct{})
	go func() {
		p.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("the fault proxy's goroutines did not stop within 10s")
	}
}
