package resilient

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// brModel is the breaker's state machine written the plainest way: one
// goroutine, slices, no atomics. TestBreakerModel runs random operations on
// both and compares them after each one.
type brModel struct {
	// configuration
	window, minCalls, consecutive int
	openDur, maxWait              time.Duration
	probes, successes             int

	state     State
	gen       int
	ring      []bool // outcomes of the window, oldest first; true: failure
	recorded  int    // outcomes recorded in the window in all
	consec    int
	openUntil time.Time
	inflight  int
	succ      int
	armedAt   time.Time // zero: the max-wait clock is not running

	totalCalls, totalFails, totalRejects uint64
}

type brModelPermit struct {
	p     Permit
	gen   int
	probe bool
}

func (m *brModel) enter(s State, now time.Time) {
	if s == StateClosed || (s == StateDisabled && m.state != StateClosed && m.state != StateDisabled) {
		m.ring, m.consec, m.recorded = nil, 0, 0
	}
	m.state = s
	m.gen++
	m.inflight, m.succ, m.armedAt = 0, 0, time.Time{}
	if s == StateOpen {
		m.openUntil = now.Add(m.openDur)
	}
}

func (m *brModel) allow(now time.Time) (ok, probe bool) {
	switch m.state {
	case StateClosed, StateDisabled:
		return true, false
	case StateHalfOpen:
		if m.inflight >= m.probes {
			m.totalRejects++
			return false, false
		}
		if m.inflight == 0 && m.succ == 0 && m.armedAt.IsZero() {
			m.armedAt = now
		}
		m.inflight++
		return true, true
	}
	m.totalRejects++
	return false, false
}

func (m *brModel) done(p brModelPermit, o Outcome, now time.Time) {
	if o == Success || o == Fail {
		m.totalCalls++
		if o == Fail {
			m.totalFails++
		}
	}
	if p.gen != m.gen {
		return
	}
	if p.probe {
		if m.state != StateHalfOpen || m.inflight == 0 {
			return
		}
		switch o {
		case Success:
			m.inflight--
			m.succ++
			if m.succ >= m.successes {
				m.enter(StateClosed, now)
			}
		case Fail:
			m.enter(StateOpen, now)
		default:
			m.inflight--
			if m.inflight == 0 && m.succ == 0 { // as if the round never started
				m.armedAt = time.Time{}
			}
		}
		return
	}
	if o != Success && o != Fail {
		return
	}
	fail := o == Fail
	m.ring = append(m.ring, fail)
	m.recorded++
	if len(m.ring) > m.window {
		m.ring = m.ring[1:]
	}
	if fail {
		m.consec++
	} else {
		m.consec = 0
	}
	// A success opens it only when it brings the window to its minimum.
	if m.state != StateClosed || (!fail && m.recorded != m.minCalls) {
		return
	}
	_, fails := m.counts()
	if m.consec >= m.consecutive || (len(m.ring) >= m.minCalls && 2*fails >= len(m.ring)) {
		m.enter(StateOpen, now)
	}
}

func (m *brModel) counts() (calls, fails int) {
	for _, f := range m.ring {
		if f {
			fails++
		}
	}
	return len(m.ring), fails
}

// tick applies the timers due at now.
func (m *brModel) tick(now time.Time) {
	switch {
	case m.state == StateOpen && !now.Before(m.openUntil):
		m.enter(StateHalfOpen, now)
	case m.state == StateHalfOpen && !m.armedAt.IsZero() && !now.Before(m.armedAt.Add(m.maxWait)):
		m.enter(StateOpen, now)
	}
}

func TestBreakerModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runBreakerModel(t, seed) })
		})
	}
}

func runBreakerModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := &brModel{window: 8, minCalls: 4, consecutive: 5, openDur: 3 * time.Second,
		maxWait: 4 * time.Second, probes: 2, successes: 3}
	b, err := NewBreaker(WithCountWindow(m.window), WithMinCalls(m.minCalls), WithFailureRate(0.5), WithTotals(),
		WithConsecutiveFailures(m.consecutive), WithOpenDuration(m.openDur), WithHalfOpenMaxWait(m.maxWait),
		WithHalfOpenProbes(m.probes), WithHalfOpenSuccesses(m.successes))
	require.NoError(t, err)
	var held []brModelPermit
	var trace []string
	outcomes := []Outcome{Success, Success, Fail, Fail, Ignore}

	for i := range 400 {
		now := time.Now()
		var op string
		switch r := rng.IntN(100); {
		case r < 35: // a call that reports at once
			o := outcomes[rng.IntN(len(outcomes))]
			op = "call " + o.String()
			p, err := b.Allow()
			ok, probe := m.allow(now)
			require.Equal(t, ok, err == nil, "%s: admitted", op)
			if ok {
				b.Done(p, Report{Outcome: o})
				m.done(brModelPermit{p, m.gen, probe}, o, now)
			}
		case r < 50: // a call that reports later
			op = "hold"
			p, err := b.Allow()
			ok, probe := m.allow(now)
			require.Equal(t, ok, err == nil, "%s: admitted", op)
			if ok {
				held = append(held, brModelPermit{p, m.gen, probe})
			}
		case r < 68 && len(held) > 0: // a held call reports
			j := rng.IntN(len(held))
			hp := held[j]
			held = append(held[:j], held[j+1:]...)
			o := outcomes[rng.IntN(len(outcomes))]
			op = fmt.Sprintf("report %s (gen %d, probe %v)", o, hp.gen, hp.probe)
			b.Done(hp.p, Report{Outcome: o})
			m.done(hp, o, now)
		case r < 94: // time passes, a second at a time
			op = "sleep"
			for range rng.IntN(4) + 1 {
				time.Sleep(time.Second)
				synctest.Wait()
				m.tick(time.Now())
			}
		case r < 96:
			op = "force open"
			b.ForceOpen()
			m.enter(StateForcedOpen, now)
		case r < 98:
			op = "disable"
			b.Disable()
			m.enter(StateDisabled, now)
		default:
			op = "reset"
			b.Reset()
			m.enter(StateClosed, now)
		}
		trace = append(trace, op)

		got := b.Metrics()
		calls, fails := m.counts()
		want := BreakerMetrics{
			State: m.state, Calls: calls, Failures: fails, ConsecutiveFailures: m.consec,
			Since: got.Since, InState: got.InState,
			TotalCalls: m.totalCalls, TotalFailures: m.totalFails, TotalRejections: m.totalRejects,
		}
		if calls > 0 {
			want.FailureRate = float64(fails) / float64(calls)
		}
		if m.state == StateHalfOpen {
			want.Probes, want.ProbeSuccesses = m.inflight, m.succ
		}
		require.Equal(t, want, got, "step %d, after %v", i, trace[max(0, len(trace)-12):])
	}
	b.Reset()
}
