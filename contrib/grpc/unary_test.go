package grpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/resilient-go/resilient"
)

// recorder keeps the events of an executor's hooks.
type recorder struct {
	mu       sync.Mutex
	attempts []resilient.AttemptEvent
	retries  []resilient.RetryEvent
	done     []resilient.DoneEvent
	ended    chan struct{} // receives at each end of a call, when not nil
}

// wait waits for n calls to end (a stream's call ends on the interceptor's
// goroutine, after the caller has its first message).
func (r *recorder) wait(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.ended:
		case <-time.After(callTimeout):
			t.Fatal("the call did not end")
		}
	}
}

func (r *recorder) hooks() resilient.Hooks {
	return resilient.Hooks{
		OnAttempt: func(ev resilient.AttemptEvent) { r.mu.Lock(); r.attempts = append(r.attempts, ev); r.mu.Unlock() },
		OnRetry:   func(ev resilient.RetryEvent) { r.mu.Lock(); r.retries = append(r.retries, ev); r.mu.Unlock() },
		OnDone: func(ev resilient.DoneEvent) {
			r.mu.Lock()
			r.done = append(r.done, ev)
			r.mu.Unlock()
			if r.ended != nil {
				r.ended <- struct{}{}
			}
		},
	}
}

func (r *recorder) outcomes() []resilient.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var os []resilient.Outcome
	for _, a := range r.attempts {
		os = append(os, a.Outcome)
	}
	return os
}

func (r *recorder) retryEvents() []resilient.RetryEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]resilient.RetryEvent(nil), r.retries...)
}

// quick is an executor for tests: 4 attempts, 1ms apart, no jitter.
func quick(opts ...resilient.Option) *resilient.Executor {
	return resilient.MustNew(append([]resilient.Option{
		resilient.WithAttempts(4),
		resilient.WithBackoff(resilient.Constant(time.Millisecond)),
		resilient.WithJitter(resilient.NoJitter),
	}, opts...)...)
}

func TestUnaryRetriesUnavailableUnavailableOK(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			var rec recorder
			ic := MustNew(quick(resilient.WithHooks(rec.hooks())))
			cc := e.client(ic.DialOptions()...)
			e.srv.plan(mGet, step{code: codes.Unavailable}, step{code: codes.Unavailable})
			var header metadata.MD
			got, err := call(testCtx(t), cc, mGet, "x", grpc.Header(&header))
			require.NoError(t, err)
			assert.Equal(t, "echo: x", got)
			assert.Equal(t, 3, e.srv.count(mGet))
			assert.Equal(t, []string{"x", "x", "x"}, e.srv.received(), "every attempt sends the request")
			assert.Equal(t, []resilient.Outcome{resilient.Retry, resilient.Retry, resilient.Success}, rec.outcomes())
			assert.Equal(t, []string{"3"}, header.Get("served-by"), "the caller's header option is the last attempt's")
		})
	}
}

func TestUnaryIdempotency(t *testing.T) {
	e := startServer(t, bufTransport)
	for _, c := range []struct {
		name    string
		method  string
		ic      *Interceptor
		opts    []grpc.CallOption
		retried bool
	}{
		{"descriptor NO_SIDE_EFFECTS", mGet, MustNew(quick()), nil, true},
		{"descriptor IDEMPOTENT", mPut, MustNew(quick()), nil, true},
		{"no idempotency level", mCreate, MustNew(quick()), nil, false},
		{"call option", mCreate, MustNew(quick()), []grpc.CallOption{Idempotent()}, true},
		{"method name", mCreate, MustNew(quick(), WithIdempotentMethods(mCreate)), nil, true},
		{"registry off", mGet, MustNew(quick(), WithProtoRegistry(nil)), nil, false},
		{"NoRetry on an idempotent method", mGet, MustNew(quick()), []grpc.CallOption{NoRetry()}, false},
		{"NoRetry beats Idempotent", mCreate, MustNew(quick()), []grpc.CallOption{Idempotent(), NoRetry()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := e.client(c.ic.DialOptions()...)
			before := e.srv.count(c.method)
			e.srv.plan(c.method, step{code: codes.Unavailable})
			_, err := call(testCtx(t), cc, c.method, "x", c.opts...)
			calls := e.srv.count(c.method) - before
			if c.retried {
				require.NoError(t, err)
				assert.Equal(t, 2, calls)
				return
			}
			require.Error(t, err)
			assert.Equal(t, codes.Unavailable, status.Code(err))
			assert.Equal(t, 1, calls, "a call that reached the server and may not be repeated is sent once")
			var re *resilient.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 1, re.Attempts)
		})
	}
}

