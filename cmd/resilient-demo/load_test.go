package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type sent struct {
	at                time.Duration
	id, method, key   string
	hasBody, deadline bool
}

// load runs the load generator in a bubble against a fake client that
// answers at once, and returns what it was asked to send, in order.
func load(t *testing.T, seed uint64, callers int, rate float64) []sent {
	t.Helper()
	var out []sent
	synctest.Test(t, func(t *testing.T) {
		cfg := &config{callers: callers, rate: rate, timeout: time.Second, seed: seed, posts: 0.38, unkeyed: 0.02, duration: 2 * time.Second}
		rec := newRecorder(time.Now())
		var mu sync.Mutex
		do := func(req *http.Request) (*http.Response, error) {
			_, dl := req.Context().Deadline()
			mu.Lock()
			out = append(out, sent{at: time.Since(rec.start), id: req.Header.Get(chaos.RequestIDHeader), method: req.Method,
				key: req.Header.Get("Idempotency-Key"), hasBody: req.Body != nil, deadline: dl})
			mu.Unlock()
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok"))}, nil
		}
		runLoad(context.Background(), cfg, "http://upstream", do, rec)
		assert.Len(t, rec.calls, len(out), "every request recorded")
	})
	slices.SortFunc(out, func(a, b sent) int { return strings.Compare(a.id, b.id) })
	return out
}

func TestLoadIsFixedBySeed(t *testing.T) {
	a := load(t, 7, 4, 40)
	require.Len(t, a, 80, "4 callers at 40 req/s in all for 2s")
	assert.Equal(t, a, load(t, 7, 4, 40), "same seed, same requests at the same times")
	b := load(t, 8, 4, 40)
	require.Len(t, b, 80)
	assert.NotEqual(t, a, b, "another seed, another mix")

	methods := map[string]int{}
	for _, s := range a {
		methods[s.method]++
		assert.True(t, s.deadline, "every request has its deadline")
		if s.method == http.MethodPost {
			assert.True(t, s.hasBody)
		}
		if s.key != "" {
			assert.Equal(t, s.id, s.key, "the key is the logical id")
		}
		// 4 callers, 10 req/s each, spread over the 100ms interval.
		assert.Zero(t, s.at%(25*time.Millisecond), "on schedule: %v", s.at)
	}
	assert.Positive(t, methods[http.MethodGet])
	assert.Positive(t, methods[http.MethodPost])
}

func TestAgainstARealUpstreamURL(t *testing.T) {
	c := chaos.DefaultConfig(1)
	c.Timeline = chaos.Timeline{{Kind: chaos.Healthy, Duration: time.Hour}}
	up, err := chaos.New(c)
	require.NoError(t, err)
	require.NoError(t, up.Start())
	defer up.Close()

	jsonPath := filepath.Join(t.TempDir(), "f.json")
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"-url", up.URL() + "/", "-duration", "700ms",
		"-clients", "plain,httpx", "-rate", "50", "-callers", "2", "-quiet", "-json", jsonPath}, &stdout, &stderr, false)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "upstream: "+up.URL()+" (shared; counted on the client side)")
	assert.Contains(t, out, "timeline: run=700ms\n", "no phases of the built-in upstream")
	assert.Equal(t, []string{"phase", "reqs", "success", "p50", "p99", "max", "upstream", "ampl", "breaker", "conns"},
		strings.Fields(lineAfter(t, out, "plain: ")), "no column counted on the upstream's side")
	assert.Equal(t, []string{"client", "success", "p50", "p99", "ampl", "refused", "429", "p50", "429", "held", "conns", "cut"},
		// "summary", or on a busy machine "summary (INVALID RUN: ...)".
		strings.Fields(lineAfter(t, out, "summary")), "measured figures only")
	assert.Contains(t, out, "targets: none; they are stated for the built-in upstream's scenario")
	for _, builtIn := range []string{"outage", "brownout", "recovery", "early", "dup POST", "met ", "NOT MET"} {
		assert.NotContains(t, out, builtIn)
	}
	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var f Figures
	require.NoError(t, json.Unmarshal(raw, &f))
	assert.Empty(t, f.Targets, "no target with -url")
	for _, cl := range f.Clients {
		require.Len(t, cl.Phases, 1)
		assert.Equal(t, urlSpan, cl.Phases[0].Phase)
		assert.Equal(t, 35, cl.Total.Requests, "%s: 2 callers at 50 req/s for 700ms", cl.Name)
		assert.Equal(t, 35, cl.Total.Planned)
		assert.Nil(t, cl.Total.Server)
		assert.Nil(t, cl.AfterOpen)
		assert.Nil(t, cl.RecoveryLagMs)
	}
	s := up.Stats().Total
	assert.Equal(t, 2*35, s.Received, "two clients, 35 requests each, each sent once")
}

// lineAfter returns the line after the first line that starts with prefix.
func lineAfter(t *testing.T, out, prefix string) string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l+"\n", prefix) && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	require.Failf(t, "no such line", "%q in %s", prefix, out)
	return ""
}

