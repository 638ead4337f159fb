package httpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stream is a request body without GetBody (http.NewRequest cannot make
// one for it): it counts the bytes read from it and its closes.
type stream struct {
	r      io.Reader
	read   atomic.Int64
	closes atomic.Int32
}

func newStream(s string) *stream { return &stream{r: strings.NewReader(s)} }

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.read.Add(int64(n))
	return n, err
}

func (s *stream) Close() error {
	s.closes.Add(1)
	return nil
}

// streamRequest makes a request whose body is s, without GetBody.
func streamRequest(t *testing.T, ctx context.Context, method string, s io.ReadCloser) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://api.test/x", s)
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	return req
}

// Regression: a body without GetBody could never be retried, even 8 bytes
// long. It is teed while sent and replayed, byte for byte.
func TestTransportReplaysBodiesWithoutGetBody(t *testing.T) {
	cases := []struct {
		name   string
		method string
		key    string
		opts   []Option
	}{
		{"PUT", http.MethodPut, "", nil},
		{"DELETE", http.MethodDelete, "", nil},
		{"POST with a key", http.MethodPost, "order-1", nil},
		{"POST opted in", http.MethodPost, "", []Option{WithNonIdempotentRetries()}},
		{"PATCH with a generated key", http.MethodPatch, "", []Option{WithIdempotencyKeys()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(503, 503, 200)}
			tr := newTransport(t, f, append([]Option{WithExecutor(noWait())}, tc.opts...)...)
			s := newStream("8 bytes!")
			req := streamRequest(t, context.Background(), tc.method, s)
			if tc.key != "" {
				req.Header.Set(IdempotencyKeyHeader, tc.key)
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, []string{"8 bytes!", "8 bytes!", "8 bytes!"}, f.sent, "every attempt sent the whole body")
			assert.EqualValues(t, 8, s.read.Load(), "each byte read from the stream once")
			assert.EqualValues(t, 1, s.closes.Load(), "the caller's body is closed exactly once")
			assert.Same(t, s, req.Body, "the caller's request is not modified")
		})
	}
}

// noReadRT answers attempt n with fn, reading at most read(n) bytes of its
// body first and recording them, and closes the body.
type noReadRT struct {
	read func(n int) int
	fn   func(n int) (*http.Response, error)

	mu   sync.Mutex
	n    int
	sent []string
}

func (rt *noReadRT) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.n++
	n := rt.n
	rt.mu.Unlock()
	var b []byte
	if k := rt.read(n); k != 0 && req.Body != nil {
		if k < 0 {
			b, _ = io.ReadAll(req.Body)
		} else {
			b = make([]byte, k)
			k, _ = io.ReadFull(req.Body, b)
			b = b[:k]
		}
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	rt.mu.Lock()
	rt.sent = append(rt.sent, string(b))
	rt.mu.Unlock()
	resp, err := rt.fn(n)
	if resp != nil {
		resp.Request = req
	}
	return resp, err
}

var errDial error = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// A POST without an idempotency key is sent again only after a failure
// that proves it never left; its stream body, of which nothing was read,
// goes whole with the next attempt. Once any of it was read, it is not sent
// again.
func TestTransportStreamPostAfterDialError(t *testing.T) {
	t.Run("nothing read", func(t *testing.T) {
		rt := &noReadRT{
			read: func(n int) int { return map[bool]int{true: 0, false: -1}[n == 1] },
			fn: func(n int) (*http.Response, error) {
				if n == 1 {
					return nil, errDial
				}
				return respond(201, "created"), nil
			},
		}
		tr := newTransport(t, rt, WithExecutor(noWait()))
		s := newStream(`{"amount":1}`)
		resp, err := tr.RoundTrip(streamRequest(t, context.Background(), http.MethodPost, s))
		require.NoError(t, err)
		assert.Equal(t, 201, resp.StatusCode)
		assert.Equal(t, []string{"", `{"amount":1}`}, rt.sent)
		assert.EqualValues(t, 1, s.closes.Load())
	})
	t.Run("part read", func(t *testing.T) {
		rt := &noReadRT{
			read: func(int) int { return 3 },
			fn:   func(int) (*http.Response, error) { return nil, errDial },
		}
		tr := newTransport(t, rt, WithExecutor(noWait()))
		s := newStream(`{"amount":1}`)
		_, err := tr.RoundTrip(streamRequest(t, context.Background(), http.MethodPost, s))
		require.ErrorIs(t, err, errDial)
		assert.Equal(t, []string{`{"a`}, rt.sent, "not sent again: bytes of it were read")
		assert.EqualValues(t, 1, s.closes.Load())
	})
}

