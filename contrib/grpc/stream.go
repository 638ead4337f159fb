package grpc

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/resilient-go/resilient"
)

// Stream is a grpc.StreamClientInterceptor: a stream is one call of the
// executor, whose attempts each open a stream and last until it commits
// (see the package doc, "Streams", for when each kind of stream commits).
// Until then a retryable failure opens a new stream, replays what the
// caller had sent, and the caller's pending operation goes on on it; once
// committed, the stream's messages and errors go to the caller as they
// come. Stream returns once the first stream is open, or with the call's
// error when none could be.
//
// As for any gRPC stream, the caller must cancel the context or read the
// stream to its end (RecvMsg returning an error) to release it; a stream
// not yet committed also holds a goroutine of the interceptor until then.
func (ic *Interceptor) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	set := settingsOf(opts)
	if set.err != nil {
		return nil, set.err
	}
	p := ic.plan(cc, method, &set)
	s := &clientStream{
		table:      &ic.cfg.table,
		caller:     ctx,
		desc:       desc,
		cc:         cc,
		method:     method,
		streamer:   streamer,
		opts:       opts,
		timeout:    set.timeout,
		replay:     set.replay,
		repeatable: p.repeatable,
		changed:    make(chan struct{}),
	}
	// Streams are never hedged: a second stream would see the caller's
	// messages only through a replay.
	ex := p.r.once
	switch {
	case set.noRetry:
		ex = p.r.single
		s.window = windowOpen
	case !p.repeatable:
		s.window = windowOpen
	case !desc.ClientStreams:
		s.window, s.record, s.replay = windowFirstRecv, true, ResendAll
	case set.replay != nil:
		s.window, s.record = windowFirstRecv, true
	default:
		s.window = windowFirstSend
	}
	if s.window == windowOpen {
		// Nothing to wait for after the stream is open: the call runs
		// here, on the caller's goroutine.
		if _, err := resilient.Do(ctx, s.attempt, ex); err != nil {
			return nil, final(ctx, err)
		}
		return s, nil
	}
	go s.run(ex)
	if _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

// window says when a stream commits.
type window uint8

const (
	windowOpen      window = iota // once it is open
	windowFirstRecv               // at the first message received, or headers read
	windowFirstSend               // as windowFirstRecv, or at the first message sent
)

// clientStream is the stream the caller holds: the stream of the current
// attempt, and, once one commits, that one.
type clientStream struct {
	table      *table
	caller     context.Context
	desc       *grpc.StreamDesc
	cc         *grpc.ClientConn
	method     string
	streamer   grpc.Streamer
	opts       []grpc.CallOption
	timeout    time.Duration
	replay     func(context.Context, grpc.ClientStream, []any) error
	repeatable bool
	window     window
	record     bool // keep the messages sent until the stream commits

	n int // attempts made; only the executor's goroutine touches it

	// committed is the attempt whose stream is the caller's for good.
	committed atomic.Pointer[attemptStream]

	mu      sync.Mutex
	cur     *attemptStream // the live attempt; nil while a retry is under way
	last    *attemptStream // the last attempt opened, for Trailer
	fin     error          // the call's error, when it ended uncommitted
	changed chan struct{}  // closed, and replaced, when cur, fin or committed change
	sent    []any          // the messages sent, while record is set; replayed
	closed  bool           // the caller called CloseSend; replayed
}

// attemptStream is one attempt's stream.
type attemptStream struct {
	cs     grpc.ClientStream
	cancel context.CancelFunc // ends cs's context
	// verdict takes the one word on the attempt from the caller's side:
	// nil to commit it, an error to fail it. Whoever sets claimed (under
	// the stream's mu) sends it.
	verdict chan error
	claimed bool
}

// run makes the call on the interceptor's goroutine, for streams that
// commit after they are open.
func (s *clientStream) run(ex *resilient.Executor) {
	_, err := resilient.Do(s.caller, s.attempt, ex)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && s.committed.Load() == nil {
		s.fin = final(s.caller, err)
	}
	s.cur = nil
	s.broadcastLocked()
}

