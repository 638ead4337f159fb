package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/resilient-go/resilient"
)

// Errors of the package. Each is matched with [errors.Is].
var (
	// ErrNilResponse is the error of an attempt whose base RoundTripper
	// returned neither a response nor an error, which breaks the
	// RoundTripper contract. It is permanent: such a transport is broken,
	// not flaky.
	ErrNilResponse = errors.New("resilient/httpx: base RoundTripper returned a nil response and a nil error")

	// ErrInvalidRequest is returned, without sending anything and without
	// retrying, for a request that cannot be sent: nil, without a URL or
	// a Header, or, for http and https, without a host in its URL, with an
	// invalid method, or with a header or trailer whose name or value is
	// invalid (a name that is not a token; a value with CR, LF, NUL or
	// another control character but tab), as net/http's Transport would
	// refuse it.
	ErrInvalidRequest = errors.New("resilient/httpx: invalid request")

	// ErrNilTransport is returned by the RoundTrip of a nil *Transport
	// (such as an http.Client whose Transport field holds one), which
	// sends nothing.
	ErrNilTransport = errors.New("resilient/httpx: nil *Transport")

	// ErrTooManyRedirects is returned by clients made with [NewClient] when
	// a request was redirected more than [MaxRedirects] times. It is
	// permanent for [ClassifyError].
	ErrTooManyRedirects = errors.New("resilient/httpx: too many redirects")
)

// StatusError is the error an attempt ends with when its response has a
// status that is not a success, such as 503. The Transport never returns it
// to the caller (the caller gets the response itself); hooks, classifiers
// and policies of the executor see it, with the response's Retry-After
// hint attached (see [resilient.RetryAfter]).
type StatusError struct {
	// Code is the response's status code, such as 503.
	Code int
	// Status is the response's status line, such as "503 Service Unavailable".
	Status string
}

// Error reads "resilient/httpx: status 503 Service Unavailable".
func (e *StatusError) Error() string {
	if e.Status != "" {
		return "resilient/httpx: status " + e.Status
	}
	return fmt.Sprintf("resilient/httpx: status %d", e.Code)
}

// RetryableStatus reports whether a response with this status code is
// retried by default: 408 Request Timeout, 429 Too Many Requests, 500
// Internal Server Error, 502 Bad Gateway, 503 Service Unavailable and 504
// Gateway Timeout. Every other code, valid or not, is false.
func RetryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// StatusOutcome is the default classification of a response by its status
// code:
//
//   - [resilient.Retry] for the codes of [RetryableStatus];
//   - [resilient.Fail] for every other 5xx (501 Not Implemented and 505
//     HTTP Version Not Supported included: retrying cannot help, and the
//     failure counts against the upstream) and for codes outside 100-599;
//   - [resilient.Success] for 1xx, 2xx, 3xx and every other 4xx: the
//     upstream is healthy and answered; the response is returned as it is.
//
// It never panics, whatever the code.
func StatusOutcome(code int) resilient.Outcome {
	switch {
	case RetryableStatus(code):
		return resilient.Retry
	case code >= 100 && code < 500:
		return resilient.Success
	}
	return resilient.Fail
}

// IdempotentMethod reports whether method is idempotent by RFC 9110
// (section 9.2.2): GET, HEAD, OPTIONS, TRACE, PUT and DELETE. The empty
// method, which net/http sends as GET, is idempotent too. POST, PATCH,
// CONNECT and unknown methods are not. The match is case-sensitive, as
// method names are.
func IdempotentMethod(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Idempotency key headers. A request that carries a non-empty value in
// either is retried whatever its method: the server deduplicates it.
const (
	IdempotencyKeyHeader  = "Idempotency-Key"
	XIdempotencyKeyHeader = "X-Idempotency-Key"
)

// HasIdempotencyKey reports whether h carries a non-empty
// [IdempotencyKeyHeader] or [XIdempotencyKeyHeader], whatever the case of
// its name: a key set directly in the map, such as h["idempotency-key"],
// is sent as written and counts too. A header whose value is empty under
// any spelling of its name does not count, since a server may read that
// one.
func HasIdempotencyKey(h http.Header) bool {
	return hasValue(h, IdempotencyKeyHeader) || hasValue(h, XIdempotencyKeyHeader)
}

// hasValue reports whether the header name is present in h, under any
// spelling, and each spelling's first value is non-empty.
func hasValue(h http.Header, name string) bool {
	// Header.Get sees only the canonical key: every key is looked at, with
	// names compared case-insensitively, as a server compares them.
	found := false
	for k, vv := range h {
		if len(k) == len(name) && strings.EqualFold(k, name) {
			if len(vv) == 0 || vv[0] == "" {
				return false
			}
			found = true
		}
	}
	return found
}

// NeverSent reports whether err proves that the request never left the
// client: the connection could not be made (a dial error: refused,
// unreachable, timed out while connecting) or the host name did not
// resolve. Only such failures make a request without an idempotency key
// retryable, since no byte of it can have reached the server.
func NeverSent(err error) bool {
	if err == nil {
		return false
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	// Walk the whole chain: behind a proxy the dial error is wrapped in a
	// "proxyconnect" *net.OpError, which errors.As would find first.
	found := false
	walk(err, func(e error) bool {
		if op, ok := e.(*net.OpError); ok && op.Op == "dial" {
			found = true
		}
		return !found
	})
	return found
}

// walk visits err and every error it wraps, depth first, while visit
// returns true.
func walk(err error, visit func(error) bool) bool {
	for err != nil {
		if !visit(err) {
			return false
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if !walk(e, visit) {
					return false
				}
			}
			return true
		default:
			return true
		}
	}
	return true
}

// ClassifyError classifies a transport error, by type and by [errors.Is]
// and [errors.As], never by its text:
//
//   - [resilient.Fail] for certificate and TLS record errors (an untrusted,
//     expired or misnamed certificate, a server that does not speak TLS),
//     [http.ErrSchemeMismatch], [ErrInvalidRequest], [ErrNilResponse] and
//     [ErrTooManyRedirects]: retrying cannot change them;
//   - [resilient.Retry] for connection resets, refusals and aborts, broken
//     pipes, unreachable hosts, unexpected EOFs, DNS failures, timeouts
//     (any net.Error whose Timeout is true, and context.DeadlineExceeded
//     of a per-attempt timeout);
//   - [resilient.Unclassified] for anything else, so that it chains with
//     other classifiers (see [resilient.Classifiers]); the executor's
//     default rule retries it.
//
// It has the type of a [resilient.Classifier], so
// resilient.WithClassifier(httpx.ClassifyError) serves calls of any kind
// that use net/http underneath.
func ClassifyError(err error) resilient.Outcome {
	if err == nil {
		return resilient.Unclassified
	}
	if permanentError(err) {
		return resilient.Fail
	}
	if retryableError(err) {
		return resilient.Retry
	}
	return resilient.Unclassified
}

func permanentError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		roots     x509.SystemRootsError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &record), errors.As(err, &unknownCA),
		errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &roots):
		return true
	case errors.Is(err, http.ErrSchemeMismatch), errors.Is(err, ErrInvalidRequest),
		errors.Is(err, ErrNilResponse), errors.Is(err, ErrTooManyRedirects):
		return true
	}
	return false
}

func retryableError(err error) bool {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ENETDOWN),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
