package httpx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stallBody serves data, then blocks until it is closed, as the body of a
// response whose server sent its headers and part of its body and then
// nothing: Close, from any goroutine, ends a blocked Read, as net/http's
// bodies do.
type stallBody struct {
	data   io.Reader
	once   sync.Once
	done   chan struct{}
	closes atomic.Int32
}

func newStallBody(data string) *stallBody {
	return &stallBody{data: strings.NewReader(data), done: make(chan struct{})}
}

func (b *stallBody) Read(p []byte) (int, error) {
	if n, _ := b.data.Read(p); n > 0 {
		return n, nil
	}
	<-b.done
	return 0, errors.New("read on closed body")
}

func (b *stallBody) Close() error {
	b.closes.Add(1)
	b.once.Do(func() { close(b.done) })
	return nil
}

// errBody serves data, then fails with err.
type errBody struct {
	data   io.Reader
	err    error
	closes atomic.Int32
}

func (b *errBody) Read(p []byte) (int, error) {
	if n, _ := b.data.Read(p); n > 0 {
		return n, nil
	}
	return 0, b.err
}

func (b *errBody) Close() error {
	b.closes.Add(1)
	return nil
}

func TestDrainIsBoundedInBytesAndTime(t *testing.T) {
	// Each case runs in a bubble of its own: time is synthetic, and the
	// bubble ends only once no timer or goroutine of drain is left.
	run := func(name string, f func(t *testing.T)) { t.Run(name, func(t *testing.T) { synctest.Test(t, f) }) }
	{
		run("whole body", func(t *testing.T) {
			b := &countingBody{r: strings.NewReader("error page")}
			data, err := drain(t.Context(), b, -1)
			assert.Equal(t, "error page", string(data))
			assert.Equal(t, io.EOF, err)
			assert.EqualValues(t, 1, b.closes.Load())
		})
		run("stalled body", func(t *testing.T) {
			b := newStallBody("partial")
			start := time.Now()
			data, err := drain(t.Context(), b, 100)
			assert.Equal(t, DrainTimeout, time.Since(start), "no longer than DrainTimeout")
			assert.Equal(t, "partial", string(data), "what arrived is kept")
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.EqualValues(t, 1, b.closes.Load(), "closed exactly once")
		})
		run("stalled at once", func(t *testing.T) {
			b := newStallBody("")
			start := time.Now()
			data, err := drain(t.Context(), b, -1)
			assert.Equal(t, DrainTimeout, time.Since(start))
			assert.Empty(t, data)
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.EqualValues(t, 1, b.closes.Load())
		})
		run("context ends first", func(t *testing.T) {
			b := newStallBody("abc")
			ctx, cancel := context.WithCancelCause(t.Context())
			time.AfterFunc(DrainTimeout/5, func() { cancel(resilient.ErrAbandoned) })
			start := time.Now()
			data, err := drain(ctx, b, -1)
			assert.Equal(t, DrainTimeout/5, time.Since(start), "the context's end cuts it")
			assert.Equal(t, "abc", string(data))
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.ErrorIs(t, err, resilient.ErrAbandoned, "says why")
			assert.EqualValues(t, 1, b.closes.Load())
		})
		run("context done before", func(t *testing.T) {
			b := newStallBody("abc")
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			data, err := drain(ctx, b, -1)
			assert.Empty(t, data)
			assert.ErrorIs(t, err, context.Canceled)
			assert.EqualValues(t, 1, b.closes.Load())
		})
		run("longer than the limit", func(t *testing.T) {
			b := &countingBody{r: strings.NewReader(strings.Repeat("x", 3*DrainLimit))}
			data, err := drain(t.Context(), b, -1)
			assert.Len(t, data, DrainLimit)
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.EqualValues(t, 1, b.closes.Load())
			assert.Equal(t, 3*DrainLimit-(DrainLimit+1), b.r.(*strings.Reader).Len(), "never reads more than the limit and one byte")
		})
		run("exactly the limit", func(t *testing.T) {
			b := &countingBody{r: strings.NewReader(strings.Repeat("x", DrainLimit))}
			data, err := drain(t.Context(), b, DrainLimit)
			assert.Len(t, data, DrainLimit)
			assert.Equal(t, io.EOF, err)
		})
		run("one byte more than the limit", func(t *testing.T) {
			b := &countingBody{r: strings.NewReader(strings.Repeat("x", DrainLimit+1))}
			data, err := drain(t.Context(), b, -1)
			assert.Len(t, data, DrainLimit, "never more than the limit is kept")
			assert.ErrorIs(t, err, ErrBodyTruncated)
		})
		run("announced longer than the limit", func(t *testing.T) {
			b := &countingBody{r: strings.NewReader(strings.Repeat("x", DrainLimit+1))}
			data, err := drain(t.Context(), b, DrainLimit+1)
			assert.Empty(t, data)
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.Equal(t, DrainLimit+1, b.r.(*strings.Reader).Len(), "not read at all")
			assert.EqualValues(t, 1, b.closes.Load())
		})
		run("read error", func(t *testing.T) {
			b := &errBody{data: strings.NewReader("par"), err: errReset}
			data, err := drain(t.Context(), b, -1)
			assert.Equal(t, "par", string(data))
			assert.ErrorIs(t, err, ErrBodyTruncated)
			assert.ErrorIs(t, err, errReset)
			assert.EqualValues(t, 1, b.closes.Load())
		})
	}
}

func TestKeptBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resp := &http.Response{Body: newStallBody("half a page"), ContentLength: 100}
		orig := resp.Body.(*stallBody)
		keep(t.Context(), resp)
		_, err := io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, ErrBodyTruncated, "a cut body says so")
		assert.EqualValues(t, 1, orig.closes.Load())

		resp = &http.Response{Body: &countingBody{r: strings.NewReader("whole")}, ContentLength: -1}
		keep(t.Context(), resp)
		keep(t.Context(), resp) // kept once
		assert.Equal(t, "whole", readAll(t, resp.Body))
		require.NoError(t, resp.Body.Close())
		require.NoError(t, resp.Body.Close())
		_, err = resp.Body.Read(make([]byte, 1))
		assert.ErrorIs(t, err, http.ErrBodyReadAfterClose)

		resp = &http.Response{Body: http.NoBody}
		keep(t.Context(), resp)
		assert.Equal(t, http.NoBody, resp.Body)
	})
}

// Regression: a retried 503 whose headers came but whose body then stalled
// held the call forever: its body was drained, up to 64 KiB, with no bound
// in time. Each response is set aside within DrainTimeout; the caller gets
// the last 503, its body cut and saying so.
func TestTransportStalledBodiesDoNotHoldTheCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var bodies []*stallBody
		f := &fakeRT{fn: func(n int, _ *http.Request) (*http.Response, error) {
			b := newStallBody("busy")
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
			r := respond(503, "")
			r.Body, r.ContentLength = b, 1000
			return r, nil
		}}
		tr := newTransport(t, f, WithExecutor(noWait()))
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, DefaultAttempts*DrainTimeout, time.Since(start), "DrainTimeout per attempt, no more")
		assert.Equal(t, 503, resp.StatusCode)
		b, err := io.ReadAll(resp.Body)
		assert.Equal(t, "busy", string(b))
		assert.ErrorIs(t, err, ErrBodyTruncated)
		require.NoError(t, resp.Body.Close())
		require.Len(t, bodies, DefaultAttempts)
		for i, b := range bodies {
			assert.EqualValues(t, 1, b.closes.Load(), "body %d closed exactly once", i+1)
		}
	})
}

// A hedged attempt that loses its round answers late, with a 200 whose
// body stalls: the winner's return waits DrainTimeout for it at most.
func TestTransportLateHedgeReplyWithStalledBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		late := newStallBody("late")
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			if n == 1 {
				// Ignores its context: its headers come after the winner's.
				time.Sleep(200 * time.Millisecond)
				r := respond(200, "")
				r.Body = late
				return r, nil
			}
			time.Sleep(50 * time.Millisecond)
			return respond(200, "winner"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(100*time.Millisecond, 2))
		tr := newTransport(t, f, WithExecutor(ex))
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, t.Context(), "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 200*time.Millisecond+DrainTimeout, time.Since(start),
			"the loser (which ignores its context) is waited for, and its body for DrainTimeout, no more")
		assert.Equal(t, "winner", readAll(t, resp.Body))
		assert.EqualValues(t, 1, late.closes.Load())
	})
}

// Regression: a hedged GET whose hedge answered a 503 with a stalled body,
// and whose first attempt then won with a 200 at 150ms, returned only when
// the caller's deadline ended the drain of the 503. The 503 was set aside
// within DrainTimeout, so the winner returns as soon as it answers.
func TestTransportHedgeWinnerNotHeldByStalledBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stalled := newStallBody("")
		f := &fakeRT{fn: func(n int, req *http.Request) (*http.Response, error) {
			if n == 2 { // the hedge, at 100ms
				r := respond(503, "")
				r.Body = stalled
				return r, nil
			}
			time.Sleep(150 * time.Millisecond)
			return respond(200, "winner"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(100*time.Millisecond, 2))
		tr := newTransport(t, f, WithExecutor(ex))
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := tr.RoundTrip(get(t, ctx, "http://api.test/x"))
		require.NoError(t, err)
		assert.Equal(t, 150*time.Millisecond, time.Since(start), "returned when the winner answered")
		assert.Equal(t, "winner", readAll(t, resp.Body))
		assert.Equal(t, 2, f.calls())
		assert.EqualValues(t, 1, stalled.closes.Load())
	})
}
