package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Limits bound one Fetch.
type Limits struct {
	// Timeout bounds the whole fetch: connection, redirects and body.
	// It must be positive.
	Timeout time.Duration
	// MaxBytes is the largest body accepted. It must be positive.
	MaxBytes int64
	// MaxRedirects is the number of redirects followed (0:
	// DefaultMaxRedirects).
	MaxRedirects int
}

// Result is a fetched body.
type Result struct {
	Body []byte
	// ContentType is the response's Content-Type header, as sent.
	ContentType string
}

// userAgent identifies the server's outbound requests.
const userAgent = "kleinserve"

// Fetch GETs raw through the guard and returns its body. It refuses what
// CheckURL refuses, follows at most lim.MaxRedirects redirects (each
// re-checked), accepts only 2xx answers, and reads at most lim.MaxBytes
// bytes: a declared Content-Length above the limit fails before reading,
// and an undeclared body fails as soon as byte MaxBytes+1 arrives.
//
// Failures are *Error with one of the kinds of this package, except when
// ctx itself ends: then the error wraps ctx.Err().
func (g *Guard) Fetch(ctx context.Context, raw string, lim Limits) (*Result, error) {
	if lim.Timeout <= 0 || lim.MaxBytes <= 0 {
		return nil, fmt.Errorf("netguard: Fetch needs a positive timeout and size limit (got %v, %d)", lim.Timeout, lim.MaxBytes)
	}
	u, err := CheckURL(raw)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{Kind: ErrBadURL, URL: Redact(raw), Err: err}
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := g.Client(ClientOptions{MaxRedirects: lim.MaxRedirects}).Do(req)
	if err != nil {
		return nil, classify(ctx, err, raw, lim)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &Error{Kind: ErrBadStatus, Status: resp.StatusCode, URL: Redact(raw)}
	}
	tooLarge := &Error{Kind: ErrTooLarge, Limit: lim.MaxBytes, URL: Redact(raw)}
	if resp.ContentLength > lim.MaxBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, lim.MaxBytes+1))
	if err != nil {
		return nil, classify(ctx, err, raw, lim)
	}
	if int64(len(body)) > lim.MaxBytes {
		return nil, tooLarge
	}
	return &Result{Body: body, ContentType: resp.Header.Get("Content-Type")}, nil
}

// classify turns a transport error into an *Error: the guard's own errors
// pass through (with the URL), the caller's cancellation stays a context
// error, a deadline or network timeout is ErrTimeout, the rest
// ErrUnreachable.
func classify(parent context.Context, err error, raw string, lim Limits) error {
	var ge *Error
	if errors.As(err, &ge) {
		return withURL(ge, raw)
	}
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("netguard: fetch %s: %w", Redact(raw), perr)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Kind: ErrTimeout, Timeout: lim.Timeout, URL: Redact(raw), Err: err}
	}
	return &Error{Kind: ErrUnreachable, URL: Redact(raw), Err: err}
}
