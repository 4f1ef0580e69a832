package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Policy says which addresses outbound requests may reach. The zero Policy
// allows public addresses only.
type Policy struct {
	// AllowPrivate lifts the refusal of loopback, private (RFC 1918),
	// shared (100.64.0.0/10) and unique local (fc00::/7) addresses, as the
	// -allow-private-urls flag does for development and internal
	// deployments. Link-local addresses (169.254.0.0/16, fe80::/10, where
	// cloud metadata services answer) and the other classes stay refused.
	AllowPrivate bool
	// AllowCIDRs are ranges allowed whatever their class (for example an
	// internal webhook receiver at 10.1.2.3/32).
	AllowCIDRs []netip.Prefix
	// AllowHosts are host names whose connections are not checked at all,
	// whatever they resolve to (for example an internal object store).
	// Matching is exact and case-insensitive, without a trailing dot.
	AllowHosts []string
}

// Allowed returns nil if the policy lets a connection reach addr, else an
// *Error of kind ErrRefused naming the address class.
func (p Policy) Allowed(addr netip.Addr) error {
	plain := addr.WithZone("")
	for _, c := range p.AllowCIDRs {
		if c.Contains(plain) || c.Contains(plain.Unmap()) {
			return nil
		}
	}
	class := Classify(addr)
	if class == Public || (p.AllowPrivate && class.privateLike()) {
		return nil
	}
	return &Error{Kind: ErrRefused, Class: class, Err: fmt.Errorf("address %s is %s", addr, class)}
}

func (p Policy) hostAllowed(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, h := range p.AllowHosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

// Resolver looks up a host name's addresses; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Option configures a Guard.
type Option func(*Guard)

// WithResolver replaces the system resolver (tests answer chosen addresses
// for chosen names with it).
func WithResolver(r Resolver) Option { return func(g *Guard) { g.resolver = r } }

// Guard makes outbound HTTP requests that only reach addresses its Policy
// allows. Every connection is checked at connect time, on the exact
// address connected to after DNS resolution, so neither a redirect nor a
// DNS answer that changes between a check and the connection (DNS
// rebinding) can reach a refused address. Proxy environment variables
// (HTTP_PROXY, HTTPS_PROXY) are ignored: through a proxy the guard would
// only see the proxy's address.
//
// A Guard holds a pool of idle connections; Close releases them.
type Guard struct {
	policy    Policy
	resolver  Resolver
	checked   net.Dialer // its Control refuses what the policy refuses
	unchecked net.Dialer // for Policy.AllowHosts
	transport *http.Transport
}

// Connection and handshake limits of the guard's transport; the whole
// exchange is bounded by the caller's context or Limits.Timeout.
const (
	dialTimeout         = 10 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	idleConnTimeout     = 90 * time.Second
)

// New returns a Guard for p.
func New(p Policy, opts ...Option) *Guard {
	g := &Guard{policy: p, resolver: net.DefaultResolver}
	for _, o := range opts {
		o(g)
	}
	g.checked = p.Dialer()
	g.unchecked = net.Dialer{Timeout: dialTimeout}
	g.transport = &http.Transport{
		Proxy:                 nil, // see the Guard doc: a proxy would hide the real address
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		IdleConnTimeout:       idleConnTimeout,
		MaxIdleConns:          32,
		ExpectContinueTimeout: time.Second,
	}
	return g
}

// Policy returns the guard's policy.
func (g *Guard) Policy() Policy { return g.policy }

// Close releases the idle connections of the guard's transport.
func (g *Guard) Close() { g.transport.CloseIdleConnections() }

// Dialer returns a net.Dialer whose Control refuses, just before each
// connect(2), every address the policy refuses. It resolves names with the
// system resolver and does not honour Policy.AllowHosts (it never sees the
// name); Guard.DialContext does both.
func (p Policy) Dialer() net.Dialer {
	return net.Dialer{
		Timeout: dialTimeout,
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &Error{Kind: ErrRefused, Class: Reserved, Err: fmt.Errorf("unparsable address %q: %w", address, err)}
			}
			return p.Allowed(ap.Addr())
		},
	}
}

