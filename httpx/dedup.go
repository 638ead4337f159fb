package httpx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/resilient-go/resilient"
)

// DedupMaxBody is the largest response body that deduplicated requests
// share (see [WithDedup]): 1 MiB. A longer response is not shared; each
// caller that waited for it sends its own request instead.
const DedupMaxBody = 1 << 20

// dedupIgnored are the headers the default key of [WithDedup] leaves out,
// lower case: per-request tracing headers, which carry a new value on
// every request and would otherwise make every key unique. No server
// chooses a response by them.
var dedupIgnored = []string{
	"traceparent", "tracestate", "baggage", // W3C Trace Context and Baggage
	"x-request-id",
	"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", // Zipkin B3
}

// DefaultDedupKey is the key [WithDedup] uses with a nil key function: the
// request's Host override, if any, and every header of the request, names
// compared case-insensitively (a key set directly in the map, such as
// req.Header["authorization"], counts like its canonical form), values in
// the order they are sent. Only per-request tracing headers are left out:
// traceparent, tracestate, baggage, X-Request-Id and the B3 headers (b3,
// X-B3-TraceId, X-B3-SpanId, X-B3-ParentSpanId, X-B3-Sampled and
// X-B3-Flags). Two requests share a key only when a server sees the same
// headers in both, but for those: credentials in any header
// (Authorization, Cookie, X-Api-Key, a tenant header, …) never mix.
func DefaultDedupKey(req *http.Request) string {
	return headerKey(req, nil)
}

// DedupKeyIgnoring returns a key function for [WithDedup] that is
// [DefaultDedupKey] leaving out the named headers too (names compared
// case-insensitively), for headers that change on every request but do
// not change the response, such as a client's own timestamp.
//
// The caller takes on what the default key guarantees: requests that
// differ only in the named headers share one response, so a header that
// carries a credential, a tenant or anything else a server may answer by
// must never be named.
func DedupKeyIgnoring(names ...string) func(*http.Request) string {
	ignore := make([]string, len(names))
	for i, n := range names {
		ignore[i] = strings.ToLower(n)
	}
	return func(req *http.Request) string { return headerKey(req, ignore) }
}

// headerKey builds a dedup key from req's Host and headers, leaving out
// dedupIgnored and ignore (both lower case). Every part is written with its
// length first, so no content, however hostile, can make two different
// requests write the same key.
func headerKey(req *http.Request, ignore []string) string {
	type field struct{ lower, name string }
	fields := make([]field, 0, len(req.Header))
	for name, values := range req.Header {
		if len(values) == 0 {
			continue // not sent
		}
		lower := strings.ToLower(name)
		if slices.Contains(dedupIgnored, lower) || slices.Contains(ignore, lower) {
			continue
		}
		fields = append(fields, field{lower, name})
	}
	// Spellings of one name are grouped, in the order net/http writes them
	// (sorted by the name as set): a server sees their values in that order.
	slices.SortFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.lower, b.lower); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	var b []byte
	put := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	put(req.Host)
	for i, f := range fields {
		if i == 0 || fields[i-1].lower != f.lower {
			b = append(b, '\n')
			put(f.lower)
		}
		for _, v := range req.Header[f.name] {
			put(v)
		}
	}
	return string(b)
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
// and the deadline of the first request's context but not its
// cancellation, and is cancelled once no waiter is left (see
// [resilient.Group]). Its deadline bounds its waits as a lone request's
// does (a Retry-After that cannot fit it ends the call at once, with the
// response). A waiter that joined with a later deadline and is still
// waiting when that first deadline ends the execution sends its own
// request instead: the deadline of one caller never cuts another short.
//
// Requests share an execution only when their method, URL (user
// information included) and key(req) are equal. Nil means
// [DefaultDedupKey], under which every header but per-request tracing ones
// must be equal too: that key is safe for any header a server may read.
// A key function of your own (or [DedupKeyIgnoring]) is an explicit choice
// to share more: it must never map requests that may receive different
// responses to one key, and that is then yours to ensure. Requests with a
// body, and of other methods, are never deduplicated. Default: off.
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
	end     error // what a reader gets after body: io.EOF, or ErrBodyTruncated
	tooLong bool
}

// errTooLong ends a shared execution whose body was too long to share.
var errTooLong = errors.New("resilient/httpx: response too long to share")

// endedByDeadline reports whether a shared execution ended because its
// deadline (the first request's) passed.
func endedByDeadline(err error) bool {
	var rerr *resilient.Error
	if errors.As(err, &rerr) {
		return rerr.Reason == resilient.ReasonDeadline
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// timeLeft reports whether ctx has not ended and its deadline, if any, is
// still ahead: the first request itself, whose deadline just passed, has
// none left even before its context's timer has run.
func timeLeft(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > 0
}

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
		if dl, ok := req.Context().Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		resp, err := t.roundTrip(req.WithContext(ctx), cfg)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, DedupMaxBody+1))
		end := error(io.EOF)
		switch {
		case errors.Is(err, ErrBodyTruncated):
			// A retryable response set aside, its body cut: it is the
			// answer all the same, shared as it is, cut and saying so.
			end = err
		case err != nil:
			end = err
		}
		if len(body) > DedupMaxBody {
			return &shared{tooLong: true}, errTooLong
		}
		r := *resp
		r.Body = nil
		return &shared{resp: &r, body: body, end: end}, nil
	})
	if errors.Is(err, errTooLong) && s != nil && s.tooLong {
		return t.roundTrip(req, cfg)
	}
	if err != nil && endedByDeadline(err) && timeLeft(req.Context()) {
		// The first request's deadline ended the execution, and this one
		// has time left: it goes on its own.
		return t.roundTrip(req, cfg)
	}
	if err != nil {
		return nil, err
	}
	resp := *s.resp
	resp.Header = s.resp.Header.Clone()
	resp.Trailer = s.resp.Trailer.Clone()
	resp.Body = &keptBody{data: s.body, err: s.end}
	if method != http.MethodHead && s.end == io.EOF {
		resp.ContentLength = int64(len(s.body))
	}
	resp.Request = req
	return &resp, nil
}
