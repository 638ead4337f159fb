package grpc

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The test service, written by hand (no protoc): resilient.test.Echo,
// whose messages are google.protobuf.StringValue, so that grpc's default
// proto codec serves it. Its descriptor, registered in the global registry
// by init, marks Get NO_SIDE_EFFECTS and Put IDEMPOTENT; Create, Stop and
// the streams have no idempotency level.
const service = "resilient.test.Echo"

const (
	mGet    = "/" + service + "/Get"
	mPut    = "/" + service + "/Put"
	mCreate = "/" + service + "/Create"
	mList   = "/" + service + "/List"   // server-streaming
	mUpload = "/" + service + "/Upload" // client-streaming
	mChat   = "/" + service + "/Chat"   // bidirectional
)

var (
	listDesc   = &grpc.StreamDesc{StreamName: "List", ServerStreams: true}
	uploadDesc = &grpc.StreamDesc{StreamName: "Upload", ClientStreams: true}
	chatDesc   = &grpc.StreamDesc{StreamName: "Chat", ClientStreams: true, ServerStreams: true}
)

// echoFile is the service's descriptor.
func echoFile(t testing.TB, levels map[string]descriptorpb.MethodOptions_IdempotencyLevel) protoreflect.FileDescriptor {
	str := ".google.protobuf.StringValue"
	method := func(name string, cs, ss bool) *descriptorpb.MethodDescriptorProto {
		m := &descriptorpb.MethodDescriptorProto{
			Name: &name, InputType: &str, OutputType: &str,
			ClientStreaming: &cs, ServerStreaming: &ss,
		}
		if l, ok := levels[name]; ok {
			m.Options = &descriptorpb.MethodOptions{IdempotencyLevel: l.Enum()}
		}
		return m
	}
	name, pkg, svc := "resilient/test/echo.proto", "resilient.test", "Echo"
	fdp := &descriptorpb.FileDescriptorProto{
		Name: &name, Package: &pkg, Dependency: []string{"google/protobuf/wrappers.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: &svc,
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Get", false, false), method("Put", false, false), method("Create", false, false),
				method("List", false, true), method("Upload", true, false), method("Chat", true, true),
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		if t == nil {
			panic(err)
		}
		t.Fatal(err)
	}
	return fd
}

func init() {
	fd := echoFile(nil, map[string]descriptorpb.MethodOptions_IdempotencyLevel{
		"Get": descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
		"Put": descriptorpb.MethodOptions_IDEMPOTENT,
	})
	if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
		panic(err)
	}
}

// step is what the server does with one call.
type step struct {
	code     codes.Code    // the status to end with (OK: echo)
	pushback []string      // grpc-retry-pushback-ms values to send in the trailers
	delay    time.Duration // a wait before answering, cut short by the call's context
	drop     bool          // close the connection instead of answering
	msgs     int           // streams: messages to send before the status
	header   bool          // streams: send the headers first
	quiet    bool          // Chat: answer no message
	stall    time.Duration // List: a wait before the first message
}

// server is the test service: each method follows its own script of
// steps, then echoes. It records what it saw.
type server struct {
	mu        sync.Mutex
	script    map[string][]step
	calls     map[string]int
	requests  []string      // every request message received, in order
	deadlines []time.Time   // each call's deadline, zero for none
	canceled  atomic.Int32  // calls whose context ended before they answered
	lis       *listener     // to drop connections
	handled   chan struct{} // receives after each call ends, when not nil
	started   chan string   // receives each call's method as it starts, when not nil
}

func (s *server) plan(method string, steps ...step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[method] = append(s.script[method], steps...)
}

// next takes the method's next step, and records the call.
func (s *server) next(ctx context.Context, method string) step {
	if s.started != nil {
		defer func() { s.started <- method }() // once the call is counted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	dl, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, dl)
	if q := s.script[method]; len(q) > 0 {
		s.script[method] = q[1:]
		return q[0]
	}
	return step{}
}

func (s *server) count(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

func (s *server) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *server) record(v string) {
	s.mu.Lock()
	s.requests = append(s.requests, v)
	s.mu.Unlock()
}

// play performs st's wait, drop and trailers, and returns its status.
func (s *server) play(ctx context.Context, st step) error {
	if st.delay > 0 {
		t := time.NewTimer(st.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.canceled.Add(1)
			return ctx.Err()
		}
	}
	if st.drop {
		s.lis.dropAll()
		<-ctx.Done() // the connection is gone; the handler ends with it
		return ctx.Err()
	}
	if len(st.pushback) > 0 {
		_ = grpc.SetTrailer(ctx, metadata.MD{PushbackKey: st.pushback})
	}
	if st.code != codes.OK {
		return status.Error(st.code, "scripted "+st.code.String())
	}
	return nil
}

func (s *server) unary(method string) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		s.record(in.Value)
		defer s.done()
		if err := s.play(ctx, s.next(ctx, "/"+service+"/"+method)); err != nil {
			return nil, err
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("served-by", strconv.Itoa(s.count("/"+service+"/"+method))))
		return wrapperspb.String("echo: " + in.Value), nil
	}
}