func TestURLRefusesWhatCannotApply(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"outage", []string{"-outage", "503"}, "-outage applies to the built-in upstream only"},
		{"outage at its default", []string{"-outage", "refuse"}, "-outage applies to the built-in upstream only"},
		{"phases", []string{"-phases", "healthy=1s"}, "-phases is the built-in upstream's timeline; with -url there are no phases"},
		{"brownout", []string{"-brownout", "0.3"}, "-brownout applies to the built-in upstream only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), append([]string{"-url", "http://127.0.0.1:1"}, tt.args...), &stdout, &stderr, false)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr.String(), tt.want)
			assert.Empty(t, stdout.String())
		})
	}
}

// TestHTTP2AgainstAServerWithout: -http2 against a server that speaks only
// HTTP/1.1 says so before the run, instead of failing every request.
func TestHTTP2AgainstAServerWithout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var stdout, stderr strings.Builder
	start := time.Now()
	code := run(context.Background(), []string{"-url", srv.URL, "-http2", "-duration", "5s", "-quiet"}, &stdout, &stderr, false)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr.String(), "resilient-demo: -http2: "+srv.URL+" does not answer over HTTP/2")
	assert.Contains(t, stderr.String(), "run without -http2")
	assert.Empty(t, stdout.String(), "nothing ran")
	assert.Less(t, time.Since(start), 5*time.Second, "refused before the run")
}

// TestHTTP2AgainstAServerWith: an upstream that speaks h2c passes the
// probe, and the run speaks HTTP/2 to it.
func TestHTTP2AgainstAServerWith(t *testing.T) {
	c := chaos.DefaultConfig(1)
	c.Timeline = chaos.Timeline{{Kind: chaos.Healthy, Duration: time.Hour}}
	c.HTTP2 = true
	up, err := chaos.New(c)
	require.NoError(t, err)
	require.NoError(t, up.Start())
	defer up.Close()
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"-url", up.URL(), "-http2", "-duration", "300ms", "-clients", "plain",
		"-rate", "20", "-callers", "1", "-quiet"}, &stdout, &stderr, false)
	require.Equal(t, 0, code, stderr.String())
	assert.Contains(t, stdout.String(), "(shared; counted on the client side); HTTP/2\n")
	assert.Contains(t, stdout.String(), "client  success")
	assert.Contains(t, stdout.String(), "  plain  100.00%")
}

func TestProgressLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp := spans{{"healthy", time.Second}, {"outage", time.Second}}
		rec := newRecorder(time.Now())
		rec.record(call{OK: true})
		rec.record(call{})
		var b strings.Builder
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			progress(ctx, &b, true, sp, []string{"plain"}, []*recorder{rec}, newSchedProbe(), rec.start)
			close(done)
		}()
		time.Sleep(1100 * time.Millisecond)
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			require.Fail(t, "progress did not stop with its context")
		}
		out := b.String()
		assert.Contains(t, out, "  0.2s/2s  now: healthy    |  last 0.2s (healthy), requests ended, ok: plain 2  50%",
			"the phase now, then the last window's figures, labelled")
		assert.Contains(t, out, "  1.0s/2s  now: outage     |  last 0.2s (healthy), requests ended, ok: plain 0    -",
			"the window that just ended was in the healthy phase; nothing ended in it")
		assert.NotContains(t, out, "BEHIND")
		assert.True(t, strings.HasSuffix(out, "\r\033[K"), "the line is erased at the end")
	})
}

func TestProgressLineSpansPhasesAndWarns(t *testing.T) {
	sp := spans{{"healthy", time.Second}, {"outage", 2 * time.Second}}
	rec := newRecorder(time.Now())
	rec.record(call{OK: true, Sched: 100 * time.Millisecond, At: 180 * time.Millisecond})
	line := progressLine(sp, []string{"plain"}, []*recorder{rec}, newSchedProbe(), 0, 2*time.Second)
	assert.Equal(t, "  2.0s/3s  now: outage     |  last 2.0s (healthy→outage), requests ended, ok: plain 1 100%"+
		"  |  LAB BEHIND SCHEDULE by up to 80ms (tolerance 50ms)", line)
	line = progressLine(sp, []string{"plain"}, []*recorder{rec}, newSchedProbe(), 2*time.Second, 3*time.Second)
	assert.NotContains(t, line, "BEHIND", "the window's lag was taken")
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"-phases", "healthy=5s", "-clients", "plain", "-quiet"}, &stdout, &stderr, false)
	assert.Equal(t, 130, code)
	assert.Contains(t, stdout.String(), "interrupted: the figures cover the part that ran")
}

// TestHintFits: a 429 counts as held only when its Retry-After could not
// fit before the request's deadline; a hint that fits is waited out, and a
// client that ends that wait early (its breaker opened) holds nothing.
func TestHintFits(t *testing.T) {
	answered := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithDeadline(context.Background(), answered.Add(1500*time.Millisecond))
	defer cancel()
	for _, tc := range []struct {
		header string
		fits   bool
	}{
		{"1", true},
		{"2", false},
		{"", true},                      // no hint
		{"soon", true},                  // not a hint
		{"99999999999999999999", false}, // saturates
		{answered.Add(time.Second).Format(http.TimeFormat), true},
		{answered.Add(3 * time.Second).Format(http.TimeFormat), false},
	} {
		assert.Equal(t, tc.fits, hintFits(ctx, tc.header, answered), "Retry-After %q", tc.header)
	}
	assert.True(t, hintFits(context.Background(), "3600", answered), "no deadline: any hint fits")
}
