package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/resilient-go/resilient"
)

// Transport is an [http.RoundTripper] that sends each request through a
// retry policy: it retries what is safe to retry (see the package doc for
// the rules and defaults), replays request bodies (through GetBody, or a
// stream's bounded replay buffer: see [WithReplayLimit]), sets
// every retryable response aside within bounds (see [DrainLimit]) so that
// neither a connection nor a stalled body is held across a wait, and
// returns the last response itself (with err == nil, as a plain
// http.Client would) when the retries run out.
//
// The zero Transport is ready to use, with the default policy and
// [http.DefaultTransport]; [NewTransport] builds one with options. Each
// Transport keeps per-host state of its own (the default policy's retry
// budgets, see [WithHostPolicies]), so it must not be copied once in use.
// A Transport is safe for concurrent use; do not change Base once it is in
// use. It never modifies the caller's request and always closes its body.
type Transport struct {
	// Base sends each attempt. Nil means http.DefaultTransport.
	Base http.RoundTripper

	cfg *config // nil: the zero Transport's, in lazy
	// lazy is the zero Transport's configuration, built on its first use:
	// each Transport has per-host state (budgets) of its own.
	lazy atomic.Pointer[config]
}

// NewTransport builds a Transport. Without options it uses the default
// policy (see the package doc) over http.DefaultTransport. An invalid
// option is an error that names it, and nothing is built.
func NewTransport(opts ...Option) (*Transport, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Transport{Base: cfg.base, cfg: cfg}, nil
}

func (t *Transport) config() *config {
	if t.cfg != nil {
		return t.cfg
	}
	if c := t.lazy.Load(); c != nil {
		return c
	}
	c, err := newConfig(nil)
	if err != nil {
		c = &config{err: err} // not reached: the defaults are valid
	}
	if t.lazy.CompareAndSwap(nil, c) {
		return c
	}
	return t.lazy.Load()
}

func (t *Transport) base() http.RoundTripper {
	if t.Base == nil {
		return http.DefaultTransport
	}
	return t.Base
}

// CloseIdleConnections closes the idle connections of the base
// RoundTripper, if it has such a method (http.Transport does). On a nil
// Transport it does nothing.
func (t *Transport) CloseIdleConnections() {
	if t == nil {
		return
	}
	if ci, ok := t.base().(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as the Transport's policy allows. It
// returns a response whenever one came, with a nil error, even when its
// status was retryable and the retries ran out (its body as kept, see
// [ErrBodyTruncated], for the caller to read and close); an error only
// when no response came: the error is then a [*resilient.Error] that
// wraps the last attempt's error and tells why the Transport stopped.
//
// A nil Transport, like a nil req, is an error (for a nil Transport,
// [ErrNilTransport]), never a panic; req's body is closed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrInvalidRequest)
	}
	if t == nil {
		closeRequestBody(req)
		return nil, ErrNilTransport
	}
	cfg := t.config()
	if cfg.err != nil {
		closeRequestBody(req)
		return nil, cfg.err
	}
	if err := validate(req); err != nil {
		// Decision: a request that cannot be sent is refused here, once,
		// without an attempt: every attempt would fail the same way, and
		// no policy should count it against the upstream.
		closeRequestBody(req)
		return nil, err
	}
	if cfg.dedup != nil && dedupable(req) {
		return t.roundTripShared(req, cfg)
	}
	return t.roundTrip(req, cfg)
}

// roundTrip sends one request with retries.
func (t *Transport) roundTrip(req *http.Request, cfg *config) (*http.Response, error) {
	ex, once, err := cfg.policy(req.URL.Host)
	if err != nil {
		closeRequestBody(req)
		return nil, err
	}
	c := &roundTrip{cfg: cfg, base: t.base(), req: req, tmpl: req}
	c.plan()
	// DoHedged is Do for an executor that does not hedge; with one that
	// does, it races slow attempts (see the hedging notes in attempt).
	if !c.retry || c.body != nil {
		// Never hedged: not safe to repeat, or a stream that can feed one
		// attempt at a time.
		ex = once
	}
	resp, err := resilient.DoHedged(req.Context(), c.attempt, ex)
	switch {
	case c.body != nil:
		c.body.end() // closes the caller's body, now or once sent
	case !c.sent.Load():
		// Refused before the first attempt was sent (a done context, an
		// open breaker): the body was never handed to the base, so close
		// it here, as the RoundTripper contract requires.
		closeRequestBody(req)
	}
	if resp != nil {
		// Decision: plain http.Client semantics. A response that came is
		// the truth about the call, whatever its status: the caller gets
		// it, and no error. The executor returns the last response when
		// it stops for any reason after it (attempts exhausted, a
		// permanent status, a Retry-After beyond the cap or the deadline,
		// a refused retry), and nil when the context ended the call
		// during a wait.
		return resp, nil
	}
	return nil, err
}

