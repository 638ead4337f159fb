package httpx

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"leading zeros", "007", 7 * time.Second, true},
		{"surrounding space", " 5 ", 5 * time.Second, true},
		{"imf-fixdate", "Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"rfc 850", "Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true},
		{"ansi c", "Sun Mar  1 12:00:10 2026", 10 * time.Second, true},
		{"past date", "Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"far future date saturates", "Fri, 31 Dec 9999 23:59:59 GMT", time.Duration(1<<63 - 1), true},
		{"largest delta", "9223372036", 9223372036 * time.Second, true},
		{"overflow saturates", "9223372037", MaxRetryAfter, true},
		{"huge overflow saturates", "99999999999999999999999999", MaxRetryAfter, true},
		{"overflow with spaces saturates", " 9999999999999 ", MaxRetryAfter, true},
		{"negative", "-1", 0, false},
		{"plus sign", "+5", 0, false},
		{"fraction", "1.5", 0, false},
		{"hex", "0x10", 0, false},
		{"unit", "5s", 0, false},
		{"empty", "", 0, false},
		{"spaces", "   ", 0, false},
		{"garbage", "tomorrow", 0, false},
		{"bad date", "Sun, 32 Mar 2026 12:00:00 GMT", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := ParseRetryAfter(tc.value, now)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, d)
		})
	}
}

func TestRetryAfterHeader(t *testing.T) {
	assert.Zero(t, retryAfter(http.Header{}))
	assert.Equal(t, 3*time.Second, retryAfter(http.Header{"Retry-After": {"3"}}))
	assert.Zero(t, retryAfter(http.Header{"Retry-After": {"-3"}}))
	assert.Equal(t, MaxRetryAfter, retryAfter(http.Header{"Retry-After": {"9223372037"}}))
	d := retryAfter(http.Header{"Retry-After": {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}})
	assert.InDelta(t, float64(time.Hour), float64(d), float64(2*time.Second))
}

// FuzzParseRetryAfter checks that no value makes ParseRetryAfter panic or
// return a negative wait, and that accepted delta-seconds round-trip.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "9223372037", "9999999999999", "Sun, 01 Mar 2026 12:00:30 GMT",
		"Sunday, 01-Mar-26 12:01:00 GMT", "Sun Mar  1 12:00:10 2026", "", "1e3", " 7"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := ParseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("negative wait %v for %q", d, v)
		}
		if !ok && d != 0 {
			t.Fatalf("ignored value %q gave %v", v, d)
		}
		// Any delta-seconds is a hint, however long: one too long for a
		// Duration saturates rather than being ignored.
		if s := strings.TrimSpace(v); s != "" && isDigits(s) {
			if !ok {
				t.Fatalf("delta-seconds %q ignored", v)
			}
			if len(strings.TrimLeft(s, "0")) > 19 && d != MaxRetryAfter {
				t.Fatalf("overflowing %q gave %v, want MaxRetryAfter", v, d)
			}
		}
	})
}
