package httpx

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// DefaultReplayLimit is how many bytes of a request body without GetBody
// the Transport keeps, by default, to send it again (see [WithReplayLimit]):
// 1 MiB, the default of Envoy's retry buffer.
const DefaultReplayLimit = 1 << 20

// WithReplayLimit sets how many bytes of a request body that has no
// GetBody (a stream, such as a pipe or a file) the Transport keeps as it
// sends them, so that the request can be sent again: the body is teed
// into a buffer while the first attempt reads it, and later attempts read
// the buffer, then the rest of the stream, as Envoy's retry buffer does.
// Nothing is read ahead of sending: the buffer holds only what an attempt
// has sent.
//
// A body that outgrows n (or is announced longer than n by the request's
// ContentLength, which is then never buffered) is sent once: its request
// is not retried after that point, and the caller gets the response or
// error of that attempt. (Before any byte of it is read, a failure that
// proves the request never left, see [NeverSent], still lets it go whole
// with the next attempt; so it does for a POST without an idempotency
// key.) n must be >= 0; 0 disables the buffer, so such bodies are sent
// once, never retried. Default: [DefaultReplayLimit].
//
// A request whose body is buffered this way is never hedged: one stream
// cannot feed two attempts at once. Bodies with GetBody (set by
// [http.NewRequest] for bytes, strings and their readers) are replayed
// through it, never buffered.
func WithReplayLimit(n int64) Option {
	return optionFunc(func(c *config) error {
		if n < 0 {
			return optionError("WithReplayLimit", "n must be >= 0, got %d", n)
		}
		c.replayLimit = n
		return nil
	})
}

// errNotReplayable refuses an attempt whose body can no longer be sent
// again: it outgrew the replay limit, or its stream failed.
var errNotReplayable = errors.New("resilient/httpx: request not sent again: its body cannot be replayed")

// errDetached is what the body of an earlier attempt returns once a later
// attempt has taken over the stream.
var errDetached = errors.New("resilient/httpx: request body taken over by a later attempt")

// replay tees a request body into a bounded buffer while attempts send it
// (see WithReplayLimit). Each attempt reads through a reader of its own:
// the bytes already read from the stream come from the buffer, the rest
// from the stream, which only the current attempt's reader may read. An
// earlier attempt's transport may still be reading its body after its
// RoundTrip returned (the RoundTripper contract allows it): that reader is
// detached, and fails from then on, so that it never takes bytes from the
// stream that a later attempt needs.
//
// The caller's body is closed exactly once: when the round trip has ended
// and the last attempt's transport has closed its reader, or at the end of
// the round trip when no reader is open.
type replay struct {
	src   io.ReadCloser
	limit int64 // bytes kept for replay
	first int   // the size of the first chunk

	srcMu sync.Mutex // serialises reads of src; never held by mu's holders

	mu     sync.Mutex // guards what follows
	chunks [][]byte   // the bytes read from src, while read <= limit
	read   int64      // bytes read from src
	over   bool       // read > limit: chunks dropped, no replay
	err    error      // src's sticky error, io.EOF at its end
	cur    *replayReader
	ended  bool // the round trip is over
	closed bool // src is closed
}

// Sizes of the buffer's chunks: the first holds a short body whole, and
// each one after doubles, up to maxChunk, so that a body costs about its
// own size, without copies.
const (
	minChunk = 512
	maxChunk = 64 << 10
)

// newReplay tees src, keeping up to limit bytes; size is its announced
// length (0 or -1 when unknown), which sizes the first chunk.
func newReplay(src io.ReadCloser, limit, size int64) *replay {
	rp := &replay{src: src, limit: limit, first: minChunk}
	if size > 0 {
		rp.first = int(min(size, limit, maxChunk))
	}
	return rp
}

// reader returns the body of the next attempt, which takes over the stream
// from the previous one, or errNotReplayable.
func (rp *replay) reader() (io.ReadCloser, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if !rp.replayableLocked() {
		return nil, errNotReplayable
	}
	r := &replayReader{rp: rp}
	rp.cur = r
	return r, nil
}

// detach stops the current attempt's reader from reading the stream any
// further: its attempt has its answer, and the stream is kept for the
// next one.
func (rp *replay) detach() {
	rp.mu.Lock()
	rp.cur = nil
	rp.mu.Unlock()
}

