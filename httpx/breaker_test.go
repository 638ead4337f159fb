package httpx

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHostBreakersTripPerHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(16, time.Hour, resilient.WithConsecutiveFailures(3))
		f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
			if req.URL.Host == "down.test" {
				return respond(503, "down"), nil
			}
			return respond(200, "up"), nil
		}}
		tr := newTransport(t, f, WithExecutor(noWait(resilient.WithAttempts(3))), WithHostBreakers(set))

		resp, err := tr.RoundTrip(get(t, t.Context(), "http://down.test/x"))
		require.NoError(t, err, "the third failure trips the breaker; the caller still gets the 503")
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, 3, f.calls())
		assert.Equal(t, resilient.StateOpen, set.Get("down.test").State())

		body := &trackedReqBody{Reader: strings.NewReader("x")}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://down.test/x", body)
		require.NoError(t, err)
		resp, err = tr.RoundTrip(req)
		assert.Nil(t, resp)
		require.ErrorIs(t, err, resilient.ErrOpen)
		var open *resilient.OpenError
		require.ErrorAs(t, err, &open)
		assert.Equal(t, 3, f.calls(), "an open breaker's host is not called")
		assert.EqualValues(t, 1, body.closed.Load(), "the refused request's body is closed")

		resp, err = tr.RoundTrip(get(t, t.Context(), "http://up.test/x"))
		require.NoError(t, err, "another host is not affected")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, resilient.StateClosed, set.Get("up.test").State())
	})
}

func TestHostBreakersCountsOutcomes(t *testing.T) {
	cases := []struct {
		name  string
		code  int
		err   error
		ctx   func() context.Context
		state resilient.State
	}{
		{"404 is a success", 404, nil, context.Background, resilient.StateClosed},
		{"501 is a failure", 501, nil, context.Background, resilient.StateOpen},
		{"503 is a failure", 503, nil, context.Background, resilient.StateOpen},
		{"429 counts neither way", 429, nil, context.Background, resilient.StateClosed},
		{"reset is a failure", 0, errReset, context.Background, resilient.StateOpen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				set := resilient.MustNewBreakers(4, time.Hour, resilient.WithConsecutiveFailures(1))
				f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
					if tc.err != nil {
						return nil, tc.err
					}
					return respond(tc.code, ""), nil
				}}
				tr := newTransport(t, f, WithExecutor(noWait(resilient.WithAttempts(1))), WithHostBreakers(set))
				_, _ = tr.RoundTrip(get(t, tc.ctx(), "http://api.test/x"))
				assert.Equal(t, tc.state, set.Get("api.test").State())
			})
		})
	}
}

func TestHostBreakersIgnoreCallerCancellation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour, resilient.WithConsecutiveFailures(1))
		ctx, cancel := context.WithCancel(t.Context())
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			cancel()
			return nil, context.Canceled
		}}
		tr := newTransport(t, f, WithHostBreakers(set))
		_, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, resilient.StateClosed, set.Get("api.test").State())
	})
}

func TestHostBreakersOpenForRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour,
			resilient.WithConsecutiveFailures(1),
			resilient.WithOpenDuration(time.Minute),
			resilient.WithOpenFromHint(10*time.Minute))
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			return respond(503, "maintenance", "Retry-After", "120"), nil
		}}
		// The executor's cap (1m) refuses the 2-minute hint: the call ends
		// with the 503, and the breaker stays open for the hint.
		tr := newTransport(t, f, WithExecutor(resilient.MustNew(resilient.WithMaxDelay(time.Minute))), WithHostBreakers(set))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		br := set.Get("api.test")
		require.Equal(t, resilient.StateOpen, br.State())

		_, err = tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		var open *resilient.OpenError
		require.ErrorAs(t, err, &open)
		assert.Equal(t, 120*time.Second, open.RetryAfter(), "open for the server's hint, not the 1m default")

		time.Sleep(119 * time.Second)
		synctest.Wait()
		assert.Equal(t, resilient.StateOpen, br.State())
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, resilient.StateHalfOpen, br.State())
	})
}

func TestHostBreakersReleaseProbeOnPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour, resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Second))
		br := set.Get("api.test")
		br.ForceOpen()
		br.Reset()
		calls := 0
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			calls++
			if calls == 1 {
				panic("boom")
			}
			return respond(200, ""), nil
		}}
		tr := newTransport(t, f, WithExecutor(noWait(resilient.WithAttempts(1))), WithHostBreakers(set))
		assert.Panics(t, func() { _, _ = tr.RoundTrip(get(t, t.Context(), "http://api.test/x")) })
		assert.Equal(t, resilient.StateOpen, br.State(), "the panic counts as a failure")
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, resilient.StateHalfOpen, br.State())
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err, "the probe slot was not leaked")
		assert.Equal(t, 200, resp.StatusCode)
	})
}

func TestHostBreakersNilSetIsInvalid(t *testing.T) {
	_, err := NewTransport(WithHostBreakers(nil))
	require.EqualError(t, err, "resilient: httpx.WithHostBreakers: nil set")
}

func TestHedgedNonIdempotentRequestIsSentOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			<-release
			return respond(201, "created"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(time.Second, 3), resilient.WithAttempts(3), resilient.WithBackoff(resilient.Constant(0)))
		tr := newTransport(t, f, WithExecutor(ex))
		time.AfterFunc(5*time.Second, func() { close(release) })
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://api.test/orders", strings.NewReader("{}"))
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 201, resp.StatusCode)
		assert.Equal(t, 1, f.calls(), "a POST without a key is never hedged")
	})
}

func TestHedgedIdempotentRequestLoserDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				<-req.Context().Done() // the slow one loses
				return nil, req.Context().Err()
			}
			return respond(200, "fast"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(time.Second, 2))
		tr := newTransport(t, f, WithExecutor(ex))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		time.Sleep(time.Minute) // the call has ended: its contexts are done
		assert.Equal(t, "fast", readAll(t, resp.Body), "the winner's body outlives the call")
		assert.Equal(t, 2, f.calls())
	})
}

func TestHostBreakerTrippedMidCallReturnsTheResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour, resilient.WithConsecutiveFailures(2))
		f := &fakeRT{fn: statuses(503)}
		tr := newTransport(t, f, WithExecutor(noWait()), WithHostBreakers(set))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err, "the 503 that came, not the refusal of a fifth attempt")
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "xx", readAll(t, resp.Body), "the response of the attempt that tripped the breaker")
		assert.Equal(t, 2, f.calls())
		// Both were set aside as they came (read whole into memory, their
		// connections released), and the second is what the caller reads.
		assert.EqualValues(t, 1, f.bodies[0].closes.Load())
		assert.EqualValues(t, 1, f.bodies[1].closes.Load())
	})
}

// Regression: a hedge loser, cancelled by its round, was reported to the
// host breaker as a failure (only the caller's context was checked): with
// every response a 200, the breaker opened after two calls with cause
// "context canceled".
func TestHostBreakersIgnoreHedgeLosers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour,
			resilient.WithFailureRate(0.5), resilient.WithCountWindow(4), resilient.WithMinCalls(4))
		var mu sync.Mutex
		slow := map[string]bool{} // the first attempt of each call is slow
		f := &fakeRT{fn: func(_ int, req *http.Request) (*http.Response, error) {
			id := req.URL.Query().Get("call")
			mu.Lock()
			first := !slow[id]
			slow[id] = true
			mu.Unlock()
			if first {
				<-req.Context().Done()
				return nil, req.Context().Err()
			}
			return respond(200, "fast"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(100*time.Millisecond, 2))
		tr := newTransport(t, f, WithExecutor(ex), WithHostBreakers(set))
		for i := range 5 {
			resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x?call="+strconv.Itoa(i)))
			require.NoError(t, err, "call %d", i)
			assert.Equal(t, "fast", readAll(t, resp.Body))
			require.NoError(t, resp.Body.Close())
		}
		assert.Equal(t, 10, f.calls())
		br := set.Get("api.test")
		assert.Equal(t, resilient.StateClosed, br.State(), "a healthy host stays closed")
		m := br.Metrics()
		assert.Zero(t, m.Failures, "no loser counted as a failure")
	})
}

