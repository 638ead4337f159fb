package chaos

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve calls the handler in memory; aborted reports a dropped connection.
func serve(u *Upstream, method, id, key string) (rec *httptest.ResponseRecorder, aborted bool) {
	req := httptest.NewRequest(method, "/items/1", strings.NewReader("{}"))
	if id != "" {
		req.Header.Set(RequestIDHeader, id)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec = httptest.NewRecorder()
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			aborted = true
		}
	}()
	u.ServeHTTP(rec, req)
	return rec, false
}

// clean is a config whose phases do one thing each.
func clean() Config {
	c := DefaultConfig(1)
	c.Timeline = Timeline{{Healthy, time.Second}, {Brownout, time.Second}, {Throttling, time.Second}, {Outage, time.Second}, {Recovery, time.Second}}
	c.Profiles[Brownout] = Profile{Unavailable: 1}
	c.Profiles[Throttling] = Profile{Throttled: 1}
	return c
}

func TestUpstreamRunsItsTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u, err := New(clean())
		require.NoError(t, err)
		t0 := time.Now()
		want := []struct {
			code    int
			aborted bool
		}{{200, false}, {503, false}, {429, false}, {0, true}, {200, false}}
		for i, w := range want {
			time.Sleep(time.Until(t0.Add(time.Duration(i)*time.Second + 500*time.Millisecond)))
			idx, p := u.Phase()
			require.Equal(t, i, idx)
			rec, aborted := serve(u, "GET", "r"+strconv.Itoa(i), "")
			assert.Equal(t, w.aborted, aborted, "phase %s", p.Kind)
			if !aborted {
				assert.Equal(t, w.code, rec.Code, "phase %s", p.Kind)
			}
		}
		time.Sleep(time.Hour)
		rec, _ := serve(u, "GET", "late", "")
		assert.Equal(t, 200, rec.Code, "the last phase goes on")

		s := u.Stats()
		require.Len(t, s.Phases, 5)
		for i, p := range s.Phases {
			wantN := 1
			if i == 4 {
				wantN = 2
			}
			assert.Equal(t, wantN, p.Received, "phase %d", i)
		}
		assert.Equal(t, 1, s.Phases[1].Unavailable)
		assert.Equal(t, 1, s.Phases[2].Throttled)
		assert.Equal(t, 1, s.Phases[3].Down)
		assert.Equal(t, 3, s.Total.OK)
		assert.Equal(t, 3, s.Total.Executed, "503, 429 and the outage execute nothing")
	})
}

func TestUpstreamSlowHeadersAndSpikes(t *testing.T) {
	tests := []struct {
		name    string
		profile Profile
		min     time.Duration
		max     time.Duration
	}{
		{"served", Profile{}, 2 * time.Millisecond, 2 * time.Millisecond},
		{"slow headers", Profile{SlowHeaders: 1}, 1502 * time.Millisecond, 1502 * time.Millisecond},
		{"spike", Profile{Spike: 1}, 152 * time.Millisecond, 402 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := clean()
				c.Timeline = Timeline{{Brownout, time.Minute}}
				c.Profiles[Brownout] = tt.profile
				u, err := New(c)
				require.NoError(t, err)
				start := time.Now()
				rec, _ := serve(u, "GET", "a", "")
				took := time.Since(start)
				assert.Equal(t, 200, rec.Code)
				assert.Equal(t, c.BodySize, rec.Body.Len())
				assert.GreaterOrEqual(t, took, tt.min)
				assert.LessOrEqual(t, took, tt.max)
			})
		})
	}
}