func TestUnaryIdempotencyFromCustomRegistry(t *testing.T) {
	e := startServer(t, bufTransport)
	var files protoregistry.Files
	require.NoError(t, files.RegisterFile(echoFile(t, map[string]descriptorpb.MethodOptions_IdempotencyLevel{
		"Create": descriptorpb.MethodOptions_IDEMPOTENT,
		"Get":    descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
	})))
	cc := e.client(MustNew(quick(), WithProtoRegistry(&files)).DialOptions()...)
	e.srv.plan(mCreate, step{code: codes.Unavailable})
	_, err := call(testCtx(t), cc, mCreate, "x")
	require.NoError(t, err)
	assert.Equal(t, 2, e.srv.count(mCreate))

	e.srv.plan(mGet, step{code: codes.Unavailable})
	_, err = call(testCtx(t), cc, mGet, "x")
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, 1, e.srv.count(mGet), "the registry given is the one read")
}

// A call that is not safe to repeat is retried when its attempts prove it
// never left: here the connection cannot be made at first.
func TestUnaryNeverLeftIsRetriedWhateverTheMethod(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			var rec recorder
			ic := MustNew(resilient.MustNew(
				resilient.WithAttempts(50),
				resilient.WithBackoff(resilient.Constant(2*time.Millisecond)),
				resilient.WithJitter(resilient.NoJitter),
				resilient.WithHooks(rec.hooks()),
			))
			cc := e.client(ic.DialOptions()...)
			e.failDials.Store(2)
			got, err := call(testCtx(t), cc, mCreate, "once")
			require.NoError(t, err)
			assert.Equal(t, "echo: once", got)
			assert.Equal(t, 1, e.srv.count(mCreate), "sent once")
			os := rec.outcomes()
			require.Greater(t, len(os), 1, "the first attempts failed before leaving")
			assert.Equal(t, resilient.Success, os[len(os)-1])
		})
	}
}

// A dropped connection happens after the call reached the server: the
// call is retried only if it may be repeated.
func TestUnaryDroppedConnection(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			cc := e.client(MustNew(quick()).DialOptions()...)

			e.srv.plan(mGet, step{drop: true})
			got, err := call(testCtx(t), cc, mGet, "x")
			require.NoError(t, err)
			assert.Equal(t, "echo: x", got)
			assert.Equal(t, 2, e.srv.count(mGet))

			e.srv.plan(mCreate, step{drop: true})
			_, err = call(testCtx(t), cc, mCreate, "x")
			assert.Equal(t, codes.Unavailable, status.Code(err))
			assert.ErrorIs(t, err, resilient.ErrPermanent)
			assert.Equal(t, 1, e.srv.count(mCreate), "not sent twice")
		})
	}
}

func TestUnaryCodes(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick()).DialOptions()...)
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		t.Run(c.String(), func(t *testing.T) {
			for _, idem := range []bool{true, false} {
				method := mCreate
				if idem {
					method = mGet
				}
				before := e.srv.count(method)
				e.srv.plan(method, step{code: c})
				_, err := call(testCtx(t), cc, method, "x")
				calls := e.srv.count(method) - before
				retried := idem && RetryableCode(c)
				if retried {
					require.NoError(t, err, "idempotent=%v", idem)
					assert.Equal(t, 2, calls, "idempotent=%v", idem)
					continue
				}
				assert.Equal(t, 1, calls, "idempotent=%v", idem)
				assert.Equal(t, c, status.Code(err), "idempotent=%v: the caller reads the server's code", idem)
				if !FailureCode(c) {
					// The server answered: its status, as it is.
					_, isStatus := err.(interface{ GRPCStatus() *status.Status })
					assert.True(t, isStatus, "idempotent=%v: got %T", idem, err)
				} else {
					assert.ErrorIs(t, err, resilient.ErrPermanent, "idempotent=%v", idem)
				}
			}
		})
	}
}

