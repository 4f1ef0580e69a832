package imageinput

import (
	"errors"
	"fmt"
)

// The kinds of failure of one reference image. Each *Error wraps exactly
// one; its Reason is written for the user who sent the image (a 422's
// message for image_urls[i]).
var (
	// ErrBadURL: not a data: URI, not an http(s) URL.
	ErrBadURL = errors.New("bad image URL")
	// ErrBadDataURI: a data: URI that does not parse or decode.
	ErrBadDataURI = errors.New("bad data URI")
	// ErrRefused: the URL's host is an address the server does not fetch.
	ErrRefused = errors.New("address refused")
	// ErrUnreachable: the image could not be fetched (no such host,
	// connection failed, bad status, redirect not followed, no such file).
	ErrUnreachable = errors.New("unreachable")
	// ErrTimeout: the fetch did not finish in time.
	ErrTimeout = errors.New("timed out")
	// ErrTooLarge: the encoded image is over the byte limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupported: not an image, a format that is not accepted, or a
	// corrupt image.
	ErrUnsupported = errors.New("not a supported image")
	// ErrTooManyPixels: the image's dimensions are over the pixel or side
	// limit (checked before decoding).
	ErrTooManyPixels = errors.New("too many pixels")
)

// Error is a failed reference image. Error() is for logs; Reason() is
// safe to show the user.
type Error struct {
	// Index is the image's position in the request's list.
	Index int
	// Kind is one of the Err* values of this package.
	Kind error
	// reason is the user-facing explanation.
	reason string
	// Err is the underlying cause, for logs only.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("imageinput: image %d: %s", e.Index, e.reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Reason explains the failure to the user who sent the image.
func (e *Error) Reason() string { return e.reason }

// Unwrap exposes the kind (errors.Is) and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func newError(kind error, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, reason: fmt.Sprintf(format, args...), Err: cause}
}
