package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/resilient-go/resilient/chaos"
)

// doFunc sends one logical request and returns its final response.
type doFunc func(*http.Request) (*http.Response, error)

// clientKind is one of the clients the demo compares.
type clientKind struct {
	name, desc string
	build      func(cfg *config, base http.RoundTripper, rec *recorder) (doFunc, error)
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
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
	}
	return &counting{base: tr, rec: rec}, tr
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
	case errors.Is(err, syscall.ECONNREFUSED):
		c.rec.refused.Add(1)
	case req.Context().Err() != nil:
		// Cancelled before its response came (a hedge's loser, a
		// deadline): over HTTP/1.1 that closes its connection.
		c.rec.cut.Add(1)
	}
	return resp, err
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
var clientKinds = []clientKind{
	{"plain", "net/http Client: one attempt per request", plain},
	{"naive", "hand-written loop: 4 attempts 100ms apart, 1s client timeout, any method, no jitter, no Retry-After, no breaker, no budget", naive},
	{"httpx", "the library's httpx client with its defaults: 4 attempts, exponential backoff with full jitter, Retry-After honoured", httpxDefaults},
	{"tuned", "httpx with a breaker, a retry budget (30%) and hedging (see -hedge)", tuned},
}
