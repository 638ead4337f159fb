package httpx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
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

// script is a fixed set of calls, each answered by its path's sequence of
// answers (the last one repeats): it exercises every default of the
// policy. It returns what was sent, one line per request on the wire,
// with its time from the start, and the status each call ended with.
//
//	/flaky  503, 503, 503, 200: needs all 4 attempts
//	/busy   429 Retry-After 2, 200: waits at least 2s
//	/long   503 Retry-After 45: beyond the 30s cap, so it ends at once
//	/date   503 Retry-After as an HTTP-date 3s ahead, 200
//	/down   503 forever: runs out of attempts
//	/order  a POST without a key: dial refused, then 201 (never sent, so
//	        safe to send again), then a POST answered 503: not retried
func script(t *testing.T, client *http.Client) (sent []string, ended []string) {
	t.Helper()
	start := time.Now()
	var mu sync.Mutex
	n := map[string]int{}
	notBefore := map[string]time.Time{} // from the Retry-After given
	client.Transport.(*Transport).Base = rtFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		key := req.Method + " " + req.URL.Path
		n[key]++
		now := time.Now()
		sent = append(sent, fmt.Sprintf("%v %s #%d", now.Sub(start), key, n[key]))
		if now.Before(notBefore[key]) {
			t.Errorf("%s #%d sent %v before its Retry-After allowed", key, n[key], notBefore[key].Sub(now))
		}
		var r *http.Response
		switch k := n[key]; key {
		case "GET /flaky":
			r = respond(map[bool]int{true: 503, false: 200}[k < 4], "")
		case "GET /busy":
			if k == 1 {
				r = respond(429, "", "Retry-After", "2")
				notBefore[key] = now.Add(2 * time.Second)
			} else {
				r = respond(200, "")
			}
		case "GET /long":
			r = respond(503, "", "Retry-After", "45")
		case "GET /date":
			if k == 1 {
				// An HTTP-date says whole seconds: 2 to 3s from now.
				at := now.Add(3 * time.Second).Truncate(time.Second)
				r = respond(503, "", "Retry-After", at.UTC().Format(http.TimeFormat))
				notBefore[key] = at
			} else {
				r = respond(200, "")
			}
		case "GET /down":
			r = respond(503, "")
		case "POST /order":
			if k == 1 {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			}
			r = respond(map[bool]int{true: 201, false: 503}[k == 2], "")
		default:
			t.Errorf("unexpected %s", key)
			r = respond(404, "")
		}
		r.Request = req
		return r, nil
	})
	calls := []struct{ method, path string }{
		{"GET", "/flaky"}, {"GET", "/busy"}, {"GET", "/long"}, {"GET", "/date"},
		{"GET", "/down"}, {"POST", "/order"}, {"POST", "/order"},
	}
	for _, c := range calls {
		t0 := time.Now()
		req, err := http.NewRequestWithContext(context.Background(), c.method, "http://api.test"+c.path, strings.NewReader("body"))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		ended = append(ended, fmt.Sprintf("%s %s: %d after %v", c.method, c.path, resp.StatusCode, time.Since(t0)))
		time.Sleep(time.Minute) // a fresh start for the next call: the floor of the budget refills
	}
	return sent, ended
}

// seeded is a deterministic source of jitter, safe for concurrent use.
func seeded() func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// TestHooksKeepTheDefaults: adding hooks (or a name) to an httpx client
// keeps every default: NewClient() and NewClient with hooks only send the
// same requests at the same times (a hooks-only client once used to
// make 3 attempts, not 4, and wait 53s on a 45s Retry-After, past the 30s
// cap). With one source of jitter for both, the two scripts are identical
// to the nanosecond; with the default random jitter, they send the same
// requests and end every call the same way, each wait within the default
// schedule.
func TestHooksKeepTheDefaults(t *testing.T) {
	var events atomic.Int32
	hooks := resilient.WithHooks(resilient.Hooks{OnAttempt: func(resilient.AttemptEvent) { events.Add(1) }})
	run := func(opts ...Option) (sent, ended []string) {
		synctest.Test(t, func(t *testing.T) {
			sent, ended = script(t, NewClient(opts...))
		})
		return sent, ended
	}

	// One source of jitter: the same requests at the same times.
	sent, ended := run(WithExecutorOptions(resilient.WithRandom(seeded())))
	events.Store(0)
	hSent, hEnded := run(WithExecutorOptions(resilient.WithRandom(seeded())), WithExecutorOptions(hooks, resilient.WithName("api")))
	assert.Equal(t, sent, hSent)
	assert.Equal(t, ended, hEnded)
	assert.EqualValues(t, len(hSent), events.Load(), "the hooks saw every attempt")
	t.Logf("sent:\n%s\nended:\n%s", strings.Join(sent, "\n"), strings.Join(ended, "\n"))

	// The defaults, as they are.
	for _, e := range []struct{ name, call string }{
		{"/flaky", "GET /flaky: 200 after "},
		{"/busy", "GET /busy: 200 after "},
		{"/long", "GET /long: 503 after 0s"},
		{"/date", "GET /date: 200 after "},
		{"/down", "GET /down: 503 after "},
	} {
		assert.True(t, strings.Contains(strings.Join(ended, "\n"), e.call), "%s: %v", e.name, ended)
	}
	assert.Contains(t, ended[5], "POST /order: 201 after ", "a dial error proves a POST never left: sent again")
	assert.Equal(t, "POST /order: 503 after 0s", ended[6], "a POST without a key is not retried after a 503")

	// Real jitter: the same requests, each call ending the same way, every
	// wait within the default schedule.
	plain, plainEnded := run()
	hooked, hookedEnded := run(WithExecutorOptions(hooks))
	strip := func(lines []string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			_, out[i], _ = strings.Cut(l, " ")
		}
		return out
	}
	calls := func(lines []string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			out[i], _, _ = strings.Cut(l, " after ")
		}
		return out
	}
	assert.Equal(t, strip(sent), strip(plain), "NewClient() sends what the seeded default sends")
	assert.Equal(t, strip(plain), strip(hooked))
	assert.Equal(t, calls(plainEnded), calls(hookedEnded))
	for _, ended := range [][]string{plainEnded, hookedEnded} {
		assert.Equal(t, "GET /long: 503 after 0s", ended[2], "a 45s hint ends the call at once")
		for i, max := range map[int]time.Duration{
			0: 100*time.Millisecond + 200*time.Millisecond + 400*time.Millisecond, // three full-jitter waits
			1: 2*time.Second + 2*time.Second/5,                                    // the hint, jittered up by a fifth at most
			3: 3*time.Second + 3*time.Second/5,
			4: 700 * time.Millisecond,
			5: 100 * time.Millisecond,
		} {
			d, err := time.ParseDuration(ended[i][strings.LastIndex(ended[i], " ")+1:])
			require.NoError(t, err)
			assert.LessOrEqual(t, d, max, ended[i])
		}
	}

	// What a hooks-only client was before WithExecutorOptions: an executor
	// of its own, which replaces every default.
	own, ownEnded := run(WithExecutor(resilient.MustNew(hooks)))
	assert.NotEqual(t, strip(plain), strip(own))
	assert.Contains(t, ownEnded[0], "GET /flaky: 503 after", "3 attempts, not 4")
	assert.NotEqual(t, "GET /long: 503 after 0s", ownEnded[2], "a 45s hint waited for, under a 1 minute cap")
}