// replayable reports whether another attempt can send the whole body.
func (rp *replay) replayable() bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.replayableLocked()
}

func (rp *replay) replayableLocked() bool {
	return !rp.over && !rp.ended && (rp.err == nil || rp.err == io.EOF)
}

// end ends the round trip: no attempt follows. The caller's body is closed
// now, unless the last attempt's transport still has its reader open.
func (rp *replay) end() {
	rp.mu.Lock()
	rp.ended = true
	open := rp.cur != nil && !rp.cur.closed
	rp.mu.Unlock()
	if !open {
		rp.closeSrc()
	}
}

func (rp *replay) closeSrc() {
	rp.mu.Lock()
	done := rp.closed
	rp.closed = true
	rp.chunks = nil
	rp.mu.Unlock()
	if !done {
		_ = rp.src.Close()
	}
}

// copyAt copies the buffered bytes from off into p.
func (rp *replay) copyAt(p []byte, off int64) int {
	n := 0
	for _, c := range rp.chunks {
		if off >= int64(len(c)) {
			off -= int64(len(c))
			continue
		}
		k := copy(p[n:], c[off:])
		n += k
		off = 0
		if n == len(p) {
			break
		}
	}
	return n
}

// keepLocked counts b as read from the stream, and appends it to the
// buffer, or drops the buffer when b would make it outgrow the limit.
func (rp *replay) keepLocked(b []byte) {
	if rp.over || rp.read+int64(len(b)) > rp.limit {
		rp.over, rp.chunks = true, nil
		rp.read += int64(len(b))
		return
	}
	for len(b) > 0 {
		var last []byte
		if k := len(rp.chunks); k > 0 {
			last = rp.chunks[k-1]
		}
		if len(last) == cap(last) {
			size := rp.first
			if last != nil {
				size = min(2*cap(last), maxChunk)
			}
			// Never more than the limit can need.
			last = make([]byte, 0, min(int64(size), rp.limit-rp.read))
			rp.chunks = append(rp.chunks, last)
		}
		n := min(len(b), cap(last)-len(last))
		last = append(last, b[:n]...)
		rp.chunks[len(rp.chunks)-1] = last
		rp.read += int64(n)
		b = b[n:]
	}
}

// replayReader is one attempt's body.
type replayReader struct {
	rp     *replay
	off    int64 // bytes this reader has returned
	closed bool  // guarded by rp.mu
}

func (r *replayReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	rp := r.rp
	for {
		rp.mu.Lock()
		switch {
		case r.closed:
			rp.mu.Unlock()
			return 0, http.ErrBodyReadAfterClose
		case rp.cur != r:
			rp.mu.Unlock()
			return 0, errDetached
		case r.off < rp.read:
			if rp.over { // only a detached reader's late bytes can do this
				rp.mu.Unlock()
				return 0, errNotReplayable
			}
			n := rp.copyAt(p, r.off)
			r.off += int64(n)
			rp.mu.Unlock()
			return n, nil
		case rp.err != nil:
			err := rp.err
			rp.mu.Unlock()
			return 0, err
		}
		rp.mu.Unlock()

		// Read the stream itself, one reader at a time. Another one (a
		// detached reader still blocked in the stream) may have read it
		// while this one waited: then its bytes are served from the
		// buffer, at the top of the loop.
		rp.srcMu.Lock()
		rp.mu.Lock()
		fresh := r.off == rp.read && rp.err == nil && rp.cur == r && !r.closed
		rp.mu.Unlock()
		if !fresh {
			rp.srcMu.Unlock()
			continue
		}
		n, err := rp.src.Read(p)
		rp.mu.Lock()
		if n > 0 {
			rp.keepLocked(p[:n])
			r.off += int64(n)
		}
		if err != nil {
			rp.err = err
		}
		rp.mu.Unlock()
		rp.srcMu.Unlock()
		return n, err
	}
}

// Close closes the reader; once the round trip has ended, closing the last
// attempt's reader closes the caller's body.
func (r *replayReader) Close() error {
	rp := r.rp
	rp.mu.Lock()
	r.closed = true
	last := rp.ended && rp.cur == r
	rp.mu.Unlock()
	if last {
		rp.closeSrc()
	}
	return nil
}