func (s *clientStream) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// attempt opens a stream and, unless it commits at once, waits for the
// caller's side to commit or fail it, or for the attempt's time to end.
func (s *clientStream) attempt(ctx context.Context) (struct{}, error) {
	s.n++
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	// The stream's context derives from the caller's, not from ctx: the
	// executor ends ctx when the attempt returns, and a committed stream
	// lives on. ctx bounds the attempt only until it commits; the server
	// is told the caller's deadline.
	sctx, cancel := context.WithCancel(s.caller)
	stop := context.AfterFunc(ctx, cancel)
	var pr peer.Peer
	opts := append(s.opts[:len(s.opts):len(s.opts)], grpc.Peer(&pr))
	cs, err := s.streamer(sctx, s.desc, s.cc, s.method, opts...)
	if err != nil {
		stop()
		cancel()
		if ctx.Err() != nil && s.caller.Err() == nil {
			err = ctxStatus(ctx) // the attempt's time ended while it opened
		}
		return struct{}{}, s.table.judge(s.caller, err, attemptInfo{repeatable: s.repeatable, neverLeft: pr.Addr == nil})
	}
	a := &attemptStream{cs: cs, cancel: cancel, verdict: make(chan error, 1)}

	s.mu.Lock()
	if s.n > 1 {
		if err := s.replayLocked(ctx, cs); err != nil {
			s.mu.Unlock()
			stop()
			cancel()
			return struct{}{}, s.table.judge(s.caller, err, attemptInfo{trailers: cs.Trailer(), repeatable: s.repeatable})
		}
	}
	s.last = a
	if s.window == windowOpen {
		a.claimed = true
		s.committed.Store(a)
		s.mu.Unlock()
		if !stop() { // the attempt's time ended just now: the stream is gone
			return struct{}{}, s.table.judge(s.caller, ctxStatus(ctx), attemptInfo{repeatable: s.repeatable})
		}
		return struct{}{}, nil
	}
	s.cur = a
	s.broadcastLocked()
	s.mu.Unlock()

	var v error
	select {
	case v = <-a.verdict:
	case <-ctx.Done():
		s.mu.Lock()
		if a.claimed { // the caller's side has just decided: its word stands
			s.mu.Unlock()
			v = <-a.verdict
			break
		}
		a.claimed = true
		s.cur = nil
		s.mu.Unlock()
		cancel()
		return struct{}{}, s.table.judge(s.caller, ctxStatus(ctx), attemptInfo{repeatable: s.repeatable})
	}
	if v == nil {
		// Committed. Should the attempt's time have ended at that very
		// instant, the stream's context is cancelled and the caller learns
		// it from the stream; the message it committed on was delivered.
		stop()
		return struct{}{}, nil
	}
	stop()
	cancel()
	if ctx.Err() != nil && s.caller.Err() == nil {
		// The stream failed because the attempt's time ended (its context
		// was cancelled for that): a timeout, not a cancellation.
		v = ctxStatus(ctx)
	}
	return struct{}{}, s.table.judge(s.caller, v, attemptInfo{trailers: cs.Trailer(), repeatable: s.repeatable})
}

// ctxStatus is the status of an attempt whose context ended.
func ctxStatus(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}

// replayLocked brings a new stream to where the caller is: the messages
// sent (through the replay function; a server-streaming call's request is
// sent again as it is), and CloseSend.
func (s *clientStream) replayLocked(ctx context.Context, cs grpc.ClientStream) error {
	if s.record && len(s.sent) > 0 {
		if err := s.replay(ctx, cs, s.sent); err != nil {
			return err
		}
	}
	if s.closed {
		return cs.CloseSend()
	}
	return nil
}

// current returns the attempt to use: the committed one, or the live one,
// waiting while a retry is under way; or the call's error, if it ended.
func (s *clientStream) current() (*attemptStream, error) {
	for {
		if a := s.committed.Load(); a != nil {
			return a, nil
		}
		s.mu.Lock()
		a, fin, ch := s.cur, s.fin, s.changed
		s.mu.Unlock()
		if a != nil {
			return a, nil
		}
		if fin != nil {
			return nil, fin
		}
		if c := s.committed.Load(); c != nil {
			return c, nil
		}
		<-ch // the executor's goroutine publishes an attempt or ends
	}
}

// commit makes a the caller's stream for good, if it is still the live
// attempt and nobody has decided on it yet.
func (s *clientStream) commit(a *attemptStream) bool {
	s.mu.Lock()
	if s.cur != a || a.claimed {
		s.mu.Unlock()
		return s.committed.Load() == a
	}
	a.claimed = true
	s.committed.Store(a)
	s.cur = nil
	s.mu.Unlock()
	a.verdict <- nil
	return true
}