func TestUnaryPushback(t *testing.T) {
	e := startServer(t, bufTransport)
	for _, c := range []struct {
		name     string
		step     step
		retried  bool
		minDelay time.Duration
		reason   resilient.Reason
	}{
		{"RESOURCE_EXHAUSTED without pushback", step{code: codes.ResourceExhausted}, false, 0, 0},
		{"RESOURCE_EXHAUSTED with pushback", step{code: codes.ResourceExhausted, pushback: []string{"30"}}, true, 30 * time.Millisecond, 0},
		{"RESOURCE_EXHAUSTED with pushback 0", step{code: codes.ResourceExhausted, pushback: []string{"0"}}, true, 0, 0},
		{"UNAVAILABLE with pushback", step{code: codes.Unavailable, pushback: []string{"40"}}, true, 40 * time.Millisecond, 0},
		{"negative pushback", step{code: codes.Unavailable, pushback: []string{"-1"}}, false, 0, resilient.ReasonPermanent},
		{"malformed pushback", step{code: codes.Unavailable, pushback: []string{"soon"}}, false, 0, resilient.ReasonPermanent},
		{"two pushbacks", step{code: codes.Unavailable, pushback: []string{"1", "2"}}, false, 0, resilient.ReasonPermanent},
		{"pushback beyond the cap", step{code: codes.Unavailable, pushback: []string{"600000"}}, false, 0, resilient.ReasonHintTooLong},
		{"overflowing pushback", step{code: codes.Unavailable, pushback: []string{"99999999999999999"}}, false, 0, resilient.ReasonHintTooLong},
		{"pushback past the deadline", step{code: codes.Unavailable, pushback: []string{"9000"}}, false, 0, resilient.ReasonDeadline},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rec recorder
			cc := e.client(MustNew(quick(
				resilient.WithHooks(rec.hooks()),
				resilient.WithMaxDelay(10*time.Second),
			)).DialOptions()...)
			before := e.srv.count(mGet)
			e.srv.plan(mGet, c.step)
			ctx := testCtx(t)
			if c.reason == resilient.ReasonDeadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
			}
			_, err := call(ctx, cc, mGet, "x")
			calls := e.srv.count(mGet) - before
			if c.retried {
				require.NoError(t, err)
				assert.Equal(t, 2, calls)
				rs := rec.retryEvents()
				require.Len(t, rs, 1)
				assert.GreaterOrEqual(t, rs[0].Delay, c.minDelay, "pushback is a floor")
				if c.minDelay > 0 {
					assert.Equal(t, resilient.FromHint, rs[0].Source)
				}
				return
			}
			require.Error(t, err)
			assert.Equal(t, 1, calls)
			assert.Equal(t, c.step.code, status.Code(err))
			if c.reason != 0 {
				var re *resilient.Error
				require.ErrorAs(t, err, &re)
				assert.Equal(t, c.reason, re.Reason)
			}
		})
	}
}