func TestUpstreamCountsEarlyRetries(t *testing.T) {
	tests := []struct {
		name  string
		date  bool
		hint  time.Duration
		start time.Duration // offset into the second at which the 429 is given
		// wantHeader matches the Retry-After written at the start.
		wantHeader string
		wantWait   time.Duration // earliest allowed retry, from the 429
	}{
		{"seconds", false, 2 * time.Second, 0, "2", 2 * time.Second},
		{"date on a whole second", true, time.Second, 0, "Sat, 01 Jan 2000 00:00:01 GMT", time.Second},
		{"date rounds up", true, time.Second, 300 * time.Millisecond, "Sat, 01 Jan 2000 00:00:02 GMT", 1700 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// synctest's clock starts at 2000-01-01 00:00:00 UTC.
				time.Sleep(tt.start)
				c := clean()
				c.Timeline = Timeline{{Throttling, time.Hour}}
				c.RetryAfter = []time.Duration{tt.hint}
				c.DateShare = 0
				if tt.date {
					c.DateShare = 1
				}
				u, err := New(c)
				require.NoError(t, err)
				t0 := time.Now()
				rec, _ := serve(u, "GET", "a", "")
				require.Equal(t, 429, rec.Code)
				assert.Equal(t, tt.wantHeader, rec.Header().Get("Retry-After"))

				time.Sleep(time.Until(t0.Add(tt.wantWait - time.Millisecond)))
				rec, _ = serve(u, "GET", "a", "") // too soon: counted, throttled again
				assert.Equal(t, 1, u.Stats().Total.EarlyRetries)
				assert.Equal(t, 429, rec.Code)

				serve(u, "GET", "b", "") // another id owes nothing
				assert.Equal(t, 1, u.Stats().Total.EarlyRetries)

				c2 := c
				c2.Seed = 2
				u2, err := New(c2)
				require.NoError(t, err)
				t1 := time.Now()
				serve(u2, "GET", "a", "")
				time.Sleep(time.Until(t1.Add(notBefore(t1, Decision{RetryAfter: tt.hint, HTTPDate: tt.date}).Sub(t1))))
				serve(u2, "GET", "a", "") // exactly on time
				assert.Zero(t, u2.Stats().Total.EarlyRetries)
			})
		})
	}
}

func TestUpstreamCountsDuplicateExecutions(t *testing.T) {
	type call struct{ method, id, key string }
	tests := []struct {
		name                string
		ignoreKeys          bool
		calls               []call
		dups, replays, exec int
	}{
		{"get twice is fine", false, []call{{"GET", "a", ""}, {"GET", "a", ""}}, 0, 0, 2},
		{"post without key twice", false, []call{{"POST", "a", ""}, {"POST", "a", ""}, {"POST", "a", ""}}, 2, 0, 3},
		{"posts of different ids", false, []call{{"POST", "a", ""}, {"POST", "b", ""}}, 0, 0, 2},
		{"post with key replayed", false, []call{{"POST", "a", "k"}, {"POST", "a", "k"}}, 0, 1, 1},
		{"key ignored", true, []call{{"POST", "a", "k"}, {"POST", "b", "k"}}, 1, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := clean()
				c.Timeline = Timeline{{Healthy, time.Hour}}
				c.IgnoreIdempotencyKeys = tt.ignoreKeys
				u, err := New(c)
				require.NoError(t, err)
				for _, cl := range tt.calls {
					rec, _ := serve(u, cl.method, cl.id, cl.key)
					assert.Equal(t, 200, rec.Code)
				}
				s := u.Stats().Total
				assert.Equal(t, tt.dups, s.Duplicates, "duplicates")
				assert.Equal(t, tt.replays, s.Replayed, "replays")
				assert.Equal(t, tt.exec, s.Executed, "executions")
			})
		})
	}
}

func TestUpstreamOutage503(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := clean()
		c.Timeline = Timeline{{Outage, time.Hour}}
		c.Outage = Fail503
		u, err := New(c)
		require.NoError(t, err)
		rec, aborted := serve(u, "POST", "a", "")
		assert.False(t, aborted)
		assert.Equal(t, 503, rec.Code)
		assert.Zero(t, u.Stats().Total.Executed)
	})
}

// The network tests run on real time, outside bubbles: the phases are kept
// short and each check waits for the phase it needs.
func waitPhase(t *testing.T, u *Upstream, i int) {
	t.Helper()
	require.Eventually(t, func() bool { idx, _ := u.Phase(); return idx == i }, 5*time.Second, time.Millisecond)
}

func TestUpstreamRefusesConnectionsDuringOutage(t *testing.T) {
	c := clean()
	c.Timeline = Timeline{{Healthy, 300 * time.Millisecond}, {Outage, 300 * time.Millisecond}, {Recovery, time.Hour}}
	u, err := New(c)
	require.NoError(t, err)
	require.NoError(t, u.Start())
	defer u.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() (int, error) {
		resp, err := client.Get(u.URL() + "/x")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}

	code, err := get()
	require.NoError(t, err)
	assert.Equal(t, 200, code)

	waitPhase(t, u, 1)
	require.Eventually(t, func() bool {
		_, err := get()
		return errors.Is(err, syscall.ECONNREFUSED)
	}, 2*time.Second, 5*time.Millisecond, "the outage refuses connections")

	waitPhase(t, u, 2)
	require.Eventually(t, func() bool {
		code, err := get()
		return err == nil && code == 200
	}, 2*time.Second, 5*time.Millisecond, "it serves again on the same address after the outage")
	s := u.Stats()
	assert.GreaterOrEqual(t, s.Total.Connections, 2, "the keep-alive connection was reset by the outage")
	assert.Equal(t, 1, s.Phases[0].Connections)
}