// TestHostBreakersThrottledCountNeitherWay: a 429, or a 503 with
// Retry-After, is the upstream asking for less traffic: the host's breaker
// counts it neither way, and the caller gets the response.
func TestHostBreakersThrottledCountNeitherWay(t *testing.T) {
	cases := []struct {
		name string
		resp func() *http.Response
	}{
		{"429", func() *http.Response { return respond(429, "slow down") }},
		{"429 with Retry-After", func() *http.Response { return respond(429, "slow down", "Retry-After", "1") }},
		{"503 with Retry-After", func() *http.Response { return respond(503, "later", "Retry-After", "1") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				set := resilient.MustNewBreakers(4, time.Hour, resilient.WithConsecutiveFailures(1))
				f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) { return tc.resp(), nil }}
				tr := newTransport(t, f, WithExecutor(noWait()), WithHostBreakers(set))
				resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
				require.NoError(t, err)
				assert.Equal(t, tc.resp().StatusCode, resp.StatusCode)
				assert.Equal(t, 4, f.calls(), "retried, and never refused")
				m := set.Get("api.test").Metrics()
				assert.Equal(t, resilient.StateClosed, m.State)
				assert.Zero(t, m.Calls, "counted neither way")
			})
		})
	}
}

// Regression: a host breaker's refusal looked like a failed attempt: the
// error said "stopped after 1 attempt (permanent)" although nothing was
// sent, RejectedBy was empty, and hooks saw a failed attempt. It is a
// rejection, exactly like the executor's own breaker's.
func TestHostBreakerRefusalIsARejection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour)
		set.Get("api.test").ForceOpen()
		metrics := resilient.NewTextMetrics()
		var attempts []resilient.AttemptEvent
		var done []resilient.DoneEvent
		hooks := resilient.Hooks{
			OnAttempt: func(e resilient.AttemptEvent) { attempts = append(attempts, e) },
			OnDone:    func(e resilient.DoneEvent) { done = append(done, e) },
		}
		ex := resilient.MustNew(resilient.WithName("api"), resilient.WithHooks(metrics.Hooks()), resilient.WithHooks(hooks))
		f := &fakeRT{fn: statuses(200)}
		tr := newTransport(t, f, WithExecutor(ex), WithHostBreakers(set))
		body := &trackedReqBody{Reader: strings.NewReader("x")}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://api.test/x", body)
		require.NoError(t, err)
		start := time.Now()
		resp, err := tr.RoundTrip(req)
		assert.Nil(t, resp)
		assert.Zero(t, time.Since(start), "no wait")
		require.ErrorIs(t, err, resilient.ErrOpen)
		var rerr *resilient.Error
		require.ErrorAs(t, err, &rerr)
		assert.Zero(t, rerr.Attempts, "nothing was sent")
		assert.Equal(t, resilient.ReasonRejected, rerr.Reason)
		assert.Equal(t, resilient.PolicyBreaker, resilient.RejectedBy(err))
		var open *resilient.OpenError
		assert.ErrorAs(t, err, &open)
		assert.Zero(t, f.calls())
		assert.EqualValues(t, 1, body.closed.Load())
		assert.Empty(t, attempts, "no attempt ran")
		require.Len(t, done, 1)
		assert.Equal(t, resilient.ReasonRejected, done[0].Reason)
		assert.Zero(t, done[0].Attempts)
		var b strings.Builder
		_, err = metrics.WriteTo(&b)
		require.NoError(t, err)
		assert.Contains(t, b.String(), `resilient_rejections_total{executor="api",policy="breaker"} 1`)
	})
}