func TestTransportReplayLimit(t *testing.T) {
	body := strings.Repeat("b", 32)
	cases := []struct {
		name  string
		opts  []Option
		body  string
		known bool // ContentLength set
		sent  []string
	}{
		{"within the limit", []Option{WithReplayLimit(32)}, body, false, []string{body, body}},
		{"within the limit, length known", []Option{WithReplayLimit(32)}, body, true, []string{body, body}},
		{"beyond the limit: sent once", []Option{WithReplayLimit(31)}, body, false, []string{body}},
		{"announced beyond the limit: sent once", []Option{WithReplayLimit(31)}, body, true, []string{body}},
		{"0 disables", []Option{WithReplayLimit(0)}, "8 bytes!", false, []string{"8 bytes!"}},
		{"default", nil, body, false, []string{body, body}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRT{fn: statuses(503, 200)}
			tr := newTransport(t, f, append([]Option{WithExecutor(noWait())}, tc.opts...)...)
			s := newStream(tc.body)
			req := streamRequest(t, context.Background(), http.MethodPut, s)
			if tc.known {
				req.ContentLength = int64(len(tc.body))
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, tc.sent, f.sent)
			if len(tc.sent) == 1 {
				assert.Equal(t, 503, resp.StatusCode, "the answer of the only attempt")
				assert.Equal(t, "x", readAll(t, resp.Body))
			} else {
				assert.Equal(t, 200, resp.StatusCode)
			}
			assert.EqualValues(t, 1, s.closes.Load())
		})
	}
	_, err := NewTransport(WithReplayLimit(-1))
	require.EqualError(t, err, "resilient: httpx.WithReplayLimit: n must be >= 0, got -1")
}

// The stream is read only as attempts send it: never ahead, each byte once.
func TestTransportReplayNeverReadsAhead(t *testing.T) {
	payload := strings.Repeat("0123456789", 100)
	s := newStream(payload)
	var readAtFirst int64
	rt := &noReadRT{
		read: func(n int) int { return map[bool]int{true: 4, false: -1}[n == 1] },
		fn: func(n int) (*http.Response, error) {
			if n == 1 {
				readAtFirst = s.read.Load()
				return nil, errReset
			}
			return respond(200, "ok"), nil
		},
	}
	tr := newTransport(t, rt, WithExecutor(noWait()))
	resp, err := tr.RoundTrip(streamRequest(t, context.Background(), http.MethodPut, s))
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 4, readAtFirst, "no more than the first attempt sent")
	assert.Equal(t, []string{payload[:4], payload}, rt.sent, "the replay, then the rest of the stream")
	assert.EqualValues(t, len(payload), s.read.Load(), "each byte read once")
	assert.EqualValues(t, 1, s.closes.Load())
}

