package httpx

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// DefaultMaxRetryAfter is the longest Retry-After the default policy
// honours: a response that asks for a longer wait ends the call at once
// with that response, rather than sleeping for it or retrying sooner than
// the server asked. It is the default policy's [resilient.WithMaxDelay],
// kept by [WithExecutorOptions] unless they set another; with your own
// executor ([WithExecutor]) the cap is that executor's
// resilient.WithMaxDelay (whose own default is [resilient.DefaultMaxDelay]).
const DefaultMaxRetryAfter = 30 * time.Second

// ParseRetryAfter parses the value of a Retry-After header (RFC 9110,
// section 10.2.3) into the wait it asks for, counted from now. Both forms
// are accepted: delta-seconds ("120") and an HTTP-date in any of the three
// forms of [http.ParseTime] ("Wed, 21 Oct 2015 07:28:00 GMT" and the
// obsolete RFC 850 and ANSI C forms). A date at or before now is a wait of
// 0, which is valid.
//
// A wait too long for a [time.Duration] (delta-seconds beyond about 292
// years, such as "9999999999999", or a date as far ahead) saturates: it is
// reported as [MaxRetryAfter] with ok true. Such a hint is longer than any
// cap, so a call that gets it ends at once with its response, as it does
// for any hint beyond the cap.
//
// ok is false, and the header is to be ignored, for an empty value and for
// anything that is neither form (garbage, a sign, a fraction, a negative
// number): such a header gives no hint, so the backoff alone decides the
// next wait. A bad header never causes an immediate burst of retries.
func ParseRetryAfter(value string, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		// Decision (RFC 9111, section 1.2.2): a delta-seconds too large to
		// hold saturates to the largest value, never wraps around and is
		// never dropped: the server asked for a very long pause.
		var secs int64
		for i := 0; i < len(v); i++ {
			digit := int64(v[i] - '0')
			if secs > (maxDeltaSeconds-digit)/10 {
				return MaxRetryAfter, true
			}
			secs = secs*10 + digit
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	// Sub saturates instead of overflowing: a date in the year 9999 is
	// MaxRetryAfter, which every cap refuses.
	return max(t.Sub(now), 0), true
}

// MaxRetryAfter is the wait [ParseRetryAfter] reports for a Retry-After too
// long for a [time.Duration]: the largest one, about 292 years.
const MaxRetryAfter = time.Duration(math.MaxInt64)

// maxDeltaSeconds is the largest delta-seconds a time.Duration can hold.
const maxDeltaSeconds = math.MaxInt64 / int64(time.Second)

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// retryAfter returns the response's Retry-After hint, or 0 without one. It
// reads the clock only for the HTTP-date form.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		for k, vv := range h {
			if len(vv) > 0 && strings.EqualFold(k, "Retry-After") {
				v = vv[0]
				break
			}
		}
	}
	if v == "" {
		return 0
	}
	var now time.Time
	if !isDigits(strings.TrimSpace(v)) {
		now = time.Now()
	}
	d, _ := ParseRetryAfter(v, now)
	return d
}