// fail reports that a failed before it committed; the executor decides
// whether another attempt follows.
func (s *clientStream) fail(a *attemptStream, err error) {
	s.mu.Lock()
	if s.cur != a || a.claimed {
		s.mu.Unlock()
		return
	}
	a.claimed = true
	s.cur = nil
	s.mu.Unlock()
	a.verdict <- err
}

// RecvMsg receives a message; before the stream commits, a retryable
// failure is retried and the message is read from the new stream.
func (s *clientStream) RecvMsg(m any) error {
	for {
		a, err := s.current()
		if err != nil {
			return err
		}
		if s.committed.Load() == a {
			return recvCommitted(a, m)
		}
		err = a.cs.RecvMsg(m)
		if err == nil || err == io.EOF {
			if s.commit(a) {
				if err == io.EOF {
					a.cancel()
				}
				return err
			}
			// a was given up (its time ended) while this message came:
			// the next stream sends it again.
			continue
		}
		s.fail(a, err)
	}
}

func recvCommitted(a *attemptStream, m any) error {
	err := a.cs.RecvMsg(m)
	if err != nil {
		a.cancel() // the stream is over: release its context
	}
	return err
}

// SendMsg sends a message on the current stream. Before the stream
// commits, the messages of a server-streaming call (its request) and of a
// call with [Replay] are kept, to be sent again on a new stream; a
// client-streaming or bidirectional call without Replay commits first.
func (s *clientStream) SendMsg(m any) error {
	for {
		if a := s.committed.Load(); a != nil {
			return a.cs.SendMsg(m)
		}
		if s.record {
			// Kept and sent under one lock with the retry's replay, so that
			// each stream gets the message once: a retry that starts after
			// this replays it; one that published before is the current.
			s.mu.Lock()
			if s.committed.Load() != nil {
				s.mu.Unlock()
				continue
			}
			s.sent = append(s.sent, m)
			a, fin := s.cur, s.fin
			s.mu.Unlock()
			if a == nil {
				if fin != nil {
					return s.ended()
				}
				return nil // the retry under way sends it
			}
			err := a.cs.SendMsg(m)
			if err == io.EOF && s.committed.Load() != a {
				// The stream failed before it committed: RecvMsg learns
				// why, and a retry replays this message.
				return nil
			}
			return err
		}
		a, err := s.current()
		if err != nil {
			return s.ended()
		}
		if s.commit(a) {
			return a.cs.SendMsg(m)
		}
	}
}

// ended is SendMsg's error once the call ended before it committed: as in
// grpc-go, the status comes from RecvMsg.
func (s *clientStream) ended() error {
	if !s.desc.ClientStreams {
		return nil
	}
	return io.EOF
}

// CloseSend closes the sending side of the current stream, and of any
// stream a retry opens.
func (s *clientStream) CloseSend() error {
	if a := s.committed.Load(); a != nil {
		return a.cs.CloseSend()
	}
	s.mu.Lock()
	s.closed = true
	a := s.cur
	s.mu.Unlock()
	if a != nil {
		return a.cs.CloseSend()
	}
	if a := s.committed.Load(); a != nil {
		return a.cs.CloseSend()
	}
	return nil
}

// Header returns the current stream's header metadata, waiting for it;
// headers that arrive commit the stream (the caller has seen them).
func (s *clientStream) Header() (metadata.MD, error) {
	a, err := s.current()
	if err != nil {
		return nil, err
	}
	md, err := a.cs.Header()
	if err == nil && md != nil && s.committed.Load() != a {
		s.commit(a)
	}
	return md, err
}

// Trailer returns the trailer metadata of the committed stream, or of the
// last one opened.
func (s *clientStream) Trailer() metadata.MD {
	if a := s.committed.Load(); a != nil {
		return a.cs.Trailer()
	}
	s.mu.Lock()
	a := s.last
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.cs.Trailer()
}

// Context returns the current stream's context, or the caller's while no
// stream is open.
func (s *clientStream) Context() context.Context {
	if a := s.committed.Load(); a != nil {
		return a.cs.Context()
	}
	s.mu.Lock()
	a := s.last
	s.mu.Unlock()
	if a == nil {
		return s.caller
	}
	return a.cs.Context()
}
