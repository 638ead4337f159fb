package grpc

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/resilient-go/resilient"
)

// list opens a server-streaming call and reads it to its end.
func list(ctx context.Context, cc *grpc.ClientConn, v string, opts ...grpc.CallOption) ([]string, error) {
	s, err := cc.NewStream(ctx, listDesc, mList, opts...)
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(wrapperspb.String(v)); err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	return readAll(s)
}

func readAll(s grpc.ClientStream) ([]string, error) {
	var got []string
	for {
		m := new(wrapperspb.StringValue)
		err := s.RecvMsg(m)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m.Value)
	}
}

// upload sends each value in turn on a client-streaming call, then closes
// and receives the answer.
func upload(ctx context.Context, cc *grpc.ClientConn, vs []string, opts ...grpc.CallOption) (string, error) {
	s, err := cc.NewStream(ctx, uploadDesc, mUpload, opts...)
	if err != nil {
		return "", err
	}
	for _, v := range vs {
		if err := s.SendMsg(wrapperspb.String(v)); err != nil {
			if err == io.EOF {
				break // the status comes from RecvMsg
			}
			return "", err
		}
	}
	if err := s.CloseSend(); err != nil {
		return "", err
	}
	m := new(wrapperspb.StringValue)
	err = s.RecvMsg(m)
	return m.Value, err
}

func TestServerStreamRetriedUntilTheFirstMessage(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			rec := recorder{ended: make(chan struct{}, 1)}
			cc := e.client(MustNew(quick(resilient.WithHooks(rec.hooks()))).DialOptions()...)
			e.srv.plan(mList, step{code: codes.Unavailable}, step{code: codes.Aborted})
			got, err := list(testCtx(t), cc, "x", Idempotent())
			require.NoError(t, err)
			rec.wait(t, 1)
			assert.Equal(t, []string{"x 0", "x 1", "x 2"}, got)
			assert.Equal(t, 3, e.srv.count(mList))
			assert.Equal(t, []string{"x", "x", "x"}, e.srv.received(), "the request is sent again")
			assert.Equal(t, []resilient.Outcome{resilient.Retry, resilient.Retry, resilient.Success}, rec.outcomes())
		})
	}
}

func TestServerStreamCommitted(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick()).DialOptions()...)
	t.Run("after the first message", func(t *testing.T) {
		e.srv.plan(mList, step{code: codes.Unavailable, msgs: 1})
		before := e.srv.count(mList)
		got, err := list(testCtx(t), cc, "x", Idempotent())
		assert.Equal(t, []string{"x 0"}, got)
		assert.Equal(t, codes.Unavailable, status.Code(err), "the stream's error goes to the caller")
		assert.Equal(t, before+1, e.srv.count(mList))
	})
	t.Run("once the headers are read", func(t *testing.T) {
		e.srv.plan(mList, step{code: codes.Unavailable, header: true})
		before := e.srv.count(mList)
		s, err := cc.NewStream(testCtx(t), listDesc, mList, Idempotent())
		require.NoError(t, err)
		require.NoError(t, s.SendMsg(wrapperspb.String("x")))
		require.NoError(t, s.CloseSend())
		md, err := s.Header()
		require.NoError(t, err)
		assert.Equal(t, []string{"open"}, md.Get("stream"))
		_, err = readAll(s)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mList))
	})
	t.Run("not safe to repeat", func(t *testing.T) {
		e.srv.plan(mList, step{code: codes.Unavailable})
		before := e.srv.count(mList)
		_, err := list(testCtx(t), cc, "x")
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mList))
	})
	t.Run("answered", func(t *testing.T) {
		e.srv.plan(mList, step{code: codes.NotFound})
		before := e.srv.count(mList)
		_, err := list(testCtx(t), cc, "x", Idempotent())
		assert.Equal(t, codes.NotFound, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mList))
	})
}

