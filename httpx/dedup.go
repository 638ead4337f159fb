package httpx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/resilient-go/resilient"
)

// DedupMaxBody is the largest response body that deduplicated requests
// share (see [WithDedup]): 1 MiB. A longer response is not shared; each
// caller that waited for it sends its own request instead.
const DedupMaxBody = 1 << 20

// dedupHeaders are the request headers that the default key of [WithDedup]
// includes, besides the method and the URL: the credentials (so that
// requests of different users or sessions are never merged) and the
// headers that choose which representation, or which part of it, the
// server returns.
var dedupHeaders = [...]string{
	"Authorization", "Cookie", "Proxy-Authorization",
	"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
	"Accept", "Accept-Encoding", "Accept-Language",
}

// DefaultDedupKey is the key [WithDedup] uses with a nil key function: the
// request's Host override, if any, and the values of Authorization,
// Cookie, Proxy-Authorization, Range, If-Range, If-None-Match,
// If-Modified-Since, If-Match, If-Unmodified-Since, Accept,
// Accept-Encoding and Accept-Language. Two requests with different
// credentials never share a key.
func DefaultDedupKey(req *http.Request) string {
	var b strings.Builder
	b.WriteString(req.Host)
	for _, h := range dedupHeaders {
		b.WriteByte(0)
		for i, v := range req.Header.Values(h) {
			if i > 0 {
				b.WriteByte(1)
			}
			b.WriteString(v)
		}
	}
	return b.String()
}

// WithDedup makes concurrent identical GET and HEAD requests share one
// execution: while a request is in flight (with its retries), another one
// with the same method, URL and key(req) waits for its result instead of
// being sent. Each waiter gets a response of its own, with its own copy
// of the headers and its own reader of the body; the body, at most
// [DedupMaxBody] bytes, is read into memory once and shared read-only. A
// longer response is not shared: each waiter then sends its own request.
//
// Each waiter waits on its own request's context and may leave at any time
// without disturbing the others; the shared execution runs with the values
// of the first request's context but not its cancellation, and is
// cancelled once no waiter is left (see [resilient.Group]).
//
// key must never map requests that may receive different responses to one
// key: include every header that selects the user or the representation.
// Nil means [DefaultDedupKey]. Requests with a body, and of other methods,
// are never deduplicated. Default: off.
func WithDedup(key func(*http.Request) string) Option {
	return optionFunc(func(c *config) error {
		if key == nil {
			key = DefaultDedupKey
		}
		c.dedup = &dedup{key: key}
		return nil
	})
}

// dedup is a Transport's deduplication state.
type dedup struct {
	key   func(*http.Request) string
	group resilient.Group[string, *shared]
}

// shared is the result of a shared execution, read-only once made.
type shared struct {
	resp    *http.Response // body replaced by body
	body    []byte
	tooLong bool
}

// errTooLong ends a shared execution whose body was too long to share.
var errTooLong = errors.New("resilient/httpx: response too long to share")

func dedupable(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == "") &&
		(req.Body == nil || req.Body == http.NoBody)
}

// roundTripShared sends req through the group, or joins the execution in
// flight for its key.
func (t *Transport) roundTripShared(req *http.Request, cfg *config) (*http.Response, error) {
	d := cfg.dedup
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	key := method + " " + req.URL.String() + "\x00" + d.key(req)
	s, err := d.group.Do(req.Context(), key, func(ctx context.Context) (*shared, error) {
		resp, err := t.roundTrip(req.WithContext(ctx), cfg)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, DedupMaxBody+1))
		if err != nil {
			return nil, err
		}
		if len(body) > DedupMaxBody {
			return &shared{tooLong: true}, errTooLong
		}
		r := *resp
		r.Body = nil
		return &shared{resp: &r, body: body}, nil
	})
	if errors.Is(err, errTooLong) && s != nil && s.tooLong {
		return t.roundTrip(req, cfg)
	}
	if err != nil {
		return nil, err
	}
	resp := *s.resp
	resp.Header = s.resp.Header.Clone()
	resp.Trailer = s.resp.Trailer.Clone()
	resp.Body = io.NopCloser(bytes.NewReader(s.body))
	if method != http.MethodHead {
		resp.ContentLength = int64(len(s.body))
	}
	resp.Request = req
	return &resp, nil
}
