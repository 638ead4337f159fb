package main

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// outcomeOf names why a logical request got no (complete) response, by
// errors.Is and errors.As, never by the error's text.
func outcomeOf(err error) string {
	if o := libraryOutcome(err); o != "" {
		return o
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error"
}
