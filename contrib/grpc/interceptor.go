package grpc

import (
	"context"
	"errors"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/resilient-go/resilient"
)

// Interceptor runs the calls of gRPC clients through a resilient executor:
// its [Interceptor.Unary] and [Interceptor.Stream] methods are a
// grpc.UnaryClientInterceptor and a grpc.StreamClientInterceptor. Build it
// with [New]; it is immutable and safe for concurrent use, and one serves
// any number of connections.
type Interceptor struct {
	cfg config
	// The executors derived from the caller's, once: retry may hedge, once
	// never does, single makes one attempt. Routes add keyed breakers.
	retry, once, single *resilient.Executor
	// hedges is set on the first call that finds the executor hedging
	// (see Unary).
	hedges atomic.Bool
	routes routes
}

// New builds an Interceptor that runs every call through ex: its attempts,
// backoff and jitter, caps ([resilient.WithMaxDelay] caps pushback too),
// time limits, policies (breaker, budget, throttle, bulkhead), hedging and
// hooks, with the classification of this package (see [Classify]) in place
// of ex's classifier. ex is not changed; its stateful parts (a breaker, a
// budget) are shared with it. A nil ex or an invalid option is an error
// that names it, and nothing is built.
func New(ex *resilient.Executor, opts ...Option) (*Interceptor, error) {
	// Every invalid argument and option is reported, not only the first.
	var errs []error
	if ex == nil {
		errs = append(errs, optionError("New", "nil executor"))
	}
	ic := &Interceptor{cfg: config{
		table:      defaultTable,
		idempotent: map[string]bool{},
		files:      protoregistry.GlobalFiles,
	}}
	for _, o := range opts {
		if o == nil {
			errs = append(errs, optionError("New", "nil option"))
		} else if err := o.apply(&ic.cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if errs != nil {
		return nil, join(errs)
	}
	// Decision: the executor's classifier is replaced, not chained: each
	// attempt is judged here, where the call's idempotency, its trailers
	// and whether it left are known, and the verdict is told to the
	// executor through the error (see judge). A value check and a release
	// hook typed for the caller's values cannot apply to RPCs.
	var err error
	ic.retry, err = resilient.New(ex,
		resilient.WithClassifier(classifyMarked),
		resilient.CheckValue[struct{}](nil),
		resilient.OnDiscard[struct{}](nil),
	)
	if err != nil {
		return nil, err
	}
	// Decision: a call that is not safe to repeat is never hedged; it runs
	// on a copy of the executor without hedging (sharing its breaker and
	// budget), so no hedge is started only to be refused.
	if ic.once, err = resilient.New(ic.retry, resilient.WithoutHedging()); err != nil {
		return nil, err
	}
	if ic.single, err = resilient.New(ic.once, resilient.WithAttempts(1)); err != nil {
		return nil, err
	}
	return ic, nil
}

// MustNew is like [New] but panics on an invalid argument. It serves
// package-level variables.
func MustNew(ex *resilient.Executor, opts ...Option) *Interceptor {
	ic, err := New(ex, opts...)
	if err != nil {
		panic(err)
	}
	return ic
}

// UnaryClientInterceptor is shorthand for New(ex, opts...).Unary, for a
// grpc.WithUnaryInterceptor dial option. Should New fail, every call made
// through the interceptor fails at once with New's error (nothing is sent);
// use [New] to learn of it when the program starts.
func UnaryClientInterceptor(ex *resilient.Executor, opts ...Option) grpc.UnaryClientInterceptor {
	ic, err := New(ex, opts...)
	if err != nil {
		return func(context.Context, string, any, any, *grpc.ClientConn, grpc.UnaryInvoker, ...grpc.CallOption) error {
			return err
		}
	}
	return ic.Unary
}

// StreamClientInterceptor is shorthand for New(ex, opts...).Stream, for a
// grpc.WithStreamInterceptor dial option. Should New fail, every stream
// opened through the interceptor fails at once with New's error.
func StreamClientInterceptor(ex *resilient.Executor, opts ...Option) grpc.StreamClientInterceptor {
	ic, err := New(ex, opts...)
	if err != nil {
		return func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, grpc.Streamer, ...grpc.CallOption) (grpc.ClientStream, error) {
			return nil, err
		}
	}
	return ic.Stream
}

// DialOptions returns the dial options that install the interceptor on a
// connection: both interceptors, chained after any given before them, and
// grpc.WithDisableRetry, so that grpc-go's own retry policy (from a service
// config) does not multiply the attempts. grpc-go's transparent retry of
// streams that never reached a server stays on: it is always safe.
func (ic *Interceptor) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(ic.Unary),
		grpc.WithChainStreamInterceptor(ic.Stream),
		grpc.WithDisableRetry(),
	}
}

func targetOf(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}

// plan is how one call may be retried.
type plan struct {
	r          *route
	ex         *resilient.Executor
	repeatable bool // safe to send again after any retryable status
	watchPeer  bool // retried only if an attempt proves it never left
}

func (ic *Interceptor) plan(cc *grpc.ClientConn, method string, s *callSettings) plan {
	r := ic.route(targetOf(cc), method)
	switch {
	case s.noRetry:
		return plan{r: r, ex: r.single}
	case s.idempotent || r.idempotent:
		return plan{r: r, ex: r.retry, repeatable: true}
	}
	return plan{r: r, ex: r.once, watchPeer: true}
}

// statusError gives an error that carries no gRPC status one, for callers
// and interceptors that read status codes: the context's code, or
// UNAVAILABLE for a call a policy refused before anything was sent. It
// unwraps to the error it wraps.
type statusError struct {
	err  error
	code codes.Code
}

func (e *statusError) Error() string              { return e.err.Error() }
func (e *statusError) Unwrap() error              { return e.err }
func (e *statusError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

// final is what the caller gets for a call's error: the server's status as
// it is when the server answered, otherwise the executor's
// [*resilient.Error], which wraps the last status (so status.Code and
// status.FromError read it) and matches the reason's sentinel. A call
// ended by the caller's context reads as the context's code, as grpc-go's
// own calls do, whatever the last attempt's status; a call a policy refused
// before any status came reads as UNAVAILABLE.
func final(caller context.Context, err error) error {
	if err == nil {
		return nil
	}
	if a, ok := err.(*answered); ok {
		return a.err
	}
	if cerr := caller.Err(); cerr != nil {
		code := status.FromContextError(cerr).Code()
		if c, ok := codeOf(err); !ok || c != code {
			return &statusError{err: err, code: code}
		}
		return err
	}
	c, ok := codeOf(err)
	switch {
	case ok:
		return err
	case c == codes.Canceled || c == codes.DeadlineExceeded:
		return &statusError{err: err, code: c}
	case errors.Is(err, resilient.ErrRejected):
		return &statusError{err: err, code: codes.Unavailable}
	}
	return err
}
