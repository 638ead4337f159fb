package grpc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/resilient-go/resilient"
)

// The documented table, code by code.
func TestClassifyTable(t *testing.T) {
	want := map[codes.Code]resilient.Outcome{
		codes.Canceled:           resilient.Success,
		codes.Unknown:            resilient.Fail,
		codes.InvalidArgument:    resilient.Success,
		codes.DeadlineExceeded:   resilient.Retry,
		codes.NotFound:           resilient.Success,
		codes.AlreadyExists:      resilient.Success,
		codes.PermissionDenied:   resilient.Success,
		codes.ResourceExhausted:  resilient.Success,
		codes.FailedPrecondition: resilient.Success,
		codes.Aborted:            resilient.Retry,
		codes.OutOfRange:         resilient.Success,
		codes.Unimplemented:      resilient.Success,
		codes.Internal:           resilient.Fail,
		codes.Unavailable:        resilient.Retry,
		codes.DataLoss:           resilient.Fail,
		codes.Unauthenticated:    resilient.Success,
	}
	failures := map[codes.Code]bool{codes.Unknown: true, codes.DeadlineExceeded: true, codes.Internal: true,
		codes.Unavailable: true, codes.DataLoss: true}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		err := status.Error(c, "x")
		assert.Equal(t, want[c], Classify(err), c.String())
		assert.Equal(t, want[c], Classify(fmt.Errorf("wrapped: %w", err)), "wrapped %s", c)
		assert.Equal(t, want[c] == resilient.Retry, RetryableCode(c), c.String())
		assert.Equal(t, failures[c], FailureCode(c), c.String())
	}
	assert.Equal(t, resilient.Success, Classify(nil))
	assert.Equal(t, resilient.Retry, Classify(resilient.RetryAfter(status.Error(codes.ResourceExhausted, "x"), time.Second)),
		"a hint makes RESOURCE_EXHAUSTED retryable")
	assert.Equal(t, resilient.Success, Classify(resilient.RetryAfter(status.Error(codes.ResourceExhausted, "x"), 0)))
	assert.Equal(t, resilient.Retry, Classify(context.DeadlineExceeded))
	assert.Equal(t, resilient.Unclassified, Classify(context.Canceled))
	assert.Equal(t, resilient.Unclassified, Classify(errors.New("not grpc")))
	assert.False(t, RetryableCode(codes.OK))
	assert.False(t, FailureCode(codes.OK))
	assert.False(t, FailureCode(codes.Code(99)))
}

func TestPushback(t *testing.T) {
	for _, c := range []struct {
		vs      []string
		d       time.Duration
		present bool
		ok      bool
	}{
		{nil, 0, false, true},
		{[]string{"0"}, 0, true, true},
		{[]string{"250"}, 250 * time.Millisecond, true, true},
		{[]string{"-1"}, 0, true, false},
		{[]string{""}, 0, true, false},
		{[]string{"1.5"}, 0, true, false},
		{[]string{" 5"}, 0, true, false},
		{[]string{"5ms"}, 0, true, false},
		{[]string{"1", "2"}, 0, true, false},
		{[]string{"9223372036854775807"}, maxDuration, true, true},
		{[]string{"99999999999999999999999"}, 0, true, false},
	} {
		md := metadata.MD{}
		if c.vs != nil {
			md[PushbackKey] = c.vs
		}
		d, present, ok := pushback(md)
		assert.Equal(t, c.d, d, "%q", c.vs)
		assert.Equal(t, c.present, present, "%q", c.vs)
		assert.Equal(t, c.ok, ok, "%q", c.vs)
	}
}

func FuzzPushback(f *testing.F) {
	for _, s := range []string{"0", "1", "-1", "", "abc", "9223372036854775807", "18446744073709551616", "+5", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, present, ok := pushback(metadata.MD{PushbackKey: {s}})
		if !present {
			t.Fatal("a value is present")
		}
		if d < 0 {
			t.Fatalf("negative wait %v for %q", d, s)
		}
		if !ok && d != 0 {
			t.Fatalf("a refusal with a wait, for %q", s)
		}
	})
}

