package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// doFunc sends one logical request and returns its final response.
type doFunc func(*http.Request) (*http.Response, error)

// clientKind is one of the clients the demo compares.
type clientKind struct {
	name  string
	desc  func(cfg *config) string // what it is, flags included
	build func(cfg *config, base http.RoundTripper, rec *recorder) (doFunc, error)
	// library marks the clients built on the library: the targets are
	// theirs. breaker marks those with a breaker: the outage targets apply.
	library, breaker bool
}

func clientNames() []string {
	names := make([]string, len(clientKinds))
	for i, k := range clientKinds {
		names[i] = k.name
	}
	return names
}

func kindOf(name string) clientKind {
	for _, k := range clientKinds {
		if k.name == name {
			return k
		}
	}
	panic("unknown client " + name)
}

// newBase returns the transport under every client: the same pool settings
// for all, a fresh pool per client, and every attempt and connection
// counted in rec.
func newBase(rec *recorder, http2 bool) (*counting, *http.Transport) {
	d := &net.Dialer{Timeout: time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				rec.conn()
			}
			return c, err
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
	if http2 {
		tr.Protocols = http2Only()
	}
	return &counting{base: tr, rec: rec}, tr
}

// http2Only is HTTP/2 and nothing else: negotiated by TLS for https, with
// prior knowledge (h2c) for http.
func http2Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// probeHTTP2 sends one GET to base over HTTP/2 alone, so that -http2
// against a server that does not speak it says so before the run instead
// of failing every request. Any HTTP/2 response will do, whatever its
// status.
func probeHTTP2(ctx context.Context, base string) error {
	tr := &http.Transport{Protocols: http2Only(), DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s does not answer over HTTP/2 (prior knowledge for http://, ALPN for https://): %w; run without -http2 to speak HTTP/1.1", base, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("%s answered over %s, not HTTP/2; run without -http2", base, resp.Proto)
	}
	return nil
}

// counting is the RoundTripper under every client's own logic: each call is
// one request on the wire (or one refused connection).
type counting struct {
	base http.RoundTripper
	rec  *recorder
}

func (c *counting) RoundTrip(req *http.Request) (*http.Response, error) {
	c.rec.attempt()
	resp, err := c.base.RoundTrip(req)
	switch {
	case err == nil:
		c.rec.answer(req.Header.Get(chaos.RequestIDHeader))
		if resp.Body == nil || resp.Body == http.NoBody {
			break // nothing left to read: it holds no connection
		}
		resp.Body = &onEnd{ReadCloser: resp.Body, end: c.rec.ended}
		return resp, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		c.rec.refused.Add(1)
	case req.Context().Err() != nil:
		// Cancelled before its response came (a hedge's loser, a
		// deadline): over HTTP/1.1 that closes its connection.
		c.rec.cut.Add(1)
		if l, ok := req.Context().Value(logicalKey{}).(context.Context); ok && l.Err() != nil {
			c.rec.deadline.Add(1)
		}
	}
	c.rec.ended()
	return resp, err
}

// onEnd calls end once, when its body is read to the end, fails or is
// closed: the request no longer holds its connection.
type onEnd struct {
	io.ReadCloser
	once sync.Once
	end  func()
}

func (b *onEnd) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.end)
	}
	return n, err
}

func (b *onEnd) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.end)
	return err
}

// plain is http.Client as most code uses it: one attempt, the caller's
// deadline as the only limit.
func plain(_ *config, base http.RoundTripper, _ *recorder) (doFunc, error) {
	return (&http.Client{Transport: base}).Do, nil
}

// naive is the retry loop people write by hand: a fixed number of
// attempts and a fixed pause, on any error (the body read included) or any
// 429/5xx, whatever the method; a client timeout per attempt; no jitter, no
// Retry-After, no breaker, no budget.
func naive(_ *config, base http.RoundTripper, _ *recorder) (doFunc, error) {
	const attempts, pause = 4, 100 * time.Millisecond
	c := &http.Client{Transport: base, Timeout: time.Second}
	return func(req *http.Request) (*http.Response, error) {
		for i := 1; ; i++ {
			r := req
			if i > 1 && req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r = req.Clone(req.Context())
				r.Body = body
			}
			resp, err := c.Do(r)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				resp.Body = io.NopCloser(bytes.NewReader(b))
				if err == nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
					return resp, nil
				}
			}
			if i == attempts || req.Context().Err() != nil {
				if err != nil {
					return nil, err
				}
				return resp, nil
			}
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-req.Context().Done():
				t.Stop()
				return nil, req.Context().Err()
			}
		}
	}, nil
}

// clientKinds lists the clients in the order they are reported.
//
// The library's two columns are defined in library.go: httpx is whatever
// httpx.NewClient() does with no options, tuned the setup the README
// recommends for a service (httpx.Recommended). When either changes,
// change its function and its description; the targets follow the flags
// below.
var clientKinds = []clientKind{
	{name: "plain", desc: fixed("net/http Client: one attempt per request"), build: plain},
	{name: "naive", desc: fixed("hand-written loop: 4 attempts 100ms apart, 1s client timeout, any method, no jitter, no Retry-After, no breaker, no budget"), build: naive},
	{name: "httpx", desc: describeHTTPX, build: httpxDefaults, library: true},
	{name: "tuned", desc: describeTuned, build: tuned, library: true, breaker: true},
}

func fixed(desc string) func(*config) string { return func(*config) string { return desc } }

// describeHTTPX says what the httpx client is, -budget included.
func describeHTTPX(cfg *config) string {
	d := "httpx.NewClient(): 4 attempts, exponential backoff from 100ms with full jitter, Retry-After honoured up to 30s, "
	if cfg.budget == budgetAdaptive {
		return d + budgetDescriptions[budgetAdaptive]
	}
	return d + "and " + budgetDescriptions[cfg.budget]
}