// errUnsafeToRepeat is the error of an attempt the Transport refused to
// send because the request may not be repeated.
var errUnsafeToRepeat = errors.New("resilient/httpx: request not sent again: it is not safe to repeat")

// roundTrip is the state of one RoundTrip call: one logical request, made
// of one or more attempts.
type roundTrip struct {
	cfg  *config
	base http.RoundTripper
	req  *http.Request // the caller's, never modified
	tmpl *http.Request // req, or a clone carrying a generated idempotency key
	n    atomic.Int32  // attempts started; a hedging executor runs them at once
	// resend is set when an attempt failed in a way that proves it was
	// never sent, which makes one more attempt safe; that attempt takes it.
	resend atomic.Bool
	// sent is set when the caller's body is handed to the base, which
	// then owns it.
	sent atomic.Bool

	// retry: the request may be sent again after any failure.
	// neverSent: it may be sent again after a failure that proves it never
	// left (see NeverSent). Neither holds for a body that cannot be
	// replayed.
	retry, neverSent bool
	// body tees a body without GetBody for replay (see WithReplayLimit);
	// nil for every other request.
	body *replay
}

// plan decides, once per request, what may be retried.
func (c *roundTrip) plan() {
	req := c.req
	// Decision: only http and https requests are retried. For other
	// schemes (a protocol registered on the base transport, or a typo) we
	// cannot tell a refused request from one that ran, so it is sent once.
	scheme := req.URL.Scheme
	if scheme != "http" && scheme != "https" {
		return
	}
	stream := req.Body != nil && req.Body != http.NoBody && req.GetBody == nil
	if stream && c.cfg.replayLimit == 0 {
		return // sent once: see WithReplayLimit
	}
	c.neverSent = true
	switch {
	case IdempotentMethod(req.Method), c.cfg.nonIdempotent, HasIdempotencyKey(req.Header):
		c.retry = true
	case c.cfg.genKeys && (req.Method == http.MethodPost || req.Method == http.MethodPatch):
		// One key per logical request, identical on every attempt; the
		// caller's request keeps its headers untouched.
		c.tmpl = req.Clone(req.Context())
		for k := range c.tmpl.Header { // an empty key under another spelling
			if strings.EqualFold(k, IdempotencyKeyHeader) {
				delete(c.tmpl.Header, k)
			}
		}
		c.tmpl.Header.Set(IdempotencyKeyHeader, newIdempotencyKey())
		c.retry = true
	}
	if stream {
		c.teeBody()
	}
}

// teeBody gets a body without GetBody ready to be replayed (see
// WithReplayLimit).
func (c *roundTrip) teeBody() {
	limit := c.cfg.replayLimit
	if c.req.ContentLength > limit {
		// Decision: a body announced longer than the limit would outgrow
		// the buffer anyway: it is never buffered, and the request is not
		// retried after any failure, as if it had outgrown it.
		c.retry = false
	}
	if !c.retry {
		// Sent again only after a failure that proves it never left: no
		// byte of it was read then, so none needs keeping.
		limit = 0
	}
	c.body = newReplay(c.req.Body, limit, c.req.ContentLength)
}

// try is the end of one attempt.
type try struct {
	resp *http.Response
	// o is what the attempt says of the upstream's health, for a host
	// breaker.
	o resilient.Outcome
	// err is the attempt's error: nil for a response to return as it is,
	// or the error the executor sees (a transport error, a *StatusError).
	err error
	// again: the request may be sent again after err. When false, err
	// ends the call (marked permanent for the executor).
	again bool
	// refused: a host breaker refused the attempt; nothing was sent.
	refused bool
}

// result is the attempt's value and error, as the executor takes them.
func (a try) result() (*http.Response, error) {
	switch {
	case a.refused:
		return nil, resilient.Reject(a.err)
	case a.err != nil && !a.again:
		return a.resp, resilient.Permanent(a.err)
	}
	return a.resp, a.err
}

// attempt sends one attempt. ctx is the executor's context for it: the
// caller's context itself, or one derived from it when the executor has a
// time limit of its own or hedges.
func (c *roundTrip) attempt(ctx context.Context) (*http.Response, error) {
	n := int(c.n.Add(1))
	if n > 1 && !c.retry && !c.resend.CompareAndSwap(true, false) {
		// A guard, not a path taken: a request that may not be repeated
		// runs on an executor without hedging, and fails permanently
		// before a second attempt unless it was never sent. Should an
		// attempt reach here anyway, it is not sent.
		return nil, errUnsafeToRepeat
	}
	a := c.send(ctx, n)
	if a.again && c.body != nil {
		// The attempt has its answer: its transport may read no more of
		// the stream, which the next attempt will need whole.
		c.body.detach()
		if !c.body.replayable() {
			// Decision (see WithReplayLimit): the body outgrew the replay
			// buffer, so this request is not sent again: the caller gets
			// this attempt's answer now.
			a.again = false
		}
	}
	if a.again && a.resp != nil {
		keep(ctx, a.resp) // see keep: the executor may hold it during a wait
	}
	return a.result()
}