// A RESOURCE_EXHAUSTED with pushback is the server asking for less
// traffic (resilient.Throttled): no breaker counts it as a failure, a wait
// of 0 and "do not retry" included, and a Throttle counts it as refused,
// also when the call is not retried. The caller gets the status as it
// came, unmarked.
func TestUnaryResourceExhaustedWithPushbackIsThrottled(t *testing.T) {
	e := startServer(t, bufTransport)
	t.Run("the executor's breaker", func(t *testing.T) {
		br := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(2), resilient.WithOpenDuration(time.Hour))
		cc := e.client(MustNew(quick(resilient.WithBreaker(br))).DialOptions()...)
		before := e.srv.count(mGet)
		for range 4 {
			e.srv.plan(mGet, step{code: codes.ResourceExhausted, pushback: []string{"0"}})
		}
		_, err := call(testCtx(t), cc, mGet, "x")
		assert.Equal(t, codes.ResourceExhausted, status.Code(err))
		assert.ErrorIs(t, err, resilient.ErrExhausted, "every attempt was made: the breaker never opened")
		assert.Equal(t, 4, e.srv.count(mGet)-before)
		assert.Equal(t, resilient.StateClosed, br.State())
		assert.Zero(t, br.Metrics().TotalFailures)
	})
	t.Run("the interceptor's breakers, RESOURCE_EXHAUSTED a failure code", func(t *testing.T) {
		set := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Hour))
		cc := e.client(MustNew(quick(), WithMethodBreakers(set),
			WithFailureCodes(codes.ResourceExhausted, codes.Internal)).DialOptions()...)
		for _, pb := range []string{"-1", "soon"} {
			e.srv.plan(mGet, step{code: codes.ResourceExhausted, pushback: []string{pb}})
			_, err := call(testCtx(t), cc, mGet, "x")
			assert.Equal(t, codes.ResourceExhausted, status.Code(err))
		}
		assert.Equal(t, resilient.StateClosed, set.Get(mGet).State(), "pushback: counted neither way")
		e.srv.plan(mGet, step{code: codes.ResourceExhausted})
		_, err := call(testCtx(t), cc, mGet, "x")
		assert.Equal(t, codes.ResourceExhausted, status.Code(err))
		assert.Equal(t, resilient.StateOpen, set.Get(mGet).State(), "without pushback, a failure code is a failure")
	})
	t.Run("a throttle, for a call not retried", func(t *testing.T) {
		th := resilient.MustNewThrottle(resilient.WithAcceptMultiplier(1),
			resilient.WithThrottleRandom(func() float64 { return 0.999 })) // never refuses
		cc := e.client(MustNew(quick(resilient.WithThrottle(th))).DialOptions()...)
		for range 3 {
			e.srv.plan(mCreate, step{code: codes.ResourceExhausted, pushback: []string{"50"}})
			before := e.srv.count(mCreate)
			_, err := call(testCtx(t), cc, mCreate, "x")
			assert.Equal(t, 1, e.srv.count(mCreate)-before, "Create is not safe to repeat")
			_, bare := err.(interface{ GRPCStatus() *status.Status })
			assert.True(t, bare, "the server's status as it came, unmarked: %T", err)
			assert.Equal(t, codes.ResourceExhausted, status.Code(err))
		}
		assert.InDelta(t, 0.75, th.Probability(), 1e-9, "3 requests, no accept: (3-0)/(3+1)")
	})
}

func TestUnaryRetryCodesOption(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick(), WithRetryCodes(codes.ResourceExhausted, codes.Internal)).DialOptions()...)
	e.srv.plan(mGet, step{code: codes.ResourceExhausted}, step{code: codes.Internal}, step{code: codes.Unavailable})
	_, err := call(testCtx(t), cc, mGet, "x")
	assert.Equal(t, codes.Unavailable, status.Code(err), "UNAVAILABLE is no longer in the set")
	assert.Equal(t, 3, e.srv.count(mGet))
}