// DialContext connects to address (host:port) if the policy allows it. A
// host name is resolved with the guard's resolver; if any of its addresses
// is refused the name is refused, and the addresses are then dialled one
// by one with the checking dialer, so the address connected to is checked
// again at connect time.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("netguard: network %q not allowed", network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &Error{Kind: ErrBadURL, Detail: "the address is not host:port", Err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &Error{Kind: ErrBadURL, Detail: "the port must be 1 to 65535", Err: err}
	}
	dialer := &g.checked
	if g.policy.hostAllowed(host) {
		dialer = &g.unchecked
	}
	addrs, err := g.resolve(ctx, network, host, dialer == &g.checked)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		conn, err := dialer.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// resolve returns the addresses to dial for host (an IP literal or a name);
// with check set, a host with any refused address is refused.
func (g *Guard) resolve(ctx context.Context, network, host string, check bool) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if numericHost(host) {
		return nil, &Error{Kind: ErrBadURL, Detail: "the host is a non-standard spelling of an IP address"}
	} else {
		ipNet := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
		if addrs, err = g.resolver.LookupNetIP(ctx, ipNet, host); err != nil {
			return nil, &Error{Kind: ErrUnreachable, Err: err}
		}
		if len(addrs) == 0 {
			return nil, &Error{Kind: ErrUnreachable, Err: fmt.Errorf("%s has no addresses", host)}
		}
	}
	if check {
		for _, a := range addrs {
			if err := g.policy.Allowed(a); err != nil {
				return nil, err
			}
		}
	}
	return addrs, nil
}

// Preflight checks a URL before it is accepted (for example a webhook URL
// at submission), so a refused host is answered at once rather than when
// the request is made: CheckURL, then the host's addresses against the
// policy. It is advisory; the connection is checked again when it is made.
func (g *Guard) Preflight(ctx context.Context, raw string) error {
	u, err := CheckURL(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if g.policy.hostAllowed(host) {
		return nil
	}
	if _, err := g.resolve(ctx, "tcp", host, true); err != nil {
		return withURL(err, raw)
	}
	return nil
}

// Transport returns the guard's http.RoundTripper (shared, pooled). It does
// not follow redirects (http.Client does); use Client for that.
func (g *Guard) Transport() http.RoundTripper { return g.transport }

// DefaultMaxRedirects is the number of redirects a Client follows by
// default; each hop is checked like the first request.
const DefaultMaxRedirects = 5

// ClientOptions configures Guard.Client.
type ClientOptions struct {
	// Timeout bounds each whole exchange, redirects and body included
	// (0: only the request's context bounds it).
	Timeout time.Duration
	// MaxRedirects is the number of redirects followed (0:
	// DefaultMaxRedirects).
	MaxRedirects int
	// NoRedirects refuses every redirect with ErrRedirect: for requests
	// that must not be re-sent elsewhere, such as webhook POSTs.
	NoRedirects bool
}

// Client returns an http.Client that uses the guard's transport and
// re-checks every redirect target (scheme, host spelling; the dialer
// checks its addresses).
func (g *Guard) Client(o ClientOptions) *http.Client {
	max := o.MaxRedirects
	if max <= 0 {
		max = DefaultMaxRedirects
	}
	return &http.Client{
		Transport: g.transport,
		Timeout:   o.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if o.NoRedirects {
				return &Error{Kind: ErrRedirect, Detail: "the URL answered with a redirect, which is not followed for this request"}
			}
			if len(via) > max {
				return &Error{Kind: ErrRedirect, Detail: fmt.Sprintf("the URL redirected more than %d times", max)}
			}
			if err := checkParsed(req.URL); err != nil {
				err.Detail = "redirect target: " + err.Detail
				return err
			}
			return nil
		},
	}
}

// withURL attaches the redacted URL to a guard error, or wraps any other
// error as ErrUnreachable.
func withURL(err error, raw string) error {
	var ge *Error
	if errors.As(err, &ge) {
		c := *ge
		c.URL = Redact(raw)
		return &c
	}
	return &Error{Kind: ErrUnreachable, URL: Redact(raw), Err: err}
}