// An earlier attempt's transport may go on reading its body after its
// RoundTrip returned; once a later attempt has taken the stream over, the
// earlier body fails, and the later one still gets every byte.
func TestTransportReplayDetachesEarlierAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		payload := strings.Repeat("p", 10000)
		s := newStream(payload)
		var lateErr error
		var mu sync.Mutex
		var sent []string
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			n := len(sent) + 1
			sent = append(sent, "")
			mu.Unlock()
			if n == 1 {
				head := make([]byte, 100)
				_, _ = io.ReadFull(req.Body, head)
				go func() { // the write goes on after the response came
					time.Sleep(time.Second)
					_, lateErr = io.ReadAll(req.Body)
					_ = req.Body.Close()
				}()
				r := respond(503, "early answer")
				r.Request = req
				return r, nil
			}
			b, err := io.ReadAll(req.Body)
			_ = req.Body.Close()
			mu.Lock()
			sent[n-1] = string(b)
			mu.Unlock()
			if err != nil {
				return nil, err
			}
			r := respond(200, "ok")
			r.Request = req
			return r, nil
		})
		ex := resilient.MustNew(resilient.WithBackoff(resilient.Constant(2*time.Second)), resilient.WithJitter(resilient.NoJitter))
		tr := newTransport(t, base, WithExecutor(ex))
		resp, err := tr.RoundTrip(streamRequest(t, t.Context(), http.MethodPut, s))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		synctest.Wait()
		assert.ErrorIs(t, lateErr, errDetached, "the earlier body no longer reads the stream")
		require.Len(t, sent, 2)
		assert.Equal(t, payload, sent[1])
		assert.EqualValues(t, len(payload), s.read.Load())
		assert.EqualValues(t, 1, s.closes.Load())
	})
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// The caller's body is closed once the round trip has ended and the last
// attempt's transport has closed its body, which it may do after
// RoundTrip returned.
func TestTransportReplayClosesTheStreamOnceSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newStream("upload")
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			go func() { // an upload that ends after the response came
				time.Sleep(time.Second)
				_, _ = io.ReadAll(req.Body)
				_ = req.Body.Close()
			}()
			return respond(200, "ok"), nil
		})
		tr := newTransport(t, base)
		resp, err := tr.RoundTrip(streamRequest(t, t.Context(), http.MethodPut, s))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Zero(t, s.closes.Load(), "still being sent")
		time.Sleep(time.Second)
		synctest.Wait()
		assert.EqualValues(t, 6, s.read.Load())
		assert.EqualValues(t, 1, s.closes.Load())
	})
}

// A stream with an error is not sent again: its replay would fail the
// same way.
func TestTransportReplayStreamError(t *testing.T) {
	boom := errors.New("disk on fire")
	body := &errBody{data: strings.NewReader("abc"), err: boom}
	calls := 0
	base := rtFunc(func(req *http.Request) (*http.Response, error) {
		calls++
		_, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		return nil, err
	})
	tr := newTransport(t, base, WithExecutor(noWait()))
	req, err := http.NewRequest(http.MethodPut, "http://api.test/x", body)
	require.NoError(t, err)
	_, err = tr.RoundTrip(req)
	require.ErrorIs(t, err, boom)
	assert.Equal(t, 1, calls)
	assert.EqualValues(t, 1, body.closes.Load())
}

// A buffered body is never hedged: one stream feeds one attempt at a time.
func TestTransportReplayedBodyIsNotHedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeRT{fn: func(int, *http.Request) (*http.Response, error) {
			time.Sleep(5 * time.Second)
			return respond(200, "ok"), nil
		}}
		ex := resilient.MustNew(resilient.WithHedge(time.Second, 3))
		tr := newTransport(t, f, WithExecutor(ex))
		resp, err := tr.RoundTrip(streamRequest(t, t.Context(), http.MethodPut, newStream("x")))
		require.NoError(t, err)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 1, f.calls())
	})
}

// A body without GetBody, refused before its first attempt, is closed.
func TestTransportReplayClosedWhenRefused(t *testing.T) {
	set := resilient.MustNewBreakers(4, time.Hour)
	set.Get("api.test").ForceOpen()
	s := newStream("x")
	tr := newTransport(t, &fakeRT{fn: statuses(200)}, WithHostBreakers(set))
	_, err := tr.RoundTrip(streamRequest(t, context.Background(), http.MethodPut, s))
	require.ErrorIs(t, err, resilient.ErrOpen)
	assert.Zero(t, s.read.Load())
	assert.EqualValues(t, 1, s.closes.Load())
}

