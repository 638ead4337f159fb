package grpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/resilient-go/resilient"
)

// Option configures an [Interceptor] (see [New]).
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// optionError is the error of an invalid option of this package (see the
// package doc's Errors): a *resilient.OptionError that names the option
// with the package's name, "grpc.WithRetryCodes".
func optionError(option, format string, args ...any) error {
	return &resilient.OptionError{Option: "grpc." + option, Err: fmt.Errorf(format, args...)}
}

// join returns the one error of errs, or all of them joined.
func join(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// config is an Interceptor's configuration, fixed when it is built.
type config struct {
	table      table
	idempotent map[string]bool // full method names
	files      *protoregistry.Files
	targets    *resilient.Breakers
	methods    *resilient.Breakers
}

// WithIdempotentMethods marks methods as safe to repeat, by full method
// name as gRPC writes it ("/package.Service/Method"): their calls are
// retried after any retryable status (see [RetryableCode]), and their
// unary calls are hedged when the executor hedges. A name that is not of
// that form is an error (naming every such name). Default: only the
// methods whose descriptor says so (see [WithProtoRegistry]) and calls made
// with [Idempotent].
func WithIdempotentMethods(fullMethods ...string) Option {
	return optionFunc(func(c *config) error {
		var bad []string
		for _, m := range fullMethods {
			if !validMethod(m) {
				bad = append(bad, fmt.Sprintf("%q is not a full method name (/package.Service/Method)", m))
				continue
			}
			c.idempotent[m] = true
		}
		if bad != nil {
			return optionError("WithIdempotentMethods", "%s", strings.Join(bad, "; "))
		}
		return nil
	})
}

func validMethod(m string) bool {
	if len(m) < 4 || m[0] != '/' {
		return false
	}
	i := strings.IndexByte(m[1:], '/')
	return i > 0 && i < len(m)-2 && strings.IndexByte(m[i+2:], '/') < 0
}

// WithProtoRegistry sets where method descriptors are looked up: a method
// whose descriptor has the option idempotency_level = NO_SIDE_EFFECTS or
// IDEMPOTENT is safe to repeat. Each method is looked up once, on its first
// call. Default: protoregistry.GlobalFiles, where generated code registers
// its files. Nil turns the lookup off.
func WithProtoRegistry(files *protoregistry.Files) Option {
	return optionFunc(func(c *config) error {
		c.files = files
		return nil
	})
}

// WithRetryCodes replaces the status codes that calls safe to repeat are
// retried after (default: see [RetryableCode]). RESOURCE_EXHAUSTED with
// server pushback is retried whatever the set; listing it retries it
// without (and a breaker given to the executor then counts it as a
// failure: without pushback it is not marked [resilient.Throttled]). OK and
// codes outside gRPC's 0-16 are errors (naming every such code).
func WithRetryCodes(cs ...codes.Code) Option {
	return optionFunc(func(c *config) error {
		s, err := codeSetOf("WithRetryCodes", cs)
		c.table.retry = s
		return err
	})
}

// WithFailureCodes replaces the status codes that count as failures of the
// upstream for every breaker of the interceptor (default: see
// [FailureCode]). A code that is neither retried nor a failure is a
// success for the upstream's health, and its status goes to the caller as
// it is. A failure the server sent pushback with may still count neither
// way: a RESOURCE_EXHAUSTED with pushback always does (see [Classify]). OK
// and codes outside gRPC's 0-16 are errors (naming every such code).
func WithFailureCodes(cs ...codes.Code) Option {
	return optionFunc(func(c *config) error {
		s, err := codeSetOf("WithFailureCodes", cs)
		c.table.failure = s
		return err
	})
}

func codeSetOf(opt string, cs []codes.Code) (codeSet, error) {
	var bad []string
	for _, c := range cs {
		if c == codes.OK || c > codes.Unauthenticated {
			bad = append(bad, fmt.Sprintf("invalid code %v", c))
		}
	}
	if bad != nil {
		return 0, optionError(opt, "%s", strings.Join(bad, "; "))
	}
	return setOf(cs...), nil
}

// WithTargetBreakers guards each target (the ClientConn's Target(), such as
// "dns:///users:443") with its own breaker from set, and WithMethodBreakers
// each full method name. Each attempt is counted: a status of
// [FailureCode] (or [WithFailureCodes]) is a failure, any other answer a
// success, the caller's own cancellation and a hedge that lost neither,
// nor a failure the server asked for less traffic with (a wait as
// pushback, unless the set has [resilient.WithOpenFromHint]; any pushback
// on RESOURCE_EXHAUSTED, see [Classify]). A
// refusal ends the call at once, before anything is sent, with an error
// matching [resilient.ErrOpen] and [resilient.ErrRejected]; the call's
// status is UNAVAILABLE. Build the set with [resilient.NewBreakers]; its
// options decide when a breaker opens, and with
// [resilient.WithOpenFromHint] a pushback sets how long it stays open.
// Default: none. Nil is invalid.
//
// Decision: these breakers are policies of the executor, so a refusal is a
// rejection like any policy's (no attempt made, no wait), and hedges pass
// them. They differ from a breaker given to the executor with
// [resilient.WithBreaker] in two ways: they are keyed, and they count by
// the failure codes rather than by the retry decision.
func WithTargetBreakers(set *resilient.Breakers) Option {
	return optionFunc(func(c *config) error {
		if set == nil {
			return optionError("WithTargetBreakers", "nil set")
		}
		c.targets = set
		return nil
	})
}

// WithMethodBreakers guards each full method name with its own breaker
// from set, counted as [WithTargetBreakers] counts. An interceptor shared by
// connections to several targets shares a method's breaker between them;
// give each target its own interceptor, or use both options, when that
// matters. Nil is invalid.
func WithMethodBreakers(set *resilient.Breakers) Option {
	return optionFunc(func(c *config) error {
		if set == nil {
			return optionError("WithMethodBreakers", "nil set")
		}
		c.methods = set
		return nil
	})
}

// Call options: what one call may set apart from its method's defaults.
// Each is a grpc.CallOption, passed with the call:
//
//	reply, err := client.Get(ctx, req, resilientgrpc.Idempotent())

// callOption carries one call's setting to the interceptors; grpc itself
// ignores it.
type callOption struct {
	grpc.EmptyCallOption
	kind    callKind
	timeout time.Duration
	replay  func(context.Context, grpc.ClientStream, []any) error
}

type callKind uint8

const (
	kindIdempotent callKind = iota + 1
	kindNoRetry
	kindAttemptTimeout
	kindReplay
)

var (
	idempotentOption grpc.CallOption = &callOption{kind: kindIdempotent}
	noRetryOption    grpc.CallOption = &callOption{kind: kindNoRetry}
)

// Idempotent marks this call as safe to repeat, whatever its method: it is
// retried after any retryable status, and hedged (unary calls) when the
// executor hedges.
func Idempotent() grpc.CallOption { return idempotentOption }

// NoRetry makes this call a single attempt: it still passes the executor's
// policies (a breaker may refuse it, and counts it), but is never retried
// or hedged, whatever the failure.
func NoRetry() grpc.CallOption { return noRetryOption }

// AttemptTimeout bounds each attempt of this call to d, on top of the
// executor's own per-attempt timeout and the caller's deadline: an
// attempt's deadline is the earliest of the three, and is what the server
// is told (grpc-timeout). An attempt that times out while the caller's
// context is alive is retried if the call is safe to repeat. For a stream,
// d bounds the time until the stream is committed (see the package doc),
// not the stream's whole life. d must be > 0; otherwise the call fails at
// once, unsent, with a [*resilient.OptionError] that names the option.
func AttemptTimeout(d time.Duration) grpc.CallOption {
	return &callOption{kind: kindAttemptTimeout, timeout: d}
}

// Replay lets a client-streaming or bidirectional stream be retried after
// its first message was sent, until a response message arrives (or the
// caller reads the headers): when the stream fails in a retryable way
// before then, a new stream is opened and fn is called with it and with
// the messages the caller has sent so far, in order, to bring the new
// stream to where the failed one was. Most callers pass [ResendAll]; a
// resumable protocol sends something shorter. Then CloseSend is repeated
// if the caller had called it, and the caller's pending operation goes on
// on the new stream.
//
// The messages are kept, by reference, until the stream commits: gRPC
// forbids changing a message once it is given to SendMsg, so they are what
// was sent. While the stream is not committed, SendMsg never reports io.EOF
// for a stream that failed: the message is among those fn gets. fn runs on
// the interceptor's goroutine while the caller's calls on the stream wait,
// so it must not wait for them. An error from fn ends the attempt (a status
// error is classified as any; another error ends the call).
//
// The call must still be safe to repeat (see [Idempotent]): without that,
// a stream is retried only when it could not be opened. A nil fn fails the
// call at once, unsent, with a [*resilient.OptionError] that names the
// option. Server-streaming calls need no Replay: their request is always
// sent again.
func Replay(fn func(ctx context.Context, s grpc.ClientStream, sent []any) error) grpc.CallOption {
	return &callOption{kind: kindReplay, replay: fn}
}

// ResendAll is a replay function (see [Replay]) that sends every message
// again, in order.
func ResendAll(_ context.Context, s grpc.ClientStream, sent []any) error {
	for _, m := range sent {
		if err := s.SendMsg(m); err != nil {
			return err
		}
	}
	return nil
}

// callSettings are one call's options, read from its CallOptions.
type callSettings struct {
	idempotent bool
	noRetry    bool
	timeout    time.Duration
	replay     func(context.Context, grpc.ClientStream, []any) error
	err        error
}

func settingsOf(opts []grpc.CallOption) callSettings {
	var s callSettings
	var errs []error // every invalid call option is reported
	for _, o := range opts {
		co, ok := o.(*callOption)
		if !ok {
			continue
		}
		switch co.kind {
		case kindIdempotent:
			s.idempotent = true
		case kindNoRetry:
			s.noRetry = true
		case kindAttemptTimeout:
			if co.timeout <= 0 {
				errs = append(errs, optionError("AttemptTimeout", "d must be > 0, got %v", co.timeout))
			}
			s.timeout = co.timeout
		case kindReplay:
			if co.replay == nil {
				errs = append(errs, optionError("Replay", "nil function"))
			}
			s.replay = co.replay
		}
	}
	if errs != nil {
		s.err = join(errs)
	}
	return s
}
