package netguard

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength is the longest URL the guard accepts, in bytes.
const MaxURLLength = 8192

// CheckURL parses raw and accepts only an absolute http or https URL with a
// host, a valid port, and a host that is either a name or a standard IP
// literal. It does not resolve the host; the dialer checks the addresses
// when it connects. Failures are *Error of kind ErrBadURL.
func CheckURL(raw string) (*url.URL, error) {
	bad := func(detail string, err error) (*url.URL, error) {
		return nil, &Error{Kind: ErrBadURL, Detail: detail, URL: Redact(raw), Err: err}
	}
	if len(raw) > MaxURLLength {
		return bad(fmt.Sprintf("longer than %d bytes", MaxURLLength), nil)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a valid URL", err)
	}
	if err := checkParsed(u); err != nil {
		err.URL = Redact(raw)
		return nil, err
	}
	return u, nil
}

// checkParsed applies CheckURL's rules to a parsed URL (also to each
// redirect target).
func checkParsed(u *url.URL) *Error {
	bad := func(detail string) *Error { return &Error{Kind: ErrBadURL, Detail: detail} }
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return bad("the scheme must be http or https")
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("the URL has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("the port must be 1 to 65535")
		}
	}
	host := u.Hostname()
	if host == "" {
		return bad("the URL has no host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if numericHost(host) {
		return bad("the host is a non-standard spelling of an IP address")
	}
	return nil
}

// numericHost reports whether host is a non-canonical numeric IPv4
// spelling: one to four dot-separated parts, each decimal, octal (leading
// 0) or hexadecimal (0x), optionally with a trailing dot. Go's own resolver
// looks such names up in DNS, but the C library's getaddrinfo (cgo
// resolver) reads them as inet_aton does: 0x7f000001, 2130706433,
// 0177.0.0.1 and 127.1 all mean 127.0.0.1. No real host name is all
// numeric (top-level domains are never numbers), so refusing them all
// costs nothing and makes the result independent of the resolver.
func numericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		if !numericPart(strings.ToLower(p)) {
			return false
		}
	}
	return true
}

func numericPart(p string) bool {
	digits := "0123456789"
	if rest, ok := strings.CutPrefix(p, "0x"); ok {
		p, digits = rest, "0123456789abcdef"
		if p == "" {
			return true // inet_aton reads a bare 0x as 0
		}
	}
	if p == "" {
		return false
	}
	for _, c := range p {
		if !strings.ContainsRune(digits, c) {
			return false
		}
	}
	return true
}

// Redacted replaces every query value in a redacted URL.
const Redacted = "REDACTED"

// Redact makes a URL safe for a log line: it drops the user information
// (user:password@) and the fragment, and replaces every query value with
// REDACTED (keys stay; a bare item without "=" is replaced whole, since it
// may be a token). A data: URI is shortened to its media type and length.
// A string that does not parse as a URL is not echoed at all.
func Redact(raw string) string {
	if len(raw) >= 5 && strings.EqualFold(raw[:5], "data:") {
		meta, _, _ := strings.Cut(raw[5:], ",")
		if len(meta) > 100 {
			meta = meta[:100] + "…"
		}
		return fmt.Sprintf("data:%s,… (%d bytes)", strings.ToValidUTF8(meta, "?"), len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.Opaque != "" { // mailto:user@host and the like: all of it is data
		return u.Scheme + ":" + Redacted
	}
	u.ForceQuery = false
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		items := strings.Split(u.RawQuery, "&")
		for i, item := range items {
			if key, _, ok := strings.Cut(item, "="); ok {
				items[i] = key + "=" + Redacted
			} else if item != "" {
				items[i] = Redacted
			}
		}
		u.RawQuery = strings.Join(items, "&")
	}
	return u.String()
}
