package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func schedule(c Config, draws int) []Decision {
	var out []Decision
	for phase := range c.Timeline {
		for i := range draws {
			out = append(out, c.Decide(phase, fmt.Sprintf("c%d-%d", i%7, i), 1+i%3))
		}
	}
	return out
}

func TestDecideIsFixedBySeed(t *testing.T) {
	a, b := DefaultConfig(42), DefaultConfig(42)
	require.Equal(t, schedule(a, 2000), schedule(b, 2000), "same seed, same schedule")
	assert.NotEqual(t, schedule(a, 2000), schedule(DefaultConfig(43), 2000), "another seed, another schedule")

	// The order of the calls does not matter: a decision depends on its
	// arguments only.
	first := a.Decide(1, "x", 2)
	for i := range 100 {
		a.Decide(1, fmt.Sprint(i), 1)
	}
	assert.Equal(t, first, a.Decide(1, "x", 2))
}

func TestDecideFollowsProfiles(t *testing.T) {
	c := DefaultConfig(7)
	const draws = 40000
	tests := []struct {
		name  string
		phase int
		want  map[Fault]float64
	}{
		{"healthy serves everything", 0, map[Fault]float64{None: 1}},
		{"brownout", 1, map[Fault]float64{Unavailable: 0.08, Spike: 0.08, SlowHeaders: 0.01, Reset: 0.001, None: 0.829}},
		{"throttling", 2, map[Fault]float64{Throttled: 0.40, None: 0.60}},
		{"outage is down", 3, map[Fault]float64{Down: 1}},
		{"recovery serves everything", 4, map[Fault]float64{None: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[Fault]int{}
			forms := map[bool]int{}
			hints := map[time.Duration]int{}
			for i := range draws {
				d := c.Decide(tt.phase, fmt.Sprintf("id-%d", i), 1)
				got[d.Fault]++
				switch d.Fault {
				case Throttled:
					forms[d.HTTPDate]++
					hints[d.RetryAfter]++
				case Spike:
					assert.True(t, d.Delay >= c.SpikeMin && d.Delay <= c.SpikeMax, "spike %v", d.Delay)
				case SlowHeaders:
					assert.Equal(t, c.SlowHeaders, d.Delay)
				default:
					assert.Zero(t, d.Delay)
				}
			}
			for f, share := range tt.want {
				assert.InDelta(t, share, float64(got[f])/draws, 0.01, "%s", f)
			}
			if tt.want[Throttled] > 0 {
				assert.InDelta(t, 0.5, float64(forms[true])/float64(got[Throttled]), 0.03, "share of HTTP-date hints")
				assert.Len(t, hints, len(c.RetryAfter), "every hint is used")
			}
		})
	}
}

func TestDecideRetriesDrawAgain(t *testing.T) {
	// A retry (the next arrival of an id) gets its own draw, so a 503 is
	// not forever.
	c := DefaultConfig(1)
	c.Profiles[Brownout] = Profile{Unavailable: 0.5}
	changed := 0
	for i := range 1000 {
		id := fmt.Sprint(i)
		if c.Decide(1, id, 1).Fault != c.Decide(1, id, 2).Fault {
			changed++
		}
	}
	assert.InDelta(t, 500, changed, 80)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"default is valid", func(*Config) {}, ""},
		{"no phases", func(c *Config) { c.Timeline = nil }, "chaos: timeline has no phases"},
		{"zero duration", func(c *Config) { c.Timeline[0].Duration = 0 }, "chaos: phase 0 (healthy): duration must be > 0, got 0s"},
		{"share above 1", func(c *Config) { c.Profiles[Brownout].Unavailable = 1.5 }, "chaos: Profiles[brownout]: shares must be in [0, 1], got 1.5"},
		{"shares above 1 in all", func(c *Config) { c.Profiles[Healthy] = Profile{Unavailable: 0.6, Spike: 0.6} }, "chaos: Profiles[healthy]: shares add up to 1.2, more than 1"},
		{"negative latency", func(c *Config) { c.Latency = -1 }, "chaos: Latency must be >= 0, got -1ns"},
		{"spike max below min", func(c *Config) { c.SpikeMax = c.SpikeMin - 1 }, "chaos: SpikeMin, SpikeMax must satisfy 0 <= min <= max, got 150ms, 149.999999ms"},
		{"hint below a second", func(c *Config) { c.RetryAfter = []time.Duration{time.Millisecond} }, "chaos: RetryAfter hints must be >= 1s, got 1ms"},
		{"no hints", func(c *Config) { c.RetryAfter = nil }, "chaos: RetryAfter must list at least one hint when a phase throttles"},
		{"date share", func(c *Config) { c.DateShare = 2 }, "chaos: DateShare must be in [0, 1], got 2"},
		{"body", func(c *Config) { c.BodySize = 1 }, "chaos: BodySize must be >= 2, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(1)
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			_, err = New(c)
			assert.Error(t, err, "New refuses it too")
		})
	}
}

func TestTimeline(t *testing.T) {
	tl, err := ParseTimeline("healthy=1s, brownout=2s,throttle=1s,outage=3s,recovery=500ms")
	require.NoError(t, err)
	assert.Equal(t, "healthy=1s,brownout=2s,throttling=1s,outage=3s,recovery=500ms", tl.String())
	assert.Equal(t, 7500*time.Millisecond, tl.Total())
	back, err := ParseTimeline(tl.String())
	require.NoError(t, err)
	assert.Equal(t, tl, back)

	for _, c := range []struct {
		at   time.Duration
		want int
	}{{-time.Second, 0}, {0, 0}, {999 * time.Millisecond, 0}, {time.Second, 1}, {3 * time.Second, 2}, {4 * time.Second, 3}, {7 * time.Second, 4}, {time.Hour, 4}} {
		assert.Equal(t, c.want, tl.Index(c.at), "at %v", c.at)
	}
	assert.Equal(t, 4*time.Second, tl.Start(3))

	half := tl.Scale(tl.Total() / 2)
	assert.Equal(t, "healthy=500ms,brownout=1s,throttling=500ms,outage=1.5s,recovery=250ms", half.String())
	assert.Equal(t, tl, tl.Scale(0), "a total <= 0 leaves it as is")

	for name, bad := range map[string]string{
		"empty":        "",
		"unknown kind": "sunny=1s",
		"no duration":  "healthy",
		"bad duration": "healthy=soon",
		"negative":     "outage=-1s",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseTimeline(bad)
			assert.ErrorContains(t, err, "chaos: ")
		})
	}
}