// The attempt timeout bounds the wait for the first message, not the
// stream: the server is told the caller's deadline.
func TestServerStreamAttemptTimeout(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick()).DialOptions()...)
	e.srv.plan(mList, step{stall: 10 * time.Second, msgs: 1}, step{msgs: 2, delay: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := list(ctx, cc, "x", Idempotent(), AttemptTimeout(100*time.Millisecond))
	require.NoError(t, err, "a committed stream outlives the attempt timeout")
	assert.Equal(t, []string{"x 0", "x 1"}, got)
	assert.Equal(t, 2, e.srv.count(mList))
}

func TestClientStream(t *testing.T) {
	// Each case has its own server: a stream a retry gave up on may reach
	// the server late, and would be counted by the next case.
	var (
		e  *env
		cc *grpc.ClientConn
	)
	fresh := func(t *testing.T) {
		e = startServer(t, bufTransport)
		cc = e.client(MustNew(quick()).DialOptions()...)
	}
	t.Run("committed at the first message sent", func(t *testing.T) {
		fresh(t)
		e.srv.plan(mUpload, step{code: codes.Unavailable, msgs: 1})
		before := e.srv.count(mUpload)
		_, err := upload(testCtx(t), cc, []string{"a", "b"}, Idempotent())
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mUpload))
	})
	t.Run("retried before anything was sent", func(t *testing.T) {
		fresh(t)
		e.srv.plan(mUpload, step{code: codes.Unavailable, msgs: 0})
		before := e.srv.count(mUpload)
		s, err := cc.NewStream(testCtx(t), uploadDesc, mUpload, Idempotent())
		require.NoError(t, err)
		// The server refuses the stream before the caller sends: the
		// caller learns it by receiving, and the stream is opened again.
		m := new(wrapperspb.StringValue)
		require.NoError(t, s.CloseSend())
		require.NoError(t, s.RecvMsg(m))
		assert.Equal(t, "", m.Value)
		assert.Equal(t, before+2, e.srv.count(mUpload))
	})
	t.Run("with a replay function", func(t *testing.T) {
		fresh(t)
		e.srv.plan(mUpload, step{code: codes.Unavailable, msgs: 2})
		before := e.srv.count(mUpload)
		var replays atomic.Int32
		replay := func(ctx context.Context, s grpc.ClientStream, sent []any) error {
			replays.Add(1)
			return ResendAll(ctx, s, sent)
		}
		got, err := upload(testCtx(t), cc, []string{"a", "b", "c"}, Idempotent(), Replay(replay))
		require.NoError(t, err)
		assert.Equal(t, "abc", got, "every message, once")
		assert.Equal(t, int32(1), replays.Load())
		assert.Equal(t, before+2, e.srv.count(mUpload))
	})
	t.Run("a replay function's error ends the call", func(t *testing.T) {
		fresh(t)
		e.srv.plan(mUpload, step{code: codes.Unavailable, msgs: 1})
		oops := errors.New("oops")
		_, err := upload(testCtx(t), cc, []string{"a", "b"}, Idempotent(),
			Replay(func(context.Context, grpc.ClientStream, []any) error { return oops }))
		assert.ErrorIs(t, err, oops)
	})
	t.Run("a replay function does not make a call safe to repeat", func(t *testing.T) {
		fresh(t)
		e.srv.plan(mUpload, step{code: codes.Unavailable, msgs: 1})
		before := e.srv.count(mUpload)
		_, err := upload(testCtx(t), cc, []string{"a", "b"}, Replay(ResendAll))
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mUpload))
	})
}

// A stream that cannot be opened never left, so it is retried whatever its
// method.
func TestStreamNeverLeft(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			cc := e.client(MustNew(resilient.MustNew(
				resilient.WithAttempts(50),
				resilient.WithBackoff(resilient.Constant(2*time.Millisecond)),
			)).DialOptions()...)
			e.failDials.Store(2)
			got, err := upload(testCtx(t), cc, []string{"a", "b"})
			require.NoError(t, err)
			assert.Equal(t, "ab", got)
			assert.Equal(t, 1, e.srv.count(mUpload))
			assert.Greater(t, e.dials.Load(), int32(2))
		})
	}
}