func TestUpstreamResetsMidBody(t *testing.T) {
	c := clean()
	c.Timeline = Timeline{{Brownout, time.Hour}}
	c.Profiles[Brownout] = Profile{Reset: 1}
	u, err := New(c)
	require.NoError(t, err)
	require.NoError(t, u.Start())
	defer u.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(u.URL() + "/x")
	require.NoError(t, err, "the headers arrive")
	defer resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	assert.Error(t, err, "the body is cut")
	assert.Less(t, len(body), c.BodySize)
	assert.Equal(t, 1, u.Stats().Total.Resets)
	assert.Equal(t, 1, u.Stats().Total.Executed, "its work was done")
	require.NoError(t, u.Close())
	assert.Equal(t, 1, u.Stats().Total.Received, "counters stay readable")
}

func TestUpstreamThrottlesEarlyRetriesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := clean()
		c.Timeline = Timeline{{Throttling, time.Hour}}
		c.Profiles[Throttling] = Profile{Throttled: 0.5}
		c.RetryAfter = []time.Duration{time.Second}
		c.DateShare = 0
		// An id whose first arrival is throttled and whose second is not.
		id := ""
		for i := 0; id == ""; i++ {
			cand := strconv.Itoa(i)
			if c.Decide(0, cand, 1).Fault == Throttled && c.Decide(0, cand, 2).Fault == None {
				id = cand
			}
		}
		tests := []struct {
			name  string
			after time.Duration
			code  int
			early int
		}{
			{"too soon: throttled again", 500 * time.Millisecond, 429, 1},
			{"on time: served", time.Second, 200, 0},
		}
		for _, tt := range tests {
			u, err := New(c)
			require.NoError(t, err)
			rec, _ := serve(u, "GET", id, "")
			require.Equal(t, 429, rec.Code)
			time.Sleep(tt.after)
			rec, _ = serve(u, "GET", id, "")
			assert.Equal(t, tt.code, rec.Code, tt.name)
			assert.Equal(t, tt.early, u.Stats().Total.EarlyRetries, tt.name)
		}
	})
}

// TestUpstreamHTTP2 checks that with Config.HTTP2 the upstream speaks
// unencrypted HTTP/2 as well as HTTP/1.1, and that a request cancelled
// over HTTP/2 keeps its connection: one connection serves them all.
func TestUpstreamHTTP2(t *testing.T) {
	for _, tc := range []struct {
		name  string
		http2 bool
		proto int
	}{
		{"http1 only", false, 1},
		{"http2", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clean()
			c.Timeline = Timeline{{Brownout, time.Hour}}
			c.Profiles[Brownout] = Profile{SlowHeaders: 0.5}
			c.SlowHeaders = time.Minute
			c.HTTP2 = tc.http2
			u, err := New(c)
			require.NoError(t, err)
			require.NoError(t, u.Start())
			defer u.Close()
			tr := &http.Transport{}
			if tc.http2 {
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				tr.Protocols = &p
			}
			defer tr.CloseIdleConnections()
			cancelled := 0
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.URL()+"/x", nil)
				require.NoError(t, err)
				req.Header.Set(RequestIDHeader, strconv.Itoa(i))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					cancel()
					require.ErrorIs(t, err, context.DeadlineExceeded)
					cancelled++
					continue
				}
				assert.Equal(t, tc.proto, resp.ProtoMajor)
				_, err = io.Copy(io.Discard, resp.Body)
				assert.NoError(t, err)
				resp.Body.Close()
				cancel()
			}
			require.Positive(t, cancelled, "some requests were held back and cancelled")
			conns := u.Stats().Total.Connections
			if tc.http2 {
				assert.Equal(t, 1, conns, "a cancelled stream keeps its connection")
			} else {
				assert.GreaterOrEqual(t, conns, cancelled, "each cancelled request closed its connection")
			}
		})
	}
}
