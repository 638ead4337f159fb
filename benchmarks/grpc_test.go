package benchmarks

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/resilient-go/resilient"
	resilientgrpc "github.com/resilient-go/resilient/contrib/grpc"
)

// Scenario 8: a unary gRPC call over loopback TCP.
//
// Every client gets the same job: call bench.Echo/Get on a grpc.Server
// listening on 127.0.0.1 with a small google.protobuf.StringValue, and
// check the answer. Each client has its own server and its own connection,
// warmed by 100 calls. The retrying clients are configured as in scenario
// 1 (3 attempts in all, exponential backoff from 100ms, capped at 5s, with
// jitter) for the success path, and with (nearly) zero delay for the
// UNAVAILABLE-UNAVAILABLE-OK path:
//
//   - plain: no interceptor; on the flaky path, a hand-written loop of
//     three attempts.
//   - resilient: contrib/grpc's interceptor on an executor; the method is
//     marked idempotent (WithIdempotentMethods), since the peers retry
//     every call whatever its method.
//   - middleware: go-grpc-middleware v2's retry.UnaryClientInterceptor with
//     WithMax(3) and its exponential backoff with jitter.
//   - serviceconfig: grpc-go's own retry policy, from a default service
//     config (maxAttempts 3, retryableStatusCodes UNAVAILABLE). grpc-go
//     wants a backoff above zero: the flaky path uses 1µs.

const (
	grpcService = "bench.Echo"
	grpcMethod  = "/" + grpcService + "/Get"
)

// grpcUpstream is a grpc.Server that echoes; with flaky set it answers
// UNAVAILABLE, UNAVAILABLE, OK in turn.
type grpcUpstream struct {
	srv      *grpc.Server
	addr     string
	requests atomic.Int64
	served   chan struct{}
}

func newGRPCUpstream(tb testing.TB, flaky bool) *grpcUpstream {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &grpcUpstream{srv: grpc.NewServer(), addr: l.Addr().String(), served: make(chan struct{})}
	u.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: grpcService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Get",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				if n := u.requests.Add(1); flaky && n%3 != 0 {
					return nil, status.Error(codes.Unavailable, "unavailable")
				}
				return in, nil
			},
		}},
	}, nil)
	go func() {
		defer close(u.served)
		_ = u.srv.Serve(l)
	}()
	return u
}

func (u *grpcUpstream) Close() {
	u.srv.Stop()
	<-u.served
}

// grpcOp is one call through a client: it returns the answer's value.
type grpcOp func(ctx context.Context) (string, error)

type grpcLib struct {
	name  string
	build func(addr string, flaky bool) (grpcOp, func(), error)
}

const grpcPayload = "the quick brown fox jumps over the lazy dog"

// dialAndCall dials addr with opts and makes a client whose calls pass
// callOpts.
func dialAndCall(addr string, loop bool, opts ...grpc.DialOption) (grpcOp, func(), error) {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	req := wrapperspb.String(grpcPayload)
	once := func(ctx context.Context) (string, error) {
		reply := new(wrapperspb.StringValue)
		err := cc.Invoke(ctx, grpcMethod, req, reply)
		return reply.GetValue(), err
	}
	if !loop {
		return once, func() { _ = cc.Close() }, nil
	}
	return func(ctx context.Context) (string, error) {
		for i := range attempts {
			v, err := once(ctx)
			if status.Code(err) != codes.Unavailable || i == attempts-1 {
				return v, err
			}
		}
		panic("unreachable")
	}, func() { _ = cc.Close() }, nil
}

var grpcLibs = []grpcLib{
	{"plain", func(addr string, flaky bool) (grpcOp, func(), error) {
		return dialAndCall(addr, flaky)
	}},
	{"resilient", func(addr string, flaky bool) (grpcOp, func(), error) {
		b := resilient.Exponential(base, capDelay)
		if flaky {
			b = resilient.Constant(0)
		}
		ic, err := resilientgrpc.New(resilient.MustNew(
			resilient.WithAttempts(attempts),
			resilient.WithBackoff(b),
		), resilientgrpc.WithIdempotentMethods(grpcMethod))
		if err != nil {
			return nil, nil, err
		}
		return dialAndCall(addr, false, ic.DialOptions()...)
	}},
	{"middleware", func(addr string, flaky bool) (grpcOp, func(), error) {
		bo := retry.BackoffExponentialWithJitterBounded(base, 0.5, capDelay)
		if flaky {
			bo = retry.BackoffLinear(0)
		}
		return dialAndCall(addr, false, grpc.WithChainUnaryInterceptor(
			retry.UnaryClientInterceptor(retry.WithMax(attempts), retry.WithBackoff(bo))))
	}},
	{"serviceconfig", func(addr string, flaky bool) (grpcOp, func(), error) {
		initial := "0.1s"
		if flaky {
			initial = "0.000001s"
		}
		cfg := fmt.Sprintf(`{"methodConfig": [{"name": [{"service": %q}], "retryPolicy": {
			"maxAttempts": %d, "initialBackoff": %q, "maxBackoff": "5s", "backoffMultiplier": 2,
			"retryableStatusCodes": ["UNAVAILABLE"]}}]}`, grpcService, attempts, initial)
		return dialAndCall(addr, false, grpc.WithDefaultServiceConfig(cfg))
	}},
}

func benchmarkGRPC(b *testing.B, flaky bool) {
	for _, l := range grpcLibs {
		b.Run("lib="+l.name, func(b *testing.B) {
			u := newGRPCUpstream(b, flaky)
			defer u.Close()
			call, closeClient, err := l.build(u.addr, flaky)
			if err != nil {
				b.Fatal(err)
			}
			defer closeClient()
			ctx := context.Background()
			// The same start for every client: its connection dialled and
			// warm, and no garbage left by the benchmark that ran before.
			for range 100 {
				if v, err := call(ctx); err != nil || v != grpcPayload {
					b.Fatal(v, err)
				}
			}
			runtime.GC()
			before := u.requests.Load()
			b.ReportAllocs()
			for b.Loop() {
				if v, err := call(ctx); err != nil || v != grpcPayload {
					b.Fatal(v, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(u.requests.Load()-before)/float64(b.N), "requests/op")
		})
	}
}

// BenchmarkGRPCUnary is scenario 8, success path: one request per call.
func BenchmarkGRPCUnary(b *testing.B) { benchmarkGRPC(b, false) }

// BenchmarkGRPCUnaryFlaky is scenario 8, UNAVAILABLE-UNAVAILABLE-OK path
// with (nearly) zero delay: three requests per call.
func BenchmarkGRPCUnaryFlaky(b *testing.B) { benchmarkGRPC(b, true) }

// TestGRPCLibsAgree checks that every client of scenario 8 makes exactly
// the calls the benchmark claims: one request per call on the success
// path, three on the flaky one.
func TestGRPCLibsAgree(t *testing.T) {
	for _, flaky := range []bool{false, true} {
		for _, l := range grpcLibs {
			t.Run(fmt.Sprintf("%s/flaky=%v", l.name, flaky), func(t *testing.T) {
				u := newGRPCUpstream(t, flaky)
				defer u.Close()
				call, closeClient, err := l.build(u.addr, flaky)
				if err != nil {
					t.Fatal(err)
				}
				defer closeClient()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for range 10 {
					if v, err := call(ctx); err != nil || v != grpcPayload {
						t.Fatal(v, err)
					}
				}
				want := int64(10)
				if flaky {
					want = 30
				}
				if got := u.requests.Load(); got != want {
					t.Fatalf("%d requests for 10 calls, want %d", got, want)
				}
			})
		}
	}
}