func TestUnaryAttemptTimeout(t *testing.T) {
	for _, c := range []struct {
		name string
		ex   *resilient.Executor
		opts []grpc.CallOption
	}{
		{"call option", quick(), []grpc.CallOption{AttemptTimeout(100 * time.Millisecond)}},
		{"executor", quick(resilient.WithAttemptTimeout(100 * time.Millisecond)), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startServer(t, bufTransport)
			cc := e.client(MustNew(c.ex).DialOptions()...)
			e.srv.plan(mGet, step{delay: 5 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			start := time.Now()
			callerDL, _ := ctx.Deadline()
			got, err := call(ctx, cc, mGet, "x", c.opts...)
			require.NoError(t, err)
			assert.Equal(t, "echo: x", got)
			require.Equal(t, 2, e.srv.count(mGet))
			e.srv.mu.Lock()
			dls := append([]time.Time(nil), e.srv.deadlines...)
			e.srv.mu.Unlock()
			// The server is told each attempt's deadline: the attempt's,
			// which is never past the caller's.
			// The first attempt's deadline is 100ms from its start, which
			// came after start and before the call returned (a busy
			// machine may delay the start, never the bound).
			const slack = 50 * time.Millisecond
			assert.True(t, dls[0].After(start.Add(100*time.Millisecond-slack)), "the attempt's deadline, not before it started")
			assert.True(t, dls[0].Before(time.Now()), "the attempt's own 100ms, not the caller's 3s: %v", dls[0].Sub(start))
			assert.True(t, dls[1].Before(callerDL.Add(slack)), "never past the caller's deadline")
			assert.True(t, dls[1].After(dls[0]), "each attempt gets its own")
			assert.Eventually(t, func() bool { return e.srv.canceled.Load() == 1 }, callTimeout, time.Millisecond,
				"the timed-out attempt was cancelled on the server")
		})
	}
	t.Run("not safe to repeat", func(t *testing.T) {
		e := startServer(t, bufTransport)
		cc := e.client(MustNew(quick()).DialOptions()...)
		e.srv.plan(mCreate, step{delay: 5 * time.Second})
		_, err := call(testCtx(t), cc, mCreate, "x", AttemptTimeout(50*time.Millisecond))
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
		assert.ErrorIs(t, err, resilient.ErrPermanent)
		assert.Equal(t, 1, e.srv.count(mCreate))
	})
	t.Run("the caller's deadline is propagated on every attempt", func(t *testing.T) {
		e := startServer(t, bufTransport)
		cc := e.client(MustNew(quick()).DialOptions()...)
		e.srv.plan(mGet, step{code: codes.Unavailable}, step{code: codes.Unavailable})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		dl, _ := ctx.Deadline()
		_, err := call(ctx, cc, mGet, "x")
		require.NoError(t, err)
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		require.Len(t, e.srv.deadlines, 3)
		for i, d := range e.srv.deadlines {
			assert.WithinDuration(t, dl, d, 50*time.Millisecond, "attempt %d", i+1)
		}
	})
}

// The caller's own cancellation is never retried and never counted: not by
// the executor's breaker, not by the interceptor's.
func TestUnaryCallerCancelIsIgnored(t *testing.T) {
	e := startServer(t, bufTransport)
	br := resilient.MustNewBreaker(resilient.WithConsecutiveFailures(1))
	methods := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1))
	var rec recorder
	ic := MustNew(quick(resilient.WithBreaker(br), resilient.WithHooks(rec.hooks())), WithMethodBreakers(methods))
	cc := e.client(ic.DialOptions()...)
	e.srv.handled = make(chan struct{}, 10)
	e.srv.started = make(chan string, 10)
	e.srv.plan(mGet, step{delay: 10 * time.Second})
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		// Cancel once the server holds the call.
		select {
		case <-e.srv.started:
		case <-time.After(callTimeout):
		}
		cancel()
	}()
	_, err := call(ctx, cc, mGet, "x")
	assert.Equal(t, codes.Canceled, status.Code(err))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, e.srv.count(mGet))
	assert.Equal(t, []resilient.Outcome{resilient.Ignore}, rec.outcomes())
	assert.Equal(t, resilient.StateClosed, br.State())
	assert.Equal(t, resilient.StateClosed, methods.Get(mGet).State())
	select {
	case <-e.srv.handled:
	case <-time.After(callTimeout):
		t.Fatal("the server's handler did not end")
	}
}

func TestUnaryBreakers(t *testing.T) {
	t.Run("method", func(t *testing.T) {
		e := startServer(t, bufTransport)
		set := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(2), resilient.WithOpenDuration(time.Hour))
		cc := e.client(MustNew(quick(resilient.WithAttempts(1)), WithMethodBreakers(set)).DialOptions()...)
		// Answers are not failures, whatever their code.
		// Answers are not failures, whatever their code; ABORTED and
		// RESOURCE_EXHAUSTED with pushback are retried (here, attempts
		// ran out) without counting against the method.
		for _, st := range []step{
			{code: codes.InvalidArgument}, {code: codes.NotFound}, {code: codes.PermissionDenied},
			{code: codes.Aborted}, {code: codes.ResourceExhausted, pushback: []string{"1"}}, {code: codes.Aborted},
		} {
			e.srv.plan(mGet, st)
			_, err := call(testCtx(t), cc, mGet, "x")
			require.Equal(t, st.code, status.Code(err))
		}
		assert.Equal(t, resilient.StateClosed, set.Get(mGet).State())
		e.srv.plan(mGet, step{code: codes.Internal}, step{code: codes.Unavailable})
		for range 2 {
			_, err := call(testCtx(t), cc, mGet, "x")
			require.Error(t, err)
		}
		assert.Equal(t, resilient.StateOpen, set.Get(mGet).State())
		before := e.srv.count(mGet)
		_, err := call(testCtx(t), cc, mGet, "x")
		assert.ErrorIs(t, err, resilient.ErrOpen)
		assert.ErrorIs(t, err, resilient.ErrRejected)
		assert.Equal(t, resilient.PolicyBreaker, resilient.RejectedBy(err))
		assert.Equal(t, codes.Unavailable, status.Code(err), "a refusal reads as UNAVAILABLE")
		assert.Equal(t, before, e.srv.count(mGet), "nothing sent")
		// Another method has its own breaker.
		_, err = call(testCtx(t), cc, mPut, "x")
		assert.NoError(t, err)
	})
	t.Run("target", func(t *testing.T) {
		a, b := startServer(t, bufTransport), startServer(t, tcpTransport)
		set := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Hour))
		ic := MustNew(quick(resilient.WithAttempts(1)), WithTargetBreakers(set))
		ca, cb := a.client(ic.DialOptions()...), b.client(ic.DialOptions()...)
		a.srv.plan(mGet, step{code: codes.Unavailable})
		_, err := call(testCtx(t), ca, mGet, "x")
		require.Error(t, err)
		_, err = call(testCtx(t), ca, mPut, "x")
		assert.ErrorIs(t, err, resilient.ErrOpen, "every method of the target")
		_, err = call(testCtx(t), cb, mGet, "x")
		assert.NoError(t, err, "another target has its own")
		assert.Equal(t, resilient.StateOpen, set.Get(ca.Target()).State())
		assert.Equal(t, resilient.StateClosed, set.Get(cb.Target()).State())
	})
	t.Run("a failure that opens the breaker ends the call with it", func(t *testing.T) {
		e := startServer(t, bufTransport)
		set := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Hour))
		cc := e.client(MustNew(quick(), WithMethodBreakers(set)).DialOptions()...)
		e.srv.plan(mGet, step{code: codes.Unavailable})
		_, err := call(testCtx(t), cc, mGet, "x")
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.ErrorIs(t, err, resilient.ErrOpen, "the retry was refused before its wait")
		var re *resilient.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 1, re.Attempts)
		assert.Error(t, re.Last, "the last status is kept")
		assert.Equal(t, 1, e.srv.count(mGet))
	})
}