// zeros is an endless stream of zero bytes that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A 256 MiB upload streams: its length known, it is never buffered; of an
// unknown length, at most the replay limit is, and dropped once outgrown.
func TestTransportLargeUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 512 MiB")
	}
	const size = 256 << 20
	base := rtFunc(func(req *http.Request) (*http.Response, error) {
		n, err := io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
		if err != nil || n != size {
			return nil, errors.New("short upload")
		}
		return respond(200, ""), nil
	})
	tr := newTransport(t, base, WithExecutor(noWait()))
	for _, tc := range []struct {
		name  string
		known bool
		max   uint64
	}{
		{"length known", true, 64 << 10},
		{"length unknown", false, DefaultReplayLimit + 64<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			got := allocated(func() {
				req := streamRequest(t, context.Background(), http.MethodPut, io.NopCloser(io.LimitReader(zeros{}, size)))
				if tc.known {
					req.ContentLength = size
				}
				resp, err = tr.RoundTrip(req)
			})
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Less(t, got, tc.max)
			t.Logf("%s: %d KiB allocated for a 256 MiB upload", tc.name, got>>10)
		})
	}
}

// Over loopback, a stream body is replayed byte for byte to a real server.
func TestServerStreamBodyReplayed(t *testing.T) {
	leakCheck(t)
	payload := make([]byte, 300<<10)
	_, _ = rand.Read(payload)
	want := sha256.Sum256(payload)
	var mu sync.Mutex
	var got [][32]byte
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mu.Lock()
		got = append(got, sha256.Sum256(b))
		n := len(got)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	for _, known := range []bool{false, true} {
		mu.Lock()
		got = nil
		mu.Unlock()
		client := NewClient(WithBase(newHTTPTransport(t)), WithExecutor(noWait()))
		s := &stream{r: bytes.NewReader(payload)}
		req, err := http.NewRequest(http.MethodPut, srv.URL, s)
		require.NoError(t, err)
		if known {
			req.ContentLength = int64(len(payload))
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, http.StatusCreated, resp.StatusCode)
		require.Len(t, got, 3)
		for i, h := range got {
			assert.Equal(t, want, h, "attempt %d sent the original bytes", i+1)
		}
		assert.EqualValues(t, len(payload), s.read.Load(), "each byte read once")
		client.CloseIdleConnections()
	}
}

// TestTransportReplayHammer races the transports of earlier attempts, still
// reading their bodies, against later attempts, many times over: every
// attempt that reads its body whole gets the payload byte for byte, and
// the stream is read once and closed once.
func TestTransportReplayHammer(t *testing.T) {
	payload := make([]byte, 20000)
	_, _ = rand.Read(payload)
	for i := range 200 {
		s := &stream{r: bytes.NewReader(payload)}
		var late sync.WaitGroup
		var mu sync.Mutex
		n := 0
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			n++
			k := n
			mu.Unlock()
			if k < 3 {
				head := make([]byte, (i*37+k*101)%len(payload))
				_, _ = io.ReadFull(req.Body, head)
				late.Go(func() { // goes on reading, racing the next attempt
					_, _ = io.Copy(io.Discard, req.Body)
					_ = req.Body.Close()
				})
				return respond(503, ""), nil
			}
			b, err := io.ReadAll(req.Body)
			_ = req.Body.Close()
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(b, payload) {
				return nil, errors.New("corrupt replay")
			}
			return respond(200, ""), nil
		})
		tr := newTransport(t, base, WithExecutor(noWait()))
		resp, err := tr.RoundTrip(streamRequest(t, context.Background(), http.MethodPut, s))
		require.NoError(t, err, "iteration %d", i)
		require.Equal(t, 200, resp.StatusCode, "iteration %d", i)
		waited := make(chan struct{})
		go func() { late.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Fatal("an earlier attempt's body never returned")
		}
		require.EqualValues(t, len(payload), s.read.Load(), "iteration %d", i)
		require.EqualValues(t, 1, s.closes.Load(), "iteration %d", i)
	}
}