// send sends one attempt and classifies its result.
func (c *roundTrip) send(ctx context.Context, n int) try {
	parent := c.req.Context()

	// The attempt's context. Decision: it derives from the request's
	// context, not from ctx, because the executor cancels a context of its
	// own as soon as the attempt function returns, which would kill the
	// body of the response we return. ctx bounds the attempt only until
	// the response headers arrive.
	actx := parent
	var cancel context.CancelFunc
	if d := c.cfg.attemptTimeout; d > 0 {
		actx, cancel = context.WithTimeout(parent, d)
	}
	if ctx.Done() != parent.Done() {
		if cancel == nil {
			actx, cancel = context.WithCancel(parent)
		}
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
	}

	req := c.tmpl
	var body io.ReadCloser // the attempt's own body, when not req's
	var err error
	switch {
	case c.body != nil:
		if body, err = c.body.reader(); err != nil {
			// Decision: refused, not failed: nothing was sent, so the
			// executor ends the call with the last response that came.
			if cancel != nil {
				cancel()
			}
			return try{o: resilient.Ignore, err: err, refused: true}
		}
	case n > 1 && req.Body != nil && req.Body != http.NoBody:
		if body, err = c.req.GetBody(); err != nil {
			if cancel != nil {
				cancel()
			}
			// Refused, not failed: nothing was sent, and the failure is
			// the request's, not the upstream's.
			return try{o: resilient.Ignore, err: fmt.Errorf("resilient/httpx: GetBody: %w", err), refused: true}
		}
	}
	if n > 1 || cancel != nil || body != nil {
		req = req.WithContext(actx) // a shallow copy: headers are shared, read only
		if body != nil {
			req.Body = body
		}
	}

	if n == 1 {
		c.sent.Store(true)
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil || resp == nil {
		if cancel != nil {
			cancel()
		}
		if err == nil {
			return try{o: resilient.Fail, err: ErrNilResponse}
		}
		if resp != nil && resp.Body != nil {
			// A RoundTripper must not return both; like http.Client, keep
			// the error, and do not leak the body.
			_ = resp.Body.Close()
		}
		return c.transportError(err)
	}
	if cancel != nil {
		wrapBody(resp, cancel)
	} else if resp.Body == nil {
		resp.Body = http.NoBody
	}
	return c.statusError(resp)
}

// transportError says what a transport error means: for the upstream's
// health, and whether this request may be sent again after it.
func (c *roundTrip) transportError(err error) try {
	a := try{o: resilient.Retry, err: err}
	switch {
	case c.req.Context().Err() != nil:
		// The caller's own end: the executor never retries it, and it
		// counts neither way.
		a.o, a.again = resilient.Ignore, true
	case ClassifyError(err) == resilient.Fail:
		a.o = resilient.Fail
	case c.retry:
		a.again = true
	case c.neverSent && NeverSent(err):
		c.resend.Store(true)
		a.again = true
	}
	// Otherwise (DESIGN 3): bytes of a request without an idempotency key
	// may have reached the server; sending it again could run it twice.
	return a
}

// statusError turns a response that is not a success into the attempt's
// error, keeping the response, and says what it means.
func (c *roundTrip) statusError(resp *http.Response) try {
	o := resilient.Unclassified
	if f := c.cfg.status; f != nil {
		o = f(resp)
	}
	if o == resilient.Unclassified {
		o = StatusOutcome(resp.StatusCode)
	}
	switch o {
	case resilient.Retry:
		var err error = &StatusError{Code: resp.StatusCode, Status: resp.Status}
		if d := retryAfter(resp.Header); d > 0 {
			err = resilient.RetryAfter(err, d)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			// Decision (DESIGN 15): a 429 is the upstream asking for less
			// traffic, not failing: a breaker counts it neither way (a 503
			// with Retry-After is taken the same way, by its hint).
			err = resilient.Throttled(err)
		}
		// Without c.retry, the first answer is the final one: a 5xx or
		// 429 proves the request reached the server.
		return try{resp: resp, o: resilient.Retry, err: err, again: c.retry}
	case resilient.Fail:
		return try{resp: resp, o: resilient.Fail, err: &StatusError{Code: resp.StatusCode, Status: resp.Status}}
	}
	return try{resp: resp, o: resilient.Success}
}