func TestUnaryBudget(t *testing.T) {
	e := startServer(t, bufTransport)
	budget := resilient.MustNewBudget(resilient.WithRetryBurst(1), resilient.WithRetryRatio(0.01), resilient.WithMinRetryRate(0))
	cc := e.client(MustNew(quick(resilient.WithBudget(budget))).DialOptions()...)
	e.srv.plan(mGet, step{code: codes.Unavailable}, step{code: codes.Unavailable}, step{code: codes.Unavailable})
	_, err := call(testCtx(t), cc, mGet, "x")
	assert.ErrorIs(t, err, resilient.ErrBudgetExhausted)
	assert.Equal(t, resilient.PolicyBudget, resilient.RejectedBy(err))
	assert.Equal(t, codes.Unavailable, status.Code(err), "the last status")
	assert.Equal(t, 2, e.srv.count(mGet), "one retry was in the budget")
}

func TestUnaryHedging(t *testing.T) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			e := startServer(t, tr)
			var rec recorder
			targets := resilient.MustNewBreakers(10, time.Minute, resilient.WithConsecutiveFailures(1))
			ic := MustNew(quick(resilient.WithHedge(30*time.Millisecond, 2), resilient.WithHooks(rec.hooks())),
				WithTargetBreakers(targets))
			cc := e.client(ic.DialOptions()...)
			e.srv.handled = make(chan struct{}, 10)
			e.srv.plan(mGet, step{delay: 10 * time.Second})
			var header, trailer metadata.MD
			got, err := call(testCtx(t), cc, mGet, "x", grpc.Header(&header), grpc.Trailer(&trailer))
			require.NoError(t, err)
			assert.Equal(t, "echo: x", got)
			assert.Equal(t, []string{"2"}, header.Get("served-by"), "the winner's header")
			for range 2 {
				select {
				case <-e.srv.handled:
				case <-time.After(callTimeout):
					t.Fatal("the losing attempt was not cancelled")
				}
			}
			assert.Equal(t, int32(1), e.srv.canceled.Load(), "the loser was cancelled on the server")
			assert.ElementsMatch(t, []resilient.Outcome{resilient.Success, resilient.Ignore}, rec.outcomes(),
				"the loser counts neither way")
			assert.Equal(t, resilient.StateClosed, targets.Get(cc.Target()).State())

			// A call that is not safe to repeat is never hedged.
			e.srv.plan(mCreate, step{delay: 100 * time.Millisecond})
			_, err = call(testCtx(t), cc, mCreate, "y")
			require.NoError(t, err)
			assert.Equal(t, 1, e.srv.count(mCreate))
			<-e.srv.handled
		})
	}
}