// judge, case by case: what the executor is told. throttled says whether
// the core takes the attempt for the upstream asking for less traffic
// (marked resilient.Throttled, or with a wait as a hint): every
// RESOURCE_EXHAUSTED with pushback, whatever becomes of the call, and
// nothing else but a hint.
func TestJudge(t *testing.T) {
	alive := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	unavailable := status.Error(codes.Unavailable, "x")
	exhausted := status.Error(codes.ResourceExhausted, "x")
	pb := func(v ...string) metadata.MD { return metadata.MD{PushbackKey: v} }
	for _, c := range []struct {
		name      string
		caller    context.Context
		err       error
		info      attemptInfo
		want      resilient.Outcome
		hint      time.Duration
		throttled bool
	}{
		{"repeatable UNAVAILABLE", alive, unavailable, attemptInfo{repeatable: true}, resilient.Retry, 0, false},
		{"UNAVAILABLE, may have been sent", alive, unavailable, attemptInfo{}, resilient.Fail, 0, false},
		{"UNAVAILABLE, never left", alive, unavailable, attemptInfo{neverLeft: true}, resilient.Retry, 0, false},
		{"ABORTED, may have been sent", alive, status.Error(codes.Aborted, "x"), attemptInfo{}, resilient.Success, 0, false},
		{"INTERNAL, never left", alive, status.Error(codes.Internal, "x"), attemptInfo{neverLeft: true}, resilient.Fail, 0, false},
		{"pushback", alive, unavailable, attemptInfo{repeatable: true, trailers: pb("100")}, resilient.Retry, 100 * time.Millisecond, true},
		{"pushback: do not retry", alive, unavailable, attemptInfo{repeatable: true, trailers: pb("-5")}, resilient.Fail, 0, false},
		{"RESOURCE_EXHAUSTED with pushback", alive, exhausted,
			attemptInfo{repeatable: true, trailers: pb("0")}, resilient.Retry, 0, true},
		{"RESOURCE_EXHAUSTED with a wait", alive, exhausted,
			attemptInfo{repeatable: true, trailers: pb("20")}, resilient.Retry, 20 * time.Millisecond, true},
		{"RESOURCE_EXHAUSTED with pushback, may have been sent", alive, exhausted,
			attemptInfo{trailers: pb("10")}, resilient.Success, 0, true},
		{"RESOURCE_EXHAUSTED, do not retry", alive, exhausted,
			attemptInfo{repeatable: true, trailers: pb("soon")}, resilient.Success, 0, true},
		{"RESOURCE_EXHAUSTED without pushback", alive, exhausted, attemptInfo{repeatable: true}, resilient.Success, 0, false},
		{"not a gRPC error", alive, errors.New("x"), attemptInfo{repeatable: true}, resilient.Fail, 0, false},
		{"the caller's end", done, unavailable, attemptInfo{repeatable: true}, resilient.Retry, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := defaultTable.judge(c.caller, c.err, c.info)
			assert.Equal(t, c.want, outcomeOf(got))
			assert.ErrorIs(t, got, c.err, "the attempt's error is kept")
			var h interface{ RetryAfter() time.Duration }
			if c.hint > 0 {
				assert.True(t, errors.As(got, &h))
				assert.Equal(t, c.hint, h.RetryAfter())
			} else {
				assert.False(t, errors.As(got, &h) && h.RetryAfter() > 0)
			}
			assert.Equal(t, c.throttled, throttled(got))
		})
	}
}

// throttled reports whether the core takes err for the upstream asking for
// less traffic: a Throttle counts an attempt that failed with it as a
// request the upstream refused, any other as an accept.
func throttled(err error) bool {
	th := resilient.MustNewThrottle(resilient.WithAcceptMultiplier(1))
	th.Done(resilient.Permit{}, resilient.Report{Attempt: 1, Outcome: resilient.Fail, Err: err})
	return th.Probability() > 0
}

// outcomeOf is what the interceptors' executors make of an attempt's
// error, as recorded by the executor itself.
func outcomeOf(err error) resilient.Outcome {
	n := 0
	r := resilient.DoResult(context.Background(), func(context.Context) (int, error) {
		if n++; n == 1 {
			return 0, err
		}
		return 0, nil
	}, resilient.WithAttempts(2), resilient.WithBackoff(resilient.Constant(0)), resilient.WithClassifier(classifyMarked))
	return r.History[0].Outcome
}

// A stream through an executor that hedges is not hedged, and works.
func TestStreamWithHedgingExecutor(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick(resilient.WithHedge(time.Millisecond, 2))).DialOptions()...)
	e.srv.plan(mList, step{code: codes.Unavailable})
	got, err := list(testCtx(t), cc, "x", Idempotent())
	assert.NoError(t, err)
	assert.Equal(t, []string{"x 0", "x 1", "x 2"}, got)
	assert.Equal(t, 2, e.srv.count(mList))
}

// Many goroutines open streams of every kind through one interceptor,
// while the server fails some of them before they commit.
func TestStreamsConcurrent(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick(resilient.WithAttempts(10))).DialOptions()...)
	for range 20 {
		e.srv.plan(mList, step{code: codes.Unavailable})
		e.srv.plan(mChat, step{code: codes.Unavailable, msgs: 1, quiet: true})
	}
	errs := make(chan error, 32*3)
	done := make(chan struct{})
	for g := range 32 {
		go func() {
			defer func() { done <- struct{}{} }()
			v := fmt.Sprint(g)
			got, err := list(testCtx(t), cc, v, Idempotent())
			if err == nil && len(got) != 3 {
				err = fmt.Errorf("list %s: got %q", v, got)
			}
			if err != nil {
				errs <- err
			}
			s, err := cc.NewStream(testCtx(t), chatDesc, mChat, Idempotent(), Replay(ResendAll))
			if err != nil {
				errs <- err
				return
			}
			for _, m := range []string{v + "a", v + "b"} {
				if err := s.SendMsg(wrapperspb.String(m)); err != nil {
					errs <- err
					return
				}
			}
			if err := s.CloseSend(); err != nil {
				errs <- err
				return
			}
			msgs, err := readAll(s)
			if err == nil && (len(msgs) != 2 || msgs[0] != "echo: "+v+"a" || msgs[1] != "echo: "+v+"b") {
				err = fmt.Errorf("chat %s: got %q", v, msgs)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	for range 32 {
		select {
		case <-done:
		case <-time.After(callTimeout):
			t.Fatal("a stream did not end")
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

var _ grpc.ClientStream = (*clientStream)(nil)
