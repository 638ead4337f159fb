package resilient

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBackoffDelay(t *testing.T) {
	ms := time.Millisecond
	exp := Exponential(100*ms, 5*time.Second)
	cases := []struct {
		name  string
		b     Backoff
		retry int
		want  time.Duration
	}{
		{"constant", Constant(250 * ms), 7, 250 * ms},
		{"constant zero", Constant(0), 3, 0},
		{"zero value is constant zero", Backoff{}, 3, 0},
		{"first", exp, 1, 100 * ms},
		{"below one is first", exp, -5, 100 * ms},
		{"second", exp, 2, 200 * ms},
		{"sixth", exp, 6, 3200 * ms},
		{"capped", exp, 7, 5 * time.Second},
		{"huge", exp, 10_000, 5 * time.Second},
		{"max int", exp, math.MaxInt, 5 * time.Second},
		{"overflowing base", Exponential(time.Duration(math.MaxInt64/2), time.Duration(math.MaxInt64)), 3, time.Duration(math.MaxInt64)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.b.Delay(tc.retry))
		})
	}
}

func TestJitter(t *testing.T) {
	s := time.Second
	b := Exponential(s, 10*s)
	cases := []struct {
		name  string
		j     Jitter
		retry int
		prev  time.Duration
		u     float64
		want  time.Duration
	}{
		{"none", NoJitter, 2, 0, 0.9, 2 * s},
		{"full low", FullJitter, 2, 0, 0, 0},
		{"full mid", FullJitter, 2, 0, 0.5, s},
		{"equal low", EqualJitter, 2, 0, 0, s},
		{"equal mid", EqualJitter, 2, 0, 0.5, 1500 * time.Millisecond},
		{"decorrelated first", DecorrelatedJitter, 1, 0, 0.5, 2 * s},
		{"decorrelated grows from prev", DecorrelatedJitter, 2, 2 * s, 0.5, 3500 * time.Millisecond},
		{"decorrelated capped", DecorrelatedJitter, 9, 9 * s, 0.99, 10 * s},
		{"proportional low", ProportionalJitter(0.2), 2, 0, 0, 1600 * time.Millisecond},
		{"proportional high", ProportionalJitter(0.2), 2, 0, 0.75, 2200 * time.Millisecond},
		{"proportional capped", ProportionalJitter(1), 9, 0, 0.99, 10 * s},
		{"bad random is zero", FullJitter, 2, 0, math.NaN(), 0},
		{"random of one is zero", FullJitter, 2, 0, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, next(b, tc.j, tc.retry, tc.prev, tc.u))
		})
	}
}

func TestJitterString(t *testing.T) {
	assert.Equal(t, "full", FullJitter.String())
	assert.Equal(t, "proportional(0.2)", ProportionalJitter(0.2).String())
	assert.Equal(t, "exponential(100ms..5s)", DefaultBackoff.String())
	assert.Equal(t, "constant(0s)", Constant(0).String())
}

// FuzzNext pins the schedule's invariants: a wait is never negative and
// never above the cap, for every attempt number, previous wait and random
// draw. Its seed corpus is in testdata/fuzz/FuzzNext.
func FuzzNext(f *testing.F) {
	f.Add(int64(time.Millisecond), int64(time.Second), uint8(1), 0.5, 1, int64(0), 0.5)
	f.Add(int64(1), int64(math.MaxInt64), uint8(3), 0.999, math.MaxInt, int64(math.MaxInt64), 1.0)
	f.Fuzz(func(t *testing.T, base, cap int64, kind uint8, u float64, retry int, prev int64, frac float64) {
		var b Backoff
		if kind%2 == 0 {
			b = Constant(time.Duration(base))
		} else {
			b = Exponential(time.Duration(base), time.Duration(cap))
		}
		if b.err != nil {
			return
		}
		j := []Jitter{NoJitter, FullJitter, EqualJitter, DecorrelatedJitter, ProportionalJitter(frac)}[int(kind/2)%5]
		if j.validate() != nil {
			return
		}
		d := next(b, j, retry, time.Duration(prev), u)
		if d < 0 || d > b.max {
			t.Fatalf("next(%v, %v, retry %d, prev %d, u %v) = %v, outside [0, %v]", b, j, retry, prev, u, d, b.max)
		}
		if j == NoJitter && d != b.Delay(retry) {
			t.Fatalf("no jitter changed the delay: %v != %v", d, b.Delay(retry))
		}
	})
}