func TestUnaryHedgingRetriesARound(t *testing.T) {
	e := startServer(t, bufTransport)
	cc := e.client(MustNew(quick(resilient.WithHedge(time.Second, 2))).DialOptions()...)
	e.srv.plan(mGet, step{code: codes.Unavailable}, step{code: codes.Unavailable})
	got, err := call(testCtx(t), cc, mGet, "x")
	require.NoError(t, err)
	assert.Equal(t, "echo: x", got)
	assert.Equal(t, 3, e.srv.count(mGet))
}

// optionNames lists the options named by the *resilient.OptionErrors err
// joins, in order.
func optionNames(t *testing.T, err error) []string {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var names []string
	for _, e := range errs {
		var oe *resilient.OptionError
		if assert.True(t, errors.As(e, &oe), "not an *OptionError: %v", e) {
			names = append(names, oe.Option)
		}
	}
	return names
}

// Each invalid argument or option of New is a *resilient.OptionError that
// names it ("grpc.WithRetryCodes"), matching resilient.ErrInvalidOption,
// with the exact message; several are all reported. The interceptors made
// by UnaryClientInterceptor and StreamClientInterceptor fail every call
// with it, unsent.
func TestInvalidOptions(t *testing.T) {
	ex := quick()
	for _, c := range []struct {
		name    string
		ex      *resilient.Executor
		opts    []Option
		options []string
		want    string
	}{
		{"nil executor", nil, nil, []string{"grpc.New"}, "resilient: grpc.New: nil executor"},
		{"nil option", ex, []Option{nil}, []string{"grpc.New"}, "resilient: grpc.New: nil option"},
		{"method name", ex, []Option{WithIdempotentMethods("Get")}, []string{"grpc.WithIdempotentMethods"},
			`resilient: grpc.WithIdempotentMethods: "Get" is not a full method name (/package.Service/Method)`},
		{"method name without a method", ex, []Option{WithIdempotentMethods("/svc/")}, []string{"grpc.WithIdempotentMethods"},
			`resilient: grpc.WithIdempotentMethods: "/svc/" is not a full method name (/package.Service/Method)`},
		{"method name with three parts", ex, []Option{WithIdempotentMethods("/a/b/c")}, []string{"grpc.WithIdempotentMethods"},
			`resilient: grpc.WithIdempotentMethods: "/a/b/c" is not a full method name (/package.Service/Method)`},
		{"every bad method name", ex, []Option{WithIdempotentMethods("Get", "/pkg.Svc/Get", "/a/b/c")}, []string{"grpc.WithIdempotentMethods"},
			`resilient: grpc.WithIdempotentMethods: "Get" is not a full method name (/package.Service/Method); ` +
				`"/a/b/c" is not a full method name (/package.Service/Method)`},
		{"retry code OK", ex, []Option{WithRetryCodes(codes.OK)}, []string{"grpc.WithRetryCodes"},
			"resilient: grpc.WithRetryCodes: invalid code OK"},
		{"failure code out of range", ex, []Option{WithFailureCodes(codes.Code(17))}, []string{"grpc.WithFailureCodes"},
			"resilient: grpc.WithFailureCodes: invalid code Code(17)"},
		{"every bad code", ex, []Option{WithFailureCodes(codes.OK, codes.Internal, codes.Code(99))}, []string{"grpc.WithFailureCodes"},
			"resilient: grpc.WithFailureCodes: invalid code OK; invalid code Code(99)"},
		{"nil target set", ex, []Option{WithTargetBreakers(nil)}, []string{"grpc.WithTargetBreakers"},
			"resilient: grpc.WithTargetBreakers: nil set"},
		{"nil method set", ex, []Option{WithMethodBreakers(nil)}, []string{"grpc.WithMethodBreakers"},
			"resilient: grpc.WithMethodBreakers: nil set"},
		{"several", nil, []Option{WithRetryCodes(codes.OK), nil, WithIdempotentMethods("/pkg.Svc/Get"), WithMethodBreakers(nil)},
			[]string{"grpc.New", "grpc.WithRetryCodes", "grpc.New", "grpc.WithMethodBreakers"},
			"resilient: grpc.New: nil executor\nresilient: grpc.WithRetryCodes: invalid code OK\n" +
				"resilient: grpc.New: nil option\nresilient: grpc.WithMethodBreakers: nil set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ic, err := New(c.ex, c.opts...)
			assert.Nil(t, ic)
			require.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.Equal(t, c.options, optionNames(t, err))
			assert.EqualError(t, err, c.want)
			assert.Panics(t, func() { MustNew(c.ex, c.opts...) })

			called := false
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				called = true
				return nil
			}
			err = UnaryClientInterceptor(c.ex, c.opts...)(context.Background(), mGet, nil, nil, nil, invoker)
			assert.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.EqualError(t, err, c.want)
			_, err = StreamClientInterceptor(c.ex, c.opts...)(context.Background(), listDesc, nil, mList,
				func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
					called = true
					return nil, nil
				})
			assert.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.EqualError(t, err, c.want)
			assert.False(t, called)
		})
	}
}

