package httpx

import (
	"context"
	"io"
	"net/http"
)

// DrainLimit is how many bytes of a discarded response's body (a response
// that is retried) are read before it is closed: enough for the short error
// pages of 429s and 5xx, so that the connection goes back to the pool for
// the next attempt. A longer body is closed without reading the rest, which
// costs its connection but never reads an unbounded stream.
const DrainLimit = 64 << 10

// discard drains (up to DrainLimit) and closes the body of a response the
// caller never sees. The executor calls it once per discarded response,
// before the wait for the next attempt.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	// Decision: a body announced longer than the limit is not read at all;
	// reading DrainLimit of it would not save the connection anyway.
	if resp.ContentLength <= DrainLimit {
		_, _ = io.CopyN(io.Discard, resp.Body, DrainLimit+1)
	}
	_ = resp.Body.Close()
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