func (s *server) done() {
	if s.handled != nil {
		s.handled <- struct{}{}
	}
}

// list sends the request back, msgs times (3 when the step says 0), then
// ends with the step's status.
func (s *server) list(_ any, ss grpc.ServerStream) error {
	defer s.done()
	st := s.next(ss.Context(), mList)
	in := new(wrapperspb.StringValue)
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	s.record(in.Value)
	n := st.msgs
	if n == 0 && st.code == codes.OK {
		n = 3
	}
	if st.header {
		_ = ss.SendHeader(metadata.Pairs("stream", "open"))
	}
	if st.stall > 0 {
		if err := s.play(ss.Context(), step{delay: st.stall}); err != nil {
			return err
		}
	}
	for i := range n {
		if err := ss.SendMsg(wrapperspb.String(in.Value + " " + strconv.Itoa(i))); err != nil {
			return err
		}
	}
	return s.play(ss.Context(), st)
}

// upload receives every message, then answers with them joined, or with
// the step's status after st.msgs messages.
func (s *server) upload(_ any, ss grpc.ServerStream) error {
	defer s.done()
	st := s.next(ss.Context(), mUpload)
	var got string
	for i := 0; ; i++ {
		if st.code != codes.OK && i == st.msgs {
			return s.play(ss.Context(), st)
		}
		in := new(wrapperspb.StringValue)
		err := ss.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		s.record(in.Value)
		got += in.Value
	}
	if err := s.play(ss.Context(), st); err != nil {
		return err
	}
	return ss.SendMsg(wrapperspb.String(got))
}

// chat answers each message with its echo; the step's status comes after
// st.msgs messages (0: before reading any).
func (s *server) chat(_ any, ss grpc.ServerStream) error {
	defer s.done()
	st := s.next(ss.Context(), mChat)
	for i := 0; ; i++ {
		if st.code != codes.OK && i == st.msgs {
			return s.play(ss.Context(), st)
		}
		in := new(wrapperspb.StringValue)
		err := ss.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.record(in.Value)
		if st.quiet {
			continue
		}
		if err := ss.SendMsg(wrapperspb.String("echo: " + in.Value)); err != nil {
			return err
		}
	}
}

func (s *server) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Get", Handler: s.unary("Get")},
			{MethodName: "Put", Handler: s.unary("Put")},
			{MethodName: "Create", Handler: s.unary("Create")},
		},
		Streams: []grpc.StreamDesc{
			{StreamName: "List", Handler: s.list, ServerStreams: true},
			{StreamName: "Upload", Handler: s.upload, ClientStreams: true},
			{StreamName: "Chat", Handler: s.chat, ClientStreams: true, ServerStreams: true},
		},
	}
}

// listener tracks the connections it accepts, so that a step can drop
// them.
type listener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *listener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// transport is where a test's server listens: bufconn (in memory) or
// loopback TCP.
type transport string

const (
	bufTransport transport = "bufconn"
	tcpTransport transport = "tcp"
)

var transports = []transport{bufTransport, tcpTransport}

// env is a running server and a way to dial it.
type env struct {
	t      testing.TB
	srv    *server
	dial   func(ctx context.Context, addr string) (net.Conn, error)
	target string
	// failDials makes the next n dials fail, as an unreachable server does.
	failDials atomic.Int32
	dials     atomic.Int32
}

func startServer(t testing.TB, tr transport) *env {
	t.Helper()
	e := &env{t: t, srv: &server{script: map[string][]step{}, calls: map[string]int{}}}
	var inner net.Listener
	switch tr {
	case bufTransport:
		bl := bufconn.Listen(1 << 20)
		inner = bl
		e.target = "passthrough:///bufnet"
		e.dial = func(ctx context.Context, _ string) (net.Conn, error) { return bl.DialContext(ctx) }
	case tcpTransport:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		inner = l
		e.target = "passthrough:///" + l.Addr().String()
		var d net.Dialer
		e.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	e.srv.lis = &listener{Listener: inner}
	gs := grpc.NewServer()
	gs.RegisterService(e.srv.desc(), nil)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(e.srv.lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return e
}

// client dials the server with the given options (an interceptor's
// DialOptions, say). Reconnection after a failed dial is quick, so that
// tests of unreachable servers do not wait for grpc's default backoff.
func (e *env) client(opts ...grpc.DialOption) *grpc.ClientConn {
	e.t.Helper()
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			e.dials.Add(1)
			if e.failDials.Add(-1) >= 0 {
				return nil, errors.New("test: dial refused")
			}
			e.failDials.Store(0)
			return e.dial(ctx, addr)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Millisecond, Multiplier: 1, MaxDelay: time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
	}
	cc, err := grpc.NewClient(e.target, append(base, opts...)...)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// callTimeout bounds every call of the tests.
const callTimeout = 10 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func call(ctx context.Context, cc *grpc.ClientConn, method, v string, opts ...grpc.CallOption) (string, error) {
	reply := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, method, wrapperspb.String(v), reply, opts...)
	return reply.GetValue(), err
}
