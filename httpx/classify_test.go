package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"

	"github.com/resilient-go/resilient"
	"github.com/stretchr/testify/assert"
)

func TestStatusOutcome(t *testing.T) {
	cases := []struct {
		name string
		code int
		want resilient.Outcome
	}{
		{"100 continue", 100, resilient.Success},
		{"200 ok", 200, resilient.Success},
		{"204 no content", 204, resilient.Success},
		{"304 not modified", 304, resilient.Success},
		{"400 bad request", 400, resilient.Success},
		{"401 unauthorized", 401, resilient.Success},
		{"403 forbidden", 403, resilient.Success},
		{"404 not found", 404, resilient.Success},
		{"408 request timeout", 408, resilient.Retry},
		{"409 conflict", 409, resilient.Success},
		{"422 unprocessable", 422, resilient.Success},
		{"429 too many requests", 429, resilient.Retry},
		{"499 client closed", 499, resilient.Success},
		{"500 internal error", 500, resilient.Retry},
		{"501 not implemented", 501, resilient.Fail},
		{"502 bad gateway", 502, resilient.Retry},
		{"503 unavailable", 503, resilient.Retry},
		{"504 gateway timeout", 504, resilient.Retry},
		{"505 version not supported", 505, resilient.Fail},
		{"507 insufficient storage", 507, resilient.Fail},
		{"599", 599, resilient.Fail},
		{"zero", 0, resilient.Fail},
		{"negative", -1, resilient.Fail},
		{"99", 99, resilient.Fail},
		{"600", 600, resilient.Fail},
		{"max int", math.MaxInt, resilient.Fail},
		{"min int", math.MinInt, resilient.Fail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, StatusOutcome(tc.code))
			assert.Equal(t, tc.want == resilient.Retry, RetryableStatus(tc.code))
		})
	}
}

func TestIdempotentMethod(t *testing.T) {
	cases := []struct {
		method string
		want   bool
	}{
		{"", true}, {"GET", true}, {"HEAD", true}, {"OPTIONS", true}, {"TRACE", true},
		{"PUT", true}, {"DELETE", true},
		{"POST", false}, {"PATCH", false}, {"CONNECT", false}, {"get", false}, {"PROPFIND", false},
	}
	for _, tc := range cases {
		t.Run("method "+tc.method, func(t *testing.T) {
			assert.Equal(t, tc.want, IdempotentMethod(tc.method))
		})
	}
}

func TestHasIdempotencyKey(t *testing.T) {
	cases := []struct {
		name string
		h    http.Header
		want bool
	}{
		{"nil header", nil, false},
		{"none", http.Header{"Content-Type": {"x"}}, false},
		{"Idempotency-Key", http.Header{"Idempotency-Key": {"k"}}, true},
		{"X-Idempotency-Key", http.Header{"X-Idempotency-Key": {"k"}}, true},
		{"empty value", http.Header{"Idempotency-Key": {""}}, false},
		{"lower-case name", http.Header{"idempotency-key": {"k"}}, true},
		{"upper-case name", http.Header{"IDEMPOTENCY-KEY": {"k"}}, true},
		{"lower-case X- name", http.Header{"x-idempotency-key": {"k"}}, true},
		{"two spellings, one empty", http.Header{"Idempotency-Key": {"k"}, "idempotency-key": {""}}, false},
		{"two spellings, both set", http.Header{"Idempotency-Key": {"k"}, "idempotency-key": {"k"}}, true},
		{"no values", http.Header{"idempotency-key": {}}, false},
		{"a longer name", http.Header{"Idempotency-Keys": {"k"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, HasIdempotencyKey(tc.h))
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name string
		err  error
		want resilient.Outcome
	}{
		{"nil", nil, resilient.Unclassified},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, resilient.Retry},
		{"refused", dial, resilient.Retry},
		{"broken pipe", &net.OpError{Op: "write", Err: syscall.EPIPE}, resilient.Retry},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), resilient.Retry},
		{"EOF", io.EOF, resilient.Retry},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, resilient.Retry},
		{"attempt timeout", context.DeadlineExceeded, resilient.Retry},
		{"dns", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, resilient.Retry},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, resilient.Fail},
		{"hostname mismatch", x509.HostnameError{Host: "x"}, resilient.Fail},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, resilient.Fail},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, resilient.Fail},
		{"scheme mismatch", http.ErrSchemeMismatch, resilient.Fail},
		{"invalid request", fmt.Errorf("%w: nil URL", ErrInvalidRequest), resilient.Fail},
		{"nil response", ErrNilResponse, resilient.Fail},
		{"redirects", ErrTooManyRedirects, resilient.Fail},
		{"other", errors.New("something"), resilient.Unclassified},
		{"canceled", context.Canceled, resilient.Unclassified},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ClassifyError(tc.err))
		})
	}
}

func TestNeverSent(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"dial refused", dial, true},
		{"dial wrapped", fmt.Errorf("get: %w", dial), true},
		{"behind a proxy", &net.OpError{Op: "proxyconnect", Net: "tcp", Err: dial}, true},
		{"joined", errors.Join(errors.New("x"), dial), true},
		{"dns", &net.DNSError{Err: "no such host", Name: "x"}, true},
		{"read reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, false},
		{"write", &net.OpError{Op: "write", Err: syscall.EPIPE}, false},
		{"EOF", io.EOF, false},
		{"timeout", context.DeadlineExceeded, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, NeverSent(tc.err))
		})
	}
}

func TestClassifyErrorAsExecutorClassifier(t *testing.T) {
	calls := 0
	_, err := resilient.Do(context.Background(), func(context.Context) (int, error) {
		calls++
		return 0, x509.HostnameError{Host: "x"}
	}, resilient.WithClassifier(ClassifyError), resilient.WithBackoff(resilient.Constant(0)))
	assert.ErrorIs(t, err, resilient.ErrPermanent)
	assert.Equal(t, 1, calls)
}

func TestStatusErrorMessage(t *testing.T) {
	assert.Equal(t, "resilient/httpx: status 503 Service Unavailable", (&StatusError{Code: 503, Status: "503 Service Unavailable"}).Error())
	assert.Equal(t, "resilient/httpx: status 503", (&StatusError{Code: 503}).Error())
}
