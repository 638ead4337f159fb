package httpx

import (
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

// TestComposition puts every part together, as a real client would:
// hedging, per-host breakers, deduplication, a retry budget and hooks, with
// credentials under non-canonical header names, tracing headers that differ
// on every request, and first attempts that answer late, after their hedge
// won, with a body that stalls. Each part holds as it does alone: callers
// share only with callers of the same credentials, nobody gets another's
// response, the healthy host's breaker counts no failure, no late body
// holds a call for more than DrainTimeout, every body is closed once, and
// no goroutine or timer is left (the bubble would not end otherwise).
func TestComposition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := resilient.MustNewBreakers(8, time.Hour,
			resilient.WithFailureRate(0.5), resilient.WithCountWindow(4), resilient.WithMinCalls(2))
		budget := resilient.MustNewBudget()
		metrics := resilient.NewTextMetrics()
		var mu sync.Mutex
		outcomes := map[resilient.Outcome]int{}
		var late []*stallBody
		var bodies []*countingBody
		attempts := map[string]int{}
		base := rtFunc(func(req *http.Request) (*http.Response, error) {
			who := ""
			for k, vv := range req.Header {
				if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "X-Api-Key") {
					who += k + "=" + strings.Join(vv, ",") + ";"
				}
			}
			mu.Lock()
			attempts[who]++
			n := attempts[who]
			mu.Unlock()
			if n == 1 {
				// Slow, and deaf to its context: it answers after its
				// hedge won, with a body that then stalls.
				time.Sleep(300 * time.Millisecond)
				b := newStallBody("late for " + who)
				mu.Lock()
				late = append(late, b)
				mu.Unlock()
				r := respond(200, "")
				r.Body, r.Request = b, req
				return r, nil
			}
			time.Sleep(50 * time.Millisecond)
			r := respond(200, "for "+who)
			r.Request = req
			mu.Lock()
			bodies = append(bodies, r.Body.(*countingBody))
			mu.Unlock()
			return r, nil
		})
		ex := resilient.MustNew(resilient.WithName("api"),
			resilient.WithHedge(100*time.Millisecond, 2),
			resilient.WithBudget(budget),
			resilient.WithHooks(metrics.Hooks()),
			resilient.WithHooks(resilient.Hooks{OnAttempt: func(e resilient.AttemptEvent) {
				mu.Lock()
				outcomes[e.Outcome]++
				mu.Unlock()
			}}))
		tr := newTransport(t, base, WithExecutor(ex), WithHostBreakers(set), WithDedup(nil))

		users := map[string]func(http.Header){
			"alice": func(h http.Header) { h["authorization"] = []string{"Bearer alice"} },
			"bob":   func(h http.Header) { h["AUTHORIZATION"] = []string{"Bearer bob"} },
			"carol": func(h http.Header) { h["x-api-key"] = []string{"carol"} },
			"dave":  func(h http.Header) { h.Set("X-Api-Key", "dave") },
		}
		const perUser = 5
		got := map[string][]string{}
		var wg sync.WaitGroup
		start := time.Now()
		for name, set := range users {
			for i := range perUser {
				req := get(t, t.Context(), "http://api.test/me")
				set(req.Header)
				req.Header["traceparent"] = []string{"00-" + name + strconv.Itoa(i)}
				wg.Go(func() {
					resp, err := tr.RoundTrip(req)
					if !assert.NoError(t, err) {
						return
					}
					body := readAll(t, resp.Body)
					assert.NoError(t, resp.Body.Close())
					mu.Lock()
					got[name] = append(got[name], body)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		assert.Equal(t, 300*time.Millisecond+DrainTimeout, time.Since(start),
			"the winners answered at 150ms; the late losers are waited for (they ignore their context), their stalled bodies for DrainTimeout only")

		for name := range users {
			require.Len(t, got[name], perUser, name)
			for _, b := range got[name] {
				assert.Contains(t, strings.ToLower(b), name, "%s gets its own response", name)
				for other := range users {
					if other != name {
						assert.NotContains(t, strings.ToLower(b), other, "%s never gets %s's response", name, other)
					}
				}
			}
		}
		assert.Len(t, attempts, len(users), "one shared execution per user")
		for who, n := range attempts {
			assert.Equal(t, 2, n, "%s: the first attempt and its hedge", who)
		}
		br := set.Get("api.test")
		assert.Equal(t, resilient.StateClosed, br.State())
		assert.Zero(t, br.Metrics().Failures, "a healthy host: no loser counted as a failure")
		assert.Zero(t, outcomes[resilient.Retry]+outcomes[resilient.Fail], "hooks saw no failed attempt")
		for i, b := range late {
			assert.EqualValues(t, 1, b.closes.Load(), "late body %d closed once", i)
		}
		for i, b := range bodies {
			assert.EqualValues(t, 1, b.closes.Load(), "body %d closed once", i)
		}
		var out strings.Builder
		_, err := metrics.WriteTo(&out)
		require.NoError(t, err)
		assert.NotContains(t, out.String(), "resilient_rejections_total{", "nothing was refused")
	})
}
