package httpx

import (
	"fmt"
	"net/http"
)

// validate returns an error matching [ErrInvalidRequest] for a request that
// cannot be sent, checked as net/http's Transport checks it before sending
// anything, so that such a request is refused once, here, rather than
// failing every attempt of the call: a nil URL or Header; and, for http and
// https, a URL without a host, an invalid method, or a header or trailer
// with an invalid name or value. The Host override is not checked:
// net/http sends an invalid one as an empty Host (see go.dev/issue/61431),
// and a custom dialer may need it.
func validate(req *http.Request) error {
	switch {
	case req.URL == nil:
		return fmt.Errorf("%w: nil URL", ErrInvalidRequest)
	case req.Header == nil:
		return fmt.Errorf("%w: nil Header", ErrInvalidRequest)
	}
	if s := req.URL.Scheme; s != "http" && s != "https" {
		return nil // sent once, to the base, which decides (see plan)
	}
	if req.URL.Host == "" {
		return fmt.Errorf("%w: no host in URL", ErrInvalidRequest)
	}
	if req.Method != "" && !isToken(req.Method) {
		return fmt.Errorf("%w: method %q", ErrInvalidRequest, req.Method)
	}
	if err := validHeader("header", req.Header); err != nil {
		return err
	}
	return validHeader("trailer", req.Trailer)
}

func validHeader(what string, h http.Header) error {
	for name, values := range h {
		if !isToken(name) {
			return fmt.Errorf("%w: %s field name %q", ErrInvalidRequest, what, name)
		}
		for _, v := range values {
			if !validFieldValue(v) {
				// The value is not quoted: it may be a secret.
				return fmt.Errorf("%w: %s field value for %q", ErrInvalidRequest, what, name)
			}
		}
	}
	return nil
}

// isToken reports whether s is a token (RFC 9110, section 5.6.2): what a
// method and a field name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v may be sent as a field value: no
// control character but horizontal tab (CR, LF and NUL above all), the rule
// net/http applies.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// tchar is the set of token characters: "!#$%&'*+-.^_`|~", digits and
// letters.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
