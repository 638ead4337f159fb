package main

import (
	"context"
	"io"
	"net/http"
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
		cfg := &config{callers: callers, rate: rate, timeout: time.Second, seed: seed, posts: 0.38, unkeyed: 0.02,
			timeline: chaos.Timeline{{Kind: chaos.Healthy, Duration: 2 * time.Second}}}
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

	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"-url", up.URL() + "/", "-phases", "healthy=400ms,outage=300ms",
		"-clients", "plain,httpx", "-rate", "50", "-callers", "2", "-quiet"}, &stdout, &stderr, false)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.Contains(t, out, "upstream: "+up.URL()+" (shared; counted on the client side)")
	assert.Contains(t, out, "ampl  breaker\n", "no column counted on the upstream's side")
	assert.Contains(t, out, "429 held  conns  cut\n", "no column counted on the upstream's side")
	// The phases are only labels here: the real upstream stayed healthy.
	s := up.Stats().Total
	assert.Equal(t, 2*35, s.Received, "two clients, 35 requests each, each sent once")
}

func TestProgressLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &config{timeline: chaos.Timeline{{Kind: chaos.Healthy, Duration: time.Second}, {Kind: chaos.Outage, Duration: time.Second}}}
		rec := newRecorder(time.Now())
		rec.record(call{OK: true})
		rec.record(call{})
		var b strings.Builder
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			progress(ctx, &b, true, cfg, []string{"plain"}, []*recorder{rec}, rec.start)
			close(done)
		}()
		time.Sleep(1100 * time.Millisecond)
		cancel()
		<-done
		out := b.String()
		assert.Contains(t, out, "healthy      0.2s/2s | plain 2 req   50%")
		assert.Contains(t, out, "outage       1.0s/2s | plain 2 req     -", "no request in the last period")
		assert.True(t, strings.HasSuffix(out, "\r\033[K"), "the line is erased at the end")
	})
}

func TestInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"-phases", "healthy=5s", "-clients", "plain", "-quiet"}, &stdout, &stderr, false)
	assert.Equal(t, 130, code)
	assert.Contains(t, stdout.String(), "interrupted: the figures cover the part that ran")
}