// An invalid call option fails the call at once, unsent, with a
// *resilient.OptionError that names it; several are all reported.
func TestInvalidCallOptions(t *testing.T) {
	ic := MustNew(quick())
	for _, c := range []struct {
		name    string
		opts    []grpc.CallOption
		options []string
		want    string
	}{
		{"zero attempt timeout", []grpc.CallOption{AttemptTimeout(0)}, []string{"grpc.AttemptTimeout"},
			"resilient: grpc.AttemptTimeout: d must be > 0, got 0s"},
		{"negative attempt timeout", []grpc.CallOption{AttemptTimeout(-time.Second)}, []string{"grpc.AttemptTimeout"},
			"resilient: grpc.AttemptTimeout: d must be > 0, got -1s"},
		{"nil replay", []grpc.CallOption{Replay(nil)}, []string{"grpc.Replay"}, "resilient: grpc.Replay: nil function"},
		{"several", []grpc.CallOption{Replay(nil), Idempotent(), AttemptTimeout(0)}, []string{"grpc.Replay", "grpc.AttemptTimeout"},
			"resilient: grpc.Replay: nil function\nresilient: grpc.AttemptTimeout: d must be > 0, got 0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			called := false
			err := ic.Unary(context.Background(), mGet, nil, nil, nil,
				func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					called = true
					return nil
				}, c.opts...)
			require.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.Equal(t, c.options, optionNames(t, err))
			assert.EqualError(t, err, c.want)
			_, err = ic.Stream(context.Background(), chatDesc, nil, mChat,
				func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
					called = true
					return nil, nil
				}, c.opts...)
			assert.ErrorIs(t, err, resilient.ErrInvalidOption)
			assert.EqualError(t, err, c.want)
			assert.False(t, called)
		})
	}
}

// Errors that carry no status of their own get one, so that code reading
// status codes sees the truth.
func TestFinalStatus(t *testing.T) {
	ic := MustNew(quick())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ic.Unary(ctx, mGet, nil, nil, nil, func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		return status.FromContextError(ctx.Err()).Err()
	})
	assert.Equal(t, codes.Canceled, status.Code(err))
	assert.ErrorIs(t, err, context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	err = ic.Unary(ctx, mGet, nil, nil, nil, nil)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))

	br := resilient.MustNewBreaker()
	br.ForceOpen()
	err = MustNew(quick(resilient.WithBreaker(br))).Unary(context.Background(), mGet, nil, nil, nil, nil)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.ErrorIs(t, err, resilient.ErrOpen)

	// An inner interceptor's own error, without a status, is not retried.
	n := 0
	plain := errors.New("plain")
	err = ic.Unary(context.Background(), mGet, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		n++
		return plain
	})
	assert.ErrorIs(t, err, plain)
	assert.Equal(t, 1, n)
}

// Many goroutines share one interceptor, its routes, breakers and a
// hedging executor.
func TestUnaryConcurrent(t *testing.T) {
	e := startServer(t, bufTransport)
	targets := resilient.MustNewBreakers(10, time.Minute)
	methods := resilient.MustNewBreakers(10, time.Minute)
	ic := MustNew(quick(resilient.WithHedge(5*time.Millisecond, 2)), WithTargetBreakers(targets), WithMethodBreakers(methods))
	cc := e.client(ic.DialOptions()...)
	var wg sync.WaitGroup
	errs := make(chan error, 64*20)
	for g := range 64 {
		wg.Go(func() {
			for i := range 20 {
				method := []string{mGet, mPut, mCreate}[(g+i)%3]
				v := fmt.Sprint(g, "/", i)
				got, err := call(testCtx(t), cc, method, v)
				if err == nil && got != "echo: "+v {
					err = fmt.Errorf("got %q for %q", got, v)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