func TestBidiStream(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick()).DialOptions()...)
	t.Run("retried before the first message is sent", func(t *testing.T) {
		e.srv.plan(mChat, step{code: codes.Unavailable}, step{code: codes.Unavailable})
		s, err := cc.NewStream(testCtx(t), chatDesc, mChat, Idempotent())
		require.NoError(t, err)
		done := make(chan error, 1)
		got := new(wrapperspb.StringValue)
		go func() { done <- s.RecvMsg(got) }()
		// The receive waits through the retries; the send commits the
		// third stream.
		require.Eventually(t, func() bool { return e.srv.count(mChat) == 3 }, callTimeout, time.Millisecond)
		require.NoError(t, s.SendMsg(wrapperspb.String("hi")))
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(callTimeout):
			t.Fatal("no answer")
		}
		assert.Equal(t, "echo: hi", got.Value)
		require.NoError(t, s.CloseSend())
		_, err = readAll(s)
		require.NoError(t, err)
	})
	t.Run("with a replay function, until the first message received", func(t *testing.T) {
		// The first stream takes two messages without answering, then
		// fails: the new stream gets all three again.
		e.srv.plan(mChat, step{code: codes.Unavailable, msgs: 2, quiet: true})
		before := e.srv.count(mChat)
		s, err := cc.NewStream(testCtx(t), chatDesc, mChat, Idempotent(), Replay(ResendAll))
		require.NoError(t, err)
		for _, v := range []string{"a", "b", "c"} {
			require.NoError(t, s.SendMsg(wrapperspb.String(v)), "a failed stream's io.EOF is not reported before it commits")
		}
		require.NoError(t, s.CloseSend())
		got, err := readAll(s)
		require.NoError(t, err)
		assert.Equal(t, before+2, e.srv.count(mChat))
		assert.Equal(t, []string{"echo: a", "echo: b", "echo: c"}, got)
	})
	t.Run("committed at the first message received", func(t *testing.T) {
		e.srv.plan(mChat, step{code: codes.Unavailable, msgs: 1})
		before := e.srv.count(mChat)
		s, err := cc.NewStream(testCtx(t), chatDesc, mChat, Idempotent(), Replay(ResendAll))
		require.NoError(t, err)
		require.NoError(t, s.SendMsg(wrapperspb.String("a")))
		require.NoError(t, s.SendMsg(wrapperspb.String("b")))
		got, err := readAll(s)
		assert.Equal(t, []string{"echo: a"}, got)
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, before+1, e.srv.count(mChat))
	})
	t.Run("the caller's cancellation ends a retry", func(t *testing.T) {
		e.srv.plan(mChat, step{code: codes.Unavailable, msgs: 0})
		ex := resilient.MustNew(resilient.WithAttempts(3), resilient.WithBackoff(resilient.Constant(time.Hour)))
		cc := e.client(MustNew(ex).DialOptions()...)
		ctx, cancel := context.WithCancel(context.Background()) // no deadline: the wait is an hour
		defer cancel()
		s, err := cc.NewStream(ctx, chatDesc, mChat, Idempotent())
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- s.RecvMsg(new(wrapperspb.StringValue)) }()
		require.Eventually(t, func() bool { return e.srv.count(mChat) > 0 }, callTimeout, time.Millisecond)
		cancel()
		select {
		case err := <-done:
			assert.Equal(t, codes.Canceled, status.Code(err))
		case <-time.After(callTimeout):
			t.Fatal("the retry's wait did not end")
		}
	})
}

func TestStreamBreakerRefusal(t *testing.T) {
	e := startServer(t, bufTransport)
	set := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Hour))
	cc := e.client(MustNew(quick(resilient.WithAttempts(1)), WithMethodBreakers(set)).DialOptions()...)
	e.srv.plan(mList, step{code: codes.Internal})
	_, err := list(testCtx(t), cc, "x", Idempotent())
	assert.Equal(t, codes.Internal, status.Code(err))
	_, err = cc.NewStream(testCtx(t), listDesc, mList, Idempotent())
	assert.ErrorIs(t, err, resilient.ErrOpen)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	_, err = cc.NewStream(testCtx(t), uploadDesc, mUpload)
	assert.NoError(t, err, "another method")
	assert.Equal(t, 1, e.srv.count(mList))
}