// gatedStream serves first, then blocks until release is closed, then
// serves rest.
type gatedStream struct {
	first, rest []byte
	blocked     chan struct{} // closed when a read waits for release
	release     chan struct{}
	once        sync.Once
	closes      atomic.Int32
}

func (g *gatedStream) Read(p []byte) (int, error) {
	if len(g.first) > 0 {
		n := copy(p, g.first)
		g.first = g.first[n:]
		return n, nil
	}
	g.once.Do(func() { close(g.blocked) })
	<-g.release
	if len(g.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.rest)
	g.rest = g.rest[n:]
	return n, nil
}

func (g *gatedStream) Close() error {
	g.closes.Add(1)
	return nil
}

// An earlier attempt's transport, blocked in the stream when the next
// attempt took over, can still push the body past the replay limit during
// the wait. The next attempt is then refused, not sent: the call ends with
// the response that came, as a rejection.
func TestTransportReplayOutgrownDuringTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gatedStream{first: make([]byte, 10), rest: make([]byte, 100), blocked: make(chan struct{}), release: make(chan struct{})}
		calls := 0
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			calls++
			head := make([]byte, 10)
			_, _ = io.ReadFull(req.Body, head)
			go func() { // still sending: blocked in the stream
				_, _ = io.Copy(io.Discard, req.Body)
				_ = req.Body.Close()
			}()
			<-g.blocked // the answer comes while the body is still being read
			r := respond(503, "busy")
			r.Request = req
			return r, nil
		})
		var done []resilient.DoneEvent
		ex := resilient.MustNew(resilient.WithBackoff(resilient.Constant(time.Second)), resilient.WithJitter(resilient.NoJitter),
			resilient.WithHooks(resilient.Hooks{OnDone: func(e resilient.DoneEvent) { done = append(done, e) }}))
		tr := newTransport(t, base, WithExecutor(ex), WithReplayLimit(50))
		time.AfterFunc(500*time.Millisecond, func() { close(g.release) })
		resp, err := tr.RoundTrip(streamRequest(t, t.Context(), http.MethodPut, g))
		require.NoError(t, err)
		assert.Equal(t, 503, resp.StatusCode)
		assert.Equal(t, "busy", readAll(t, resp.Body))
		assert.Equal(t, 1, calls, "not sent again")
		require.Len(t, done, 1)
		assert.Equal(t, resilient.ReasonRejected, done[0].Reason)
		assert.ErrorIs(t, done[0].Err, errNotReplayable)
		synctest.Wait()
		assert.EqualValues(t, 1, g.closes.Load())
	})
}

// A body announced longer than the replay limit is never buffered, but
// goes whole with the next attempt after a failure that proves nothing of
// it was read.
func TestTransportLongBodyAfterDialError(t *testing.T) {
	payload := strings.Repeat("L", 64)
	rt := &noReadRT{
		read: func(n int) int { return map[bool]int{true: 0, false: -1}[n == 1] },
		fn: func(n int) (*http.Response, error) {
			if n == 1 {
				return nil, errDial
			}
			return respond(503, "busy"), nil
		},
	}
	tr := newTransport(t, rt, WithExecutor(noWait()), WithReplayLimit(16))
	s := newStream(payload)
	req := streamRequest(t, context.Background(), http.MethodPut, s)
	req.ContentLength = int64(len(payload))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode, "sent whole once, then not retried")
	assert.Equal(t, []string{"", payload}, rt.sent)
	assert.EqualValues(t, 1, s.closes.Load())
}
