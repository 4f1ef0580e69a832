package netguard

import (
	"errors"
	"fmt"
	"time"
)

// The kinds of failure. Every error the guard returns for a URL wraps
// exactly one of them (errors.Is) inside an *Error, whose Reason is safe to
// show the user who gave the URL.
var (
	// ErrBadURL: not an absolute http(s) URL with a host, or a host spelled
	// as a non-standard IP number (0x7f000001, 2130706433, 0177.0.0.1).
	ErrBadURL = errors.New("bad URL")
	// ErrRefused: the host is, or resolves to, an address the policy
	// refuses (Error.Class says which class).
	ErrRefused = errors.New("address refused")
	// ErrUnreachable: the name did not resolve, the connection or the TLS
	// handshake failed, or the server broke the exchange.
	ErrUnreachable = errors.New("unreachable")
	// ErrTimeout: the exchange did not finish within its time limit.
	ErrTimeout = errors.New("timed out")
	// ErrTooLarge: the body is larger than the limit.
	ErrTooLarge = errors.New("too large")
	// ErrBadStatus: the server answered with a status other than 2xx.
	ErrBadStatus = errors.New("bad status")
	// ErrRedirect: a redirect that is not followed (redirects refused, or
	// more hops than the limit).
	ErrRedirect = errors.New("redirect not followed")
)

// Error is a failed outbound request. Error() is for logs: it carries the
// redacted URL and the underlying cause (which may name IP addresses);
// Reason() is what a user may be shown.
type Error struct {
	// Kind is one of the Err* values of this package.
	Kind error
	// Class is the refused address class (ErrRefused).
	Class Class
	// Status is the HTTP status received (ErrBadStatus).
	Status int
	// Limit is the byte limit passed (ErrTooLarge).
	Limit int64
	// Timeout is the time limit passed (ErrTimeout), when known.
	Timeout time.Duration
	// Detail is a user-safe explanation for ErrBadURL and ErrRedirect.
	Detail string
	// URL is the request URL, redacted (see Redact).
	URL string
	// Err is the underlying cause, for logs; never shown to users.
	Err error
}

func (e *Error) Error() string {
	s := "netguard: " + e.Reason()
	if e.URL != "" {
		s += " (" + e.URL + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes both the kind (errors.Is(err, ErrRefused)) and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Reason is a short explanation for the user who supplied the URL. It never
// contains an IP address, a credential or an internal error text.
func (e *Error) Reason() string {
	switch e.Kind {
	case ErrBadURL:
		if e.Detail != "" {
			return "invalid URL: " + e.Detail
		}
		return "invalid URL"
	case ErrRefused:
		return fmt.Sprintf("the URL refers to a %s address, which this server does not connect to", e.Class)
	case ErrUnreachable:
		return "the URL could not be reached"
	case ErrTimeout:
		if e.Timeout > 0 {
			return fmt.Sprintf("the URL did not answer within %s", e.Timeout)
		}
		return "the URL did not answer in time"
	case ErrTooLarge:
		return fmt.Sprintf("the response is larger than the limit of %s", FormatBytes(e.Limit))
	case ErrBadStatus:
		return fmt.Sprintf("the URL answered HTTP %d", e.Status)
	case ErrRedirect:
		if e.Detail != "" {
			return e.Detail
		}
		return "the URL redirected elsewhere, which is not followed"
	}
	return "the URL could not be fetched"
}

// FormatBytes writes n in the largest binary unit that divides it, so
// limits read as they were configured ("20 MiB", "1000 bytes").
func FormatBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
