package grpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/resilient-go/resilient"
	resilientgrpc "github.com/resilient-go/resilient/contrib/grpc"
)

// flakyServer starts an in-memory gRPC server (bufconn) whose method
// /demo.Users/Get answers with the given statuses in turn (codes.OK
// echoes), and returns a dial option that reaches it and a stop function.
func flakyServer(answers ...codes.Code) (grpc.DialOption, func()) {
	lis := bufconn.Listen(1 << 16)
	var n atomic.Int32
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "demo.Users",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Get",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				i := int(n.Add(1)) - 1
				if i < len(answers) && answers[i] != codes.OK {
					if answers[i] == codes.ResourceExhausted {
						_ = grpc.SetTrailer(ctx, metadata.Pairs(resilientgrpc.PushbackKey, "20"))
					}
					return nil, status.Error(answers[i], "try later")
				}
				return wrapperspb.String("user " + in.Value), nil
			},
		}},
	}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	dial := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	return dial, func() { srv.Stop(); <-done }
}

func Example() {
	dial, stop := flakyServer(codes.Unavailable, codes.Unavailable)
	defer stop()

	usersAPI := resilient.MustNew(
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Exponential(10*time.Millisecond, time.Second)),
		resilient.WithHooks(resilient.Hooks{OnRetry: func(ev resilient.RetryEvent) {
			fmt.Printf("attempt %d: %s; retrying\n", ev.Attempt, status.Code(ev.Err))
		}}),
	)
	ic := resilientgrpc.MustNew(usersAPI, resilientgrpc.WithIdempotentMethods("/demo.Users/Get"))
	conn, err := grpc.NewClient("passthrough:///users",
		append(ic.DialOptions(), dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	reply := new(wrapperspb.StringValue)
	err = conn.Invoke(context.Background(), "/demo.Users/Get", wrapperspb.String("42"), reply)
	fmt.Println(reply.GetValue(), err)
	// Output:
	// attempt 1: Unavailable; retrying
	// attempt 2: Unavailable; retrying
	// user 42 <nil>
}

// A call that is not marked idempotent is sent once when the server
// answered, even with UNAVAILABLE; Idempotent allows one call to be
// repeated.
func ExampleIdempotent() {
	dial, stop := flakyServer(codes.Unavailable, codes.Unavailable)
	defer stop()

	ic := resilientgrpc.MustNew(resilient.MustNew(resilient.WithBackoff(resilient.Constant(0))))
	conn, err := grpc.NewClient("passthrough:///users",
		append(ic.DialOptions(), dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	reply := new(wrapperspb.StringValue)
	err = conn.Invoke(context.Background(), "/demo.Users/Get", wrapperspb.String("1"), reply)
	fmt.Println(status.Code(err), how(err))

	err = conn.Invoke(context.Background(), "/demo.Users/Get", wrapperspb.String("2"), reply,
		resilientgrpc.Idempotent())
	fmt.Println(reply.GetValue(), err)
	// Output:
	// Unavailable permanent after 1 attempt
	// user 2 <nil>
}

// how tells how the executor ended a call.
func how(err error) string {
	var re *resilient.Error
	if !errors.As(err, &re) {
		return "not a resilient.Error"
	}
	return fmt.Sprintf("%s after %d attempt", re.Reason, re.Attempts)
}

// Server pushback (grpc-retry-pushback-ms) is a floor for the next wait,
// and makes RESOURCE_EXHAUSTED retryable.
func ExampleClassify() {
	dial, stop := flakyServer(codes.ResourceExhausted)
	defer stop()

	ex := resilient.MustNew(
		resilient.WithBackoff(resilient.Constant(time.Millisecond)),
		resilient.WithHooks(resilient.Hooks{OnRetry: func(ev resilient.RetryEvent) {
			fmt.Printf("%s: wait %v (from the %s)\n", status.Code(ev.Err), ev.Delay.Truncate(10*time.Millisecond), ev.Source)
		}}),
	)
	ic := resilientgrpc.MustNew(ex, resilientgrpc.WithIdempotentMethods("/demo.Users/Get"))
	conn, err := grpc.NewClient("passthrough:///users",
		append(ic.DialOptions(), dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	reply := new(wrapperspb.StringValue)
	err = conn.Invoke(context.Background(), "/demo.Users/Get", wrapperspb.String("7"), reply)
	fmt.Println(reply.GetValue(), err)

	fmt.Println(resilientgrpc.Classify(status.Error(codes.NotFound, "")))
	fmt.Println(resilientgrpc.Classify(status.Error(codes.Internal, "")))
	fmt.Println(resilientgrpc.Classify(status.Error(codes.Unavailable, "")))
	// Output:
	// ResourceExhausted: wait 20ms (from the hint)
	// user 7 <nil>
	// success
	// fail
	// retry
}
