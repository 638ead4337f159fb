package grpc

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/resilient-go/resilient"
)

// Unary is a grpc.UnaryClientInterceptor: it runs the call through the
// interceptor's executor, each attempt through invoker on a context derived
// from ctx (so the server is told the deadline left, on every attempt), and
// returns nil, the server's status when the server answered (see
// [Classify]), or the executor's [*resilient.Error] wrapping the last
// status.
func (ic *Interceptor) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	s := settingsOf(opts)
	if s.err != nil {
		return s.err
	}
	p := ic.plan(cc, method, &s)
	u := unaryPool.Get().(*unary)
	defer u.release()
	*u = unary{
		table:      &ic.cfg.table,
		caller:     ctx,
		method:     method,
		req:        req,
		reply:      reply,
		cc:         cc,
		invoker:    invoker,
		timeout:    s.timeout,
		repeatable: p.repeatable,
		watchPeer:  p.watchPeer,
	}
	if p.repeatable && ic.hedges.Load() {
		return ic.hedged(u, p, opts)
	}
	u.opts = append(u.buf[:0], opts...)
	// Our own trailer, for pushback, and the peer, which tells whether the
	// attempt reached a transport at all; the caller's options that ask
	// for the same are served as usual (by the last attempt).
	u.opts = append(u.opts, grpc.Trailer(&u.trailer))
	if u.watchPeer {
		u.opts = append(u.opts, grpc.Peer(&u.peer))
	}
	_, err := resilient.Do(ctx, u.attempt, p.ex)
	if err == resilient.ErrHedgeNeedsDoHedged {
		// The executor hedges: nothing was called. Remember it, so that
		// the next calls go straight to DoHedged.
		ic.hedges.Store(true)
		return ic.hedged(u, p, opts)
	}
	return final(u.caller, err)
}

// unaryPool recycles the state of unary calls, which the options handed
// to grpc point into (so it lives on the heap): a call through the
// interceptor then allocates nothing of its own.
//
// Decision: the state is reused once the call has returned. grpc-go writes
// through a call's options (the trailer, the peer) only before its invoker
// returns, and so does any interceptor that finishes its work before
// returning, as a unary interceptor must.
var unaryPool = sync.Pool{New: func() any { return new(unary) }}

// release clears the call's state, so that the pool holds no reference to
// its messages, and returns it to the pool.
func (u *unary) release() {
	*u = unary{}
	unaryPool.Put(u)
}

// unary is one unary call: what every attempt needs.
type unary struct {
	table      *table
	caller     context.Context
	method     string
	req, reply any
	cc         *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	opts       []grpc.CallOption
	timeout    time.Duration // the call's AttemptTimeout
	repeatable bool
	watchPeer  bool

	// Written by each attempt, through the options.
	trailer metadata.MD
	peer    peer.Peer

	buf [8]grpc.CallOption
}

func (u *unary) attempt(ctx context.Context) (struct{}, error) {
	u.trailer, u.peer = nil, peer.Peer{}
	if u.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.timeout)
		defer cancel()
	}
	err := u.invoker(ctx, u.method, u.req, u.reply, u.cc, u.opts...)
	if err == nil {
		return struct{}{}, nil
	}
	return struct{}{}, u.table.judge(u.caller, err, attemptInfo{
		trailers:   u.trailer,
		repeatable: u.repeatable,
		neverLeft:  u.watchPeer && u.peer.Addr == nil,
	})
}

// hedged runs a call safe to repeat through an executor that hedges.
// Attempts run at once, so each has its own reply message, headers,
// trailers and peer; the winner's are copied to the caller's. A reply that
// is not a proto message cannot be copied, so such a call is not hedged.
func (ic *Interceptor) hedged(u *unary, p plan, opts []grpc.CallOption) error {
	reply, ok := u.reply.(proto.Message)
	if !ok {
		u.opts = append(append(u.buf[:0], opts...), grpc.Trailer(&u.trailer))
		_, err := resilient.Do(u.caller, u.attempt, p.r.once)
		return final(u.caller, err)
	}
	// The caller's own header, trailer and peer options would be written
	// by attempts running at once; they are kept apart, and filled in from
	// the winner.
	var (
		header, trailer *metadata.MD
		pr              *peer.Peer
	)
	base := make([]grpc.CallOption, 0, len(opts))
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			header = o.HeaderAddr
		case grpc.TrailerCallOption:
			trailer = o.TrailerAddr
		case grpc.PeerCallOption:
			pr = o.PeerAddr
		default:
			base = append(base, o)
		}
	}
	h := &hedge{u: u, base: base, reply: reply}
	a, err := resilient.DoHedged(u.caller, h.attempt, p.ex)
	if a != nil {
		proto.Reset(reply)
		proto.Merge(reply, a.reply)
		if header != nil {
			*header = a.header
		}
		if trailer != nil {
			*trailer = a.trailer
		}
		if pr != nil {
			*pr = a.peer
		}
	}
	return final(u.caller, err)
}

// hedge is a unary call whose attempts may run at once.
type hedge struct {
	u     *unary
	base  []grpc.CallOption
	reply proto.Message
}

// hedgeAttempt is one attempt's own results.
type hedgeAttempt struct {
	reply           proto.Message
	header, trailer metadata.MD
	peer            peer.Peer
}

func (h *hedge) attempt(ctx context.Context) (*hedgeAttempt, error) {
	u := h.u
	a := &hedgeAttempt{reply: h.reply.ProtoReflect().New().Interface()}
	opts := append(h.base[:len(h.base):len(h.base)],
		grpc.Header(&a.header), grpc.Trailer(&a.trailer), grpc.Peer(&a.peer))
	if u.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.timeout)
		defer cancel()
	}
	err := u.invoker(ctx, u.method, u.req, a.reply, u.cc, opts...)
	if err == nil {
		return a, nil
	}
	return a, u.table.judge(u.caller, err, attemptInfo{trailers: a.trailer, repeatable: true, hedged: true})
}
