package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/resilient-go/resilient/chaos"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memory carries requests to an upstream's handler in memory, as loopback
// would: refused connections during a refusing outage, a reset before the
// headers or in the middle of the body, a request cancelled while the
// upstream takes its time. Inside a synctest bubble, everything runs on
// fake time.
type memory struct{ up *chaos.Upstream }

func (m memory) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if _, p := m.up.Phase(); p.Kind == chaos.Outage && m.up.Config().Outage == chaos.Refuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	aborted := func() (aborted bool) {
		defer func() {
			if r := recover(); r != nil {
				if r != http.ErrAbortHandler {
					panic(r)
				}
				aborted = true
			}
		}()
		m.up.ServeHTTP(rec, sreq)
		return false
	}()
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	if aborted {
		if !rec.Flushed {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(rec.Body.Bytes()), errReader{io.ErrUnexpectedEOF}))
	}
	return resp, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestDefaultScenarioInMemory runs the demo's default scenario, whole, in
// memory and on fake time: the figures do not depend on the machine's load,
// so the targets are checked exactly.
func TestDefaultScenarioInMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := parseFlags(nil, io.Discard)
		require.NoError(t, err)
		cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
		f, err := scenario(context.Background(), cfg, nil, false)
		require.NoError(t, err)

		plain, naive, httpx, tuned := client(t, f, "plain"), client(t, f, "naive"), client(t, f, "httpx"), client(t, f, "tuned")
		for _, c := range f.Clients {
			assert.Equal(t, 23*100, c.Total.Requests, "%s: every client gets the same load", c.Name)
			assert.Equal(t, 1.0, phase(t, c, "healthy").Success, c.Name)
			if c.Name != "tuned" { // its breaker is still open as the recovery begins
				assert.Equal(t, 1.0, phase(t, c, "recovery").Success, c.Name)
			}
		}
		t.Logf("brownout success: plain %.4f naive %.4f httpx %.4f tuned %.4f", phase(t, plain, "brownout").Success,
			phase(t, naive, "brownout").Success, phase(t, httpx, "brownout").Success, phase(t, tuned, "brownout").Success)

		for _, lib := range []ClientFigures{httpx, tuned} {
			b := phase(t, lib, "brownout")
			assert.Equal(t, b.RetrySafe, b.RetrySafeOK, "%s: every request safe to retry succeeds in the brownout", lib.Name)
			// Only POSTs without a key fail: a 503 to one of them may not
			// be retried. The target holds for all requests all the same.
			assert.GreaterOrEqual(t, b.Success, 0.995, lib.Name)
			assert.Zero(t, lib.Total.Server.Duplicates, lib.Name)
			assert.Zero(t, lib.Total.Server.EarlyRetries, lib.Name)
			assert.Zero(t, lib.MaxHeldMs, "%s: a hint that cannot fit returns the 429 at once", lib.Name)
			assert.Greater(t, phase(t, lib, "throttling").Success, phase(t, naive, "throttling").Success, lib.Name)
		}
		assert.Positive(t, naive.Total.Server.EarlyRetries)

		// Requests cancelled on the wire each close an HTTP/1.1
		// connection. plain's deadline outlasts the slow headers; httpx
		// has no timer of its own, only the caller's deadline, which a
		// retry that meets slow headers can still run into; tuned cancels
		// only the stuck requests it hedged, never one that is merely slow
		// (a latency spike).
		assert.Zero(t, plain.Cut)
		assert.LessOrEqual(t, httpx.Cut, 3)
		assert.Positive(t, tuned.Cut, "the stuck requests are hedged")
		assert.LessOrEqual(t, tuned.Cut, tuned.Total.Requests/100, "at most one request in 100 cut")
		assert.Positive(t, naive.Cut, "the naive loop's 1s timeout cuts the slow headers")

		assert.Greater(t, naive.OutageAmplification, 3.5)
		require.NotNil(t, tuned.AfterOpen)
		assert.LessOrEqual(t, tuned.AfterOpen.Amplification, 0.1)
		assert.Zero(t, tuned.Rejected.P50Ms, "a refusal takes no (fake) time")
		require.NotNil(t, tuned.RecoveryLagMs)
		assert.LessOrEqual(t, *tuned.RecoveryLagMs, 1000.0, "recovery noticed within one open duration")
		t.Logf("tuned: after open %.3f, recovery %.0fms, transitions %d", tuned.AfterOpen.Amplification, *tuned.RecoveryLagMs, len(tuned.Transitions))

		// On fake time the lab never falls behind: the run is valid, every
		// request started on schedule and as planned, and every target a
		// user sees is met.
		assert.True(t, f.Fidelity.Valid, "%v", f.Fidelity.Problems)
		assert.GreaterOrEqual(t, f.Fidelity.Scheduler.Samples, 23*100-1, "a probe every 10ms")
		assert.Zero(t, f.Fidelity.Scheduler.MaxMs)
		for _, c := range f.Clients {
			assert.Zero(t, c.Lag.MaxMs, c.Name)
			for _, p := range c.Phases {
				assert.Equal(t, p.Planned, p.Requests, "%s %s", c.Name, p.Phase)
			}
		}
		require.Len(t, f.Targets, 2*len(targetIDs), "every target, for httpx and tuned")
		for _, tg := range f.Targets {
			assert.Contains(t, []string{statusMet, statusNA}, tg.Status, "%s %s: %s %s", tg.Client, tg.ID, tg.Figure, tg.Note)
			if tg.Client == "tuned" {
				assert.Equal(t, statusMet, tg.Status, "%s %s", tg.Client, tg.ID)
			}
		}
	})
}

// TestSameSeedSameFigures runs the clients that draw no random numbers of
// their own twice with one seed, and once with another: on fake time, the
// whole report is a function of the seed.
func TestSameSeedSameFigures(t *testing.T) {
	figures := func(seed string) *Figures {
		var f *Figures
		synctest.Test(t, func(t *testing.T) {
			cfg, err := parseFlags([]string{"-clients", "plain,naive", "-seed", seed, "-duration", "8s"}, io.Discard)
			require.NoError(t, err)
			cfg.network = func(up *chaos.Upstream) http.RoundTripper { return memory{up} }
			f, err = scenario(context.Background(), cfg, nil, false)
			require.NoError(t, err)
		})
		return f
	}
	a := figures("3")
	assert.Equal(t, a, figures("3"))
	b := figures("4")
	assert.NotEqual(t, a.Clients[0].Total.Outcomes, b.Clients[0].Total.Outcomes)
}
