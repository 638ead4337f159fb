package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DrainLimit is how many bytes of a response's body the Transport reads
// into memory, at most, when it sets the response aside: a retryable
// response that the executor may hold during its wait, or return once it
// stops, and a response it discards. Enough for the short error pages of
// 429s and 5xx, so that the connection goes back to the pool for the next
// attempt. A longer body is closed without reading the rest, which costs
// its connection but never reads an unbounded stream.
const DrainLimit = 64 << 10

// DrainTimeout bounds, in time, the read of a body set aside (see
// [DrainLimit]): what has not arrived within it is not waited for. The
// body of an error page comes with its headers, or right after them; one
// that stalls is closed, which costs its connection, never the call's
// time.
const DrainTimeout = 5 * time.Millisecond

// ErrBodyTruncated is the error a response's body returns, after the bytes
// it kept, when the Transport set the response aside (a retryable response,
// held during a wait and returned once the retries stop) and could not
// keep all of it: it was longer than [DrainLimit], more did not arrive
// within [DrainTimeout], the call ended, or its read failed (that error is
// wrapped too). The status and headers are intact; the body is not, and
// says so, rather than passing a part off as the whole.
var ErrBodyTruncated = errors.New("resilient/httpx: response body cut when the response was set aside")

// keep reads the body of a retryable response into memory, bounded in
// bytes (DrainLimit) and in time (DrainTimeout, and ctx: the attempt's
// context, which ends with the call, its time limit, or a hedged round
// that another attempt won), closes the original, and gives resp a body
// that replays what was read.
//
// Decision: the executor may hold a retryable response during the wait
// before the next attempt, to return it if that attempt is refused (a
// breaker, a budget) or the call ends. Holding the connection for that
// wait would take it from the pool, and a stalled body would hold the call
// itself; so the body is read now, while it arrives promptly, and the
// connection goes back to the pool (or is closed) before any wait. What is
// held is memory, at most DrainLimit bytes.
func keep(ctx context.Context, resp *http.Response) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	if _, ok := resp.Body.(*keptBody); ok {
		return
	}
	data, err := drain(ctx, resp.Body, resp.ContentLength)
	resp.Body = &keptBody{data: data, err: err}
}

// keptBody is a body kept in memory: its bytes, then err (io.EOF when it
// was read whole, an error matching ErrBodyTruncated when not).
type keptBody struct {
	data   []byte
	err    error
	closed atomic.Bool
}

func (b *keptBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if len(b.data) == 0 {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *keptBody) Close() error {
	b.closed.Store(true)
	return nil
}

// discard releases a response the caller never sees. The executor calls
// it once per discarded response: a retryable one it no longer holds (kept
// already, so closing it is all there is to do), or the late answer of a
// hedged attempt that lost its round, whose body is drained as keep reads
// one, bounded in bytes and time, so that a stalled body never holds the
// winner's return.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	if _, ok := resp.Body.(*keptBody); !ok {
		_, _ = drain(context.Background(), resp.Body, resp.ContentLength)
		return
	}
	_ = resp.Body.Close()
}

// errBodyTooLong and errBodyStalled say why drain stopped reading.
var (
	errBodyTooLong = fmt.Errorf("%w: longer than %d bytes", ErrBodyTruncated, DrainLimit)
	errBodyStalled = fmt.Errorf("%w: the rest did not arrive within %v", ErrBodyTruncated, DrainTimeout)
)

// drain reads body until EOF, at most DrainLimit bytes, for at most
// DrainTimeout or until ctx ends, then closes it, exactly once. It returns
// what it read, and io.EOF when that is the whole body, or an error
// matching ErrBodyTruncated that says why not. A body announced longer
// than DrainLimit (size) is not read at all: reading part of it would not
// save the connection anyway.
//
// The bound in time is kept by closing body from a timer while a Read may
// be blocked in it, which net/http's bodies (HTTP/1 and HTTP/2) allow: the
// Read then returns, and the connection is closed instead of reused.
func drain(ctx context.Context, body io.ReadCloser, size int64) ([]byte, error) {
	if size > DrainLimit {
		_ = body.Close()
		return nil, errBodyTooLong
	}
	if err := ctx.Err(); err != nil {
		_ = body.Close()
		return nil, fmt.Errorf("%w: %w", ErrBodyTruncated, context.Cause(ctx))
	}
	cut := &cutter{body: body}
	t := time.AfterFunc(DrainTimeout, cut.stalled)
	stop := func() bool { return false }
	if ctx.Done() != nil { // a context that never ends costs nothing
		stop = context.AfterFunc(ctx, func() {
			cut.close(fmt.Errorf("%w: %w", ErrBodyTruncated, context.Cause(ctx)))
		})
	}
	n := 512
	if size > 0 {
		n = int(size) + 1 // + 1: the read that sees EOF needs room
	}
	buf := make([]byte, 0, n)
	var err error
	for len(buf) <= DrainLimit && err == nil {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), DrainLimit+1-cap(buf)))
		}
		var k int
		k, err = body.Read(buf[len(buf):min(cap(buf), DrainLimit+1)])
		buf = buf[:len(buf)+k]
	}
	t.Stop()
	stop()
	// Closes body, or, when the timer or ctx came first, waits until
	// they have closed it.
	cut.close(nil)
	switch {
	case err == io.EOF && len(buf) <= DrainLimit: // whole, even if a timer closed the body right after
		return buf, io.EOF
	case cut.why != nil:
		return buf, cut.why
	case err != nil && err != io.EOF:
		return buf, fmt.Errorf("%w: %w", ErrBodyTruncated, err)
	}
	return buf[:DrainLimit], errBodyTooLong
}

// cutter closes a body once, from whichever comes first: the end of the
// read, a timer, or a context.
type cutter struct {
	once sync.Once
	body io.Closer
	why  error // set by the first close: nil when the read ended first
}

func (c *cutter) stalled() { c.close(errBodyStalled) }

func (c *cutter) close(why error) {
	c.once.Do(func() {
		c.why = why
		_ = c.body.Close()
	})
}

// closeRequestBody closes the caller's request body, as a RoundTripper must
// on every path, including those where nothing was sent.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// attemptBody is the body of a response whose attempt has its own context
// (a per-attempt timeout): the context lives as long as the body is being
// read, so a stalled read is cut when the timeout fires, and it is released
// at EOF, on any read error, or when the body is closed. Returning the
// response from RoundTrip does not cancel it.
type attemptBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		// At EOF net/http has already put the connection back in its pool
		// (the read blocks until it has), so cancelling now cannot cost
		// the connection.
		b.cancel()
	}
	return n, err
}

// Close closes the body first, then releases the context: cancelling
// first would make net/http drop a connection it could reuse.
func (b *attemptBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// attemptRWBody keeps the io.Writer of a 101 Switching Protocols body, so
// that a protocol upgrade still works through the wrapper.
type attemptRWBody struct {
	attemptBody
	w io.Writer
}

func (b *attemptRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// wrapBody ties cancel to the life of resp's body.
func wrapBody(resp *http.Response, cancel context.CancelFunc) {
	if resp.Body == nil || resp.Body == http.NoBody {
		resp.Body = http.NoBody
		cancel()
		return
	}
	if w, ok := resp.Body.(io.Writer); ok {
		resp.Body = &attemptRWBody{attemptBody{resp.Body, cancel}, w}
		return
	}
	resp.Body = &attemptBody{resp.Body, cancel}
}