// Regression: a host breaker that opened while a call waited out a
// Retry-After still cost the caller the whole wait, then handed back
// ErrOpen and lost the 429. The call now ends with the 429 (body as kept)
// the moment the breaker opens, and at once when the breaker is already
// open as the response comes back.
func TestHostBreakerOpenedDuringTheWaitKeepsTheResponse(t *testing.T) {
	t.Run("opened during the wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			set := resilient.MustNewBreakers(4, time.Hour)
			br := set.Get("api.test")
			f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
				return respond(429, "slow down", "Retry-After", "10"), nil
			}}
			var done []resilient.DoneEvent
			ex := resilient.MustNew(resilient.WithHooks(resilient.Hooks{OnDone: func(e resilient.DoneEvent) { done = append(done, e) }}))
			tr := newTransport(t, f, WithExecutor(ex), WithHostBreakers(set))
			time.AfterFunc(3*time.Second, br.ForceOpen) // another call's doing
			start := time.Now()
			resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
			require.NoError(t, err, "the 429 that came, not ErrOpen")
			assert.Equal(t, 429, resp.StatusCode)
			assert.Equal(t, "slow down", readAll(t, resp.Body))
			assert.Equal(t, 3*time.Second, time.Since(start), "the wait ends when the breaker opens")
			assert.Equal(t, 1, f.calls())
			require.Len(t, done, 1)
			assert.Equal(t, resilient.ReasonRejected, done[0].Reason)
			assert.Equal(t, 1, done[0].Attempts)
			assert.Equal(t, resilient.PolicyBreaker, resilient.RejectedBy(done[0].Err))
		})
	})
	t.Run("already open when the response comes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			set := resilient.MustNewBreakers(4, time.Hour)
			br := set.Get("api.test")
			f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
				br.ForceOpen() // another call trips it while this one is in flight
				time.Sleep(time.Second)
				return respond(503, "down"), nil
			}}
			tr := newTransport(t, f, WithExecutor(resilient.MustNew(resilient.WithBackoff(resilient.Constant(time.Minute)))), WithHostBreakers(set))
			start := time.Now()
			resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			assert.Equal(t, "down", readAll(t, resp.Body))
			assert.Equal(t, time.Second, time.Since(start), "no wait for a refusal")
			assert.Equal(t, 1, f.calls())
		})
	})
}

// Regression: in half-open, under hedged traffic slower than the hedge
// delay, the hedge was refused by the host breaker, that refusal won the
// round as a permanent error, the round cancelled the in-flight probe, the
// probe counted as a failure and the breaker reopened: it could never
// close. The refused hedge leaves the round to the probe, which closes it.
func TestHostBreakerHalfOpenUnderHedgedTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(4, time.Hour,
			resilient.WithConsecutiveFailures(1), resilient.WithOpenDuration(time.Second))
		br := set.Get("api.test")
		p, err := br.Allow()
		require.NoError(t, err)
		br.Done(p, resilient.Report{Outcome: resilient.Fail}) // trips it
		require.Equal(t, resilient.StateOpen, br.State())
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, resilient.StateHalfOpen, br.State())
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			time.Sleep(250 * time.Millisecond) // slower than the hedge delay, twice
			return respond(200, "ok"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(100*time.Millisecond, 3))
		tr := newTransport(t, f, WithExecutor(ex), WithHostBreakers(set))
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err, "the probe's answer, not the hedge's refusal")
		assert.Equal(t, "ok", readAll(t, resp.Body))
		assert.Equal(t, 1, f.calls(), "the hedges were refused, never sent")
		assert.Equal(t, resilient.StateClosed, br.State(), "the probe closed it")
		for range 3 {
			resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
		}
		assert.Equal(t, resilient.StateClosed, br.State())
	})
}

// TestHostBreakerFollowsTheSet: a host's requests always count on the
// breaker its set holds for it now. When the set forgets a host's breaker
// (here to make room for another host) and makes a new one, the host's
// next requests go through the new one, as anyone reading the set sees.
func TestHostBreakerFollowsTheSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(1, time.Hour, resilient.WithConsecutiveFailures(100))
		f := &fakeRT{fn: statuses(503, 503, 503, 503, 503, 503)}
		tr := newTransport(t, f, WithExecutor(resilient.MustNew(resilient.WithAttempts(1))), WithHostBreakers(set))
		send := func(host string) {
			resp, err := tr.RoundTrip(get(t, t.Context(), "http://"+host+"/x"))
			require.NoError(t, err)
			readAll(t, resp.Body)
		}
		send("a.test")
		first := set.Get("a.test")
		assert.Equal(t, 1, first.Metrics().Failures)
		send("b.test") // the set, of one, forgets a.test's breaker
		send("a.test")
		second := set.Get("a.test")
		require.NotSame(t, first, second, "the set made a new breaker for a.test")
		assert.Equal(t, 1, second.Metrics().Failures, "the request counted on the breaker the set holds")
		assert.Equal(t, 1, first.Metrics().Failures, "and not on the forgotten one")
	})
}
