package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsServesTheLibraryClients scrapes -metrics after calls through
// both library clients: their calls, attempts and breaker state are there,
// under the clients' names. (TestMetricsKeepTheDefaults shows the hooks
// change nothing of what the clients send.)
func TestMetricsServesTheLibraryClients(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer upstream.Close()

	cfg := &config{metricsAddr: "127.0.0.1:0", budget: budgetAdaptive, limit: limitNone}
	stop, addr, err := serveMetrics(cfg)
	require.NoError(t, err)
	defer stop()

	base := upstream.Client().Transport
	rec := newRecorder(time.Now())
	for _, build := range []func(*config, http.RoundTripper, *recorder) (doFunc, error){httpxDefaults, tuned} {
		do, err := build(cfg, base, rec)
		require.NoError(t, err)
		for _, fail := range []bool{false, false, true} {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, upstream.URL, nil)
			require.NoError(t, err)
			if fail {
				req.Header.Set("X-Fail", "1")
			}
			resp, err := do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)
	assert.Equal(t, "text/plain; version=0.0.4; charset=utf-8", resp.Header.Get("Content-Type"))
	for _, want := range []string{
		`resilient_calls_total{executor="httpx",reason="success"} 2`,
		`resilient_calls_total{executor="tuned",reason="success"} 2`,
		`resilient_calls_total{executor="tuned",reason="exhausted"} 1`,
		// Recommended's breakers are per host, named "tuned/<host>".
		`resilient_breaker_state{breaker="tuned/` + strings.TrimPrefix(upstream.URL, "http://") + `",state="closed"} 1`,
	} {
		assert.Contains(t, text, want)
	}
	assert.True(t, strings.Contains(text, `resilient_retries_total{executor="httpx"`), "retries of the 503 are counted")
}

func TestMetricsFlagRejectsABadAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-metrics", ln.Addr().String(), "-quiet"}, &stdout, &stderr, false)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr.String(), "resilient-demo: -metrics:")
}
