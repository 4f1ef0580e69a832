package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers fixed addresses per name, or a sequence of answers
// (one per lookup) to imitate DNS rebinding. Unknown names fail.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	lookups map[string]int
}

func newResolver() *fakeResolver {
	return &fakeResolver{answers: map[string][][]netip.Addr{}, lookups: map[string]int{}}
}

func (r *fakeResolver) set(name string, answers ...string) *fakeResolver {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seq [][]netip.Addr
	for _, a := range answers {
		var addrs []netip.Addr
		for _, s := range strings.Split(a, ",") {
			addrs = append(addrs, netip.MustParseAddr(s))
		}
		seq = append(seq, addrs)
	}
	r.answers[name] = seq
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.lookups[host], len(seq)-1)
	r.lookups[host]++
	return seq[i], nil
}

// countingServer is an httptest server on 127.0.0.1 that counts requests.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) port() string {
	u, _ := url.Parse(s.URL)
	return u.Port()
}

func hello(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") }

var lim = Limits{Timeout: 5 * time.Second, MaxBytes: 1 << 20}

func wantKind(t *testing.T, err error, kind error) *Error {
	t.Helper()
	var ge *Error
	if !errors.Is(err, kind) || !errors.As(err, &ge) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	return ge
}

func newGuard(t *testing.T, p Policy, r Resolver) *Guard {
	g := New(p, WithResolver(r))
	t.Cleanup(g.Close)
	return g
}

func TestLoopbackRefusedByDefault(t *testing.T) {
	s := newServer(t, hello)
	g := newGuard(t, Policy{}, newResolver().set("localhost", "127.0.0.1"))
	for _, u := range []string{
		s.URL,
		"http://localhost:" + s.port() + "/",
		"http://[::ffff:127.0.0.1]:" + s.port() + "/",
	} {
		_, err := g.Fetch(context.Background(), u, lim)
		if ge := wantKind(t, err, ErrRefused); ge.Class != Loopback {
			t.Errorf("%s: class %q", u, ge.Class)
		}
		if r := (&Error{Kind: ErrRefused, Class: Loopback}).Reason(); strings.Contains(r, "127.0.0.1") {
			t.Errorf("reason names the address: %q", r)
		}
	}
	if s.hits.Load() != 0 {
		t.Fatalf("server reached %d times", s.hits.Load())
	}
}

func TestNumericHostSpellingsRefused(t *testing.T) {
	s := newServer(t, hello)
	// The system resolver: whichever Go picks (its own, or cgo's
	// getaddrinfo that reads these as 127.0.0.1), they are refused before
	// any lookup.
	g := New(Policy{AllowPrivate: true})
	defer g.Close()
	for _, host := range []string{"0x7f000001", "2130706433", "0177.0.0.1", "127.1", "0x7f.1"} {
		u := "http://" + host + ":" + s.port() + "/"
		_, err := g.Fetch(context.Background(), u, lim)
		wantKind(t, err, ErrBadURL)
		// Also through the plain client, where only the dialer sees them.
		resp, err := g.Client(ClientOptions{}).Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s reached through the client", host)
		}
		wantKind(t, err, ErrBadURL)
	}
	if s.hits.Load() != 0 {
		t.Fatalf("server reached %d times", s.hits.Load())
	}
}

func TestAllowPrivateAndAllowListsReachLoopback(t *testing.T) {
	s := newServer(t, hello)
	res := newResolver().set("hooks.internal", "127.0.0.1")
	for name, p := range map[string]Policy{
		"allow-private": {AllowPrivate: true},
		"cidr":          {AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		"host":          {AllowHosts: []string{"HOOKS.internal."}},
	} {
		t.Run(name, func(t *testing.T) {
			g := newGuard(t, p, res)
			u := "http://hooks.internal:" + s.port() + "/"
			if name != "host" {
				u = s.URL
			}
			r, err := g.Fetch(context.Background(), u, lim)
			if err != nil || string(r.Body) != "hello" {
				t.Fatalf("fetch: %v", err)
			}
			if err := g.Preflight(context.Background(), u); err != nil {
				t.Fatalf("preflight: %v", err)
			}
		})
	}
	// The host allow-list is by name: the same address by IP stays refused.
	g := newGuard(t, Policy{AllowHosts: []string{"hooks.internal"}}, res)
	_, err := g.Fetch(context.Background(), s.URL, lim)
	wantKind(t, err, ErrRefused)
}

// TestDNSRebindingRefusedAtConnect: a name that resolves to a public
// address when checked and to loopback when connected is refused at
// connect time.
func TestDNSRebindingRefusedAtConnect(t *testing.T) {
	s := newServer(t, hello)
	res := newResolver().set("rebind.example", "93.184.215.14", "127.0.0.1")
	g := newGuard(t, Policy{}, res)
	u := "http://rebind.example:" + s.port() + "/"
	if err := g.Preflight(context.Background(), u); err != nil {
		t.Fatalf("preflight with the public answer: %v", err)
	}
	_, err := g.Fetch(context.Background(), u, lim)
	if ge := wantKind(t, err, ErrRefused); ge.Class != Loopback {
		t.Fatalf("class %q", ge.Class)
	}
	if s.hits.Load() != 0 {
		t.Fatal("server reached")
	}
	// A name with one private address among public ones is refused whole.
	res.set("mixed.example", "93.184.215.14,10.0.0.1")
	err = g.Preflight(context.Background(), "http://mixed.example/")
	if ge := wantKind(t, err, ErrRefused); ge.Class != Private {
		t.Fatalf("class %q", ge.Class)
	}
	// Cloud metadata by name.
	res.set("metadata.google.internal", "169.254.169.254")
	_, err = g.Fetch(context.Background(), "http://metadata.google.internal/computeMetadata/v1/", lim)
	if ge := wantKind(t, err, ErrRefused); ge.Class != LinkLocal {
		t.Fatalf("class %q", ge.Class)
	}
}

// TestDialerControlRefusesBeforeConnect: the policy's dialer refuses a
// loopback address itself, at connect time, without the listener seeing a
// connection; the same dialer connects under a policy that allows it.
func TestDialerControlRefusesBeforeConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	d := Policy{}.Dialer()
	_, err = d.DialContext(context.Background(), "tcp", ln.Addr().String())
	wantKind(t, err, ErrRefused)
	d = Policy{AllowPrivate: true}.Dialer()
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-accepted
	select {
	case <-accepted:
		t.Fatal("the refused dial reached the listener")
	default:
	}
}

func TestRedirects(t *testing.T) {
	res := newResolver().set("good.example", "127.0.0.1").set("evil.example", "127.0.0.1")
	policy := Policy{AllowHosts: []string{"good.example"}}
	target := newServer(t, hello)
	var redirectTo atomic.Value
	redirector := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, redirectTo.Load().(string), http.StatusTemporaryRedirect)
	})
	start := "http://good.example:" + redirector.port() + "/"
	g := newGuard(t, policy, res)

	t.Run("to a refused address", func(t *testing.T) {
		for _, to := range []string{
			target.URL,
			"http://evil.example:" + target.port() + "/",
			"http://0x7f000001:" + target.port() + "/",
		} {
			redirectTo.Store(to)
			_, err := g.Fetch(context.Background(), start, lim)
			var ge *Error
			if !errors.As(err, &ge) || (ge.Kind != ErrRefused && ge.Kind != ErrBadURL) {
				t.Fatalf("redirect to %s: %v", to, err)
			}
		}
		if target.hits.Load() != 0 {
			t.Fatal("redirect target reached")
		}
	})
	t.Run("to another scheme", func(t *testing.T) {
		redirectTo.Store("file:///etc/passwd")
		_, err := g.Fetch(context.Background(), start, lim)
		wantKind(t, err, ErrBadURL)
	})
	t.Run("followed when allowed", func(t *testing.T) {
		redirectTo.Store("http://good.example:" + target.port() + "/")
		r, err := g.Fetch(context.Background(), start, lim)
		if err != nil || string(r.Body) != "hello" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("hop limit", func(t *testing.T) {
		redirectTo.Store(start) // a loop
		_, err := g.Fetch(context.Background(), start, Limits{Timeout: 5 * time.Second, MaxBytes: 100, MaxRedirects: 3})
		ge := wantKind(t, err, ErrRedirect)
		if !strings.Contains(ge.Reason(), "more than 3") {
			t.Fatalf("reason %q", ge.Reason())
		}
	})
	t.Run("refused entirely for webhooks", func(t *testing.T) {
		before := target.hits.Load()
		redirectTo.Store("http://good.example:" + target.port() + "/")
		c := g.Client(ClientOptions{NoRedirects: true})
		resp, err := c.Post(start, "application/json", strings.NewReader(`{"a":1}`))
		if err == nil {
			resp.Body.Close()
		}
		wantKind(t, err, ErrRedirect)
		if target.hits.Load() != before {
			t.Fatal("the POST was re-sent to the redirect target")
		}
	})
}

func TestFetchSizeLimit(t *testing.T) {
	body := strings.Repeat("x", 1000)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length: the reader must stop
		}
		io.WriteString(w, body)
	})
	g := newGuard(t, Policy{AllowPrivate: true}, newResolver())
	for _, q := range []string{"", "?chunked"} {
		r, err := g.Fetch(context.Background(), s.URL+q, Limits{Timeout: 5 * time.Second, MaxBytes: 1000})
		if err != nil || len(r.Body) != 1000 {
			t.Fatalf("%q at the limit: %v", q, err)
		}
		_, err = g.Fetch(context.Background(), s.URL+q, Limits{Timeout: 5 * time.Second, MaxBytes: 999})
		ge := wantKind(t, err, ErrTooLarge)
		if ge.Reason() != "the response is larger than the limit of 999 bytes" {
			t.Fatalf("reason %q", ge.Reason())
		}
	}
}

func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	g := newGuard(t, Policy{AllowPrivate: true}, newResolver())
	_, err := g.Fetch(context.Background(), s.URL, Limits{Timeout: 50 * time.Millisecond, MaxBytes: 100})
	ge := wantKind(t, err, ErrTimeout)
	if !strings.Contains(ge.Reason(), "50ms") {
		t.Fatalf("reason %q", ge.Reason())
	}
	// The caller's own cancellation is not a timeout of the URL.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = g.Fetch(ctx, s.URL, Limits{Timeout: time.Minute, MaxBytes: 100})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled fetch: %v", err)
	}
}

func TestFetchStatusAndUnreachable(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "nope", http.StatusNotFound) })
	g := newGuard(t, Policy{AllowPrivate: true}, newResolver())
	_, err := g.Fetch(context.Background(), s.URL+"/x?token=secret", lim)
	ge := wantKind(t, err, ErrBadStatus)
	if ge.Status != 404 || ge.Reason() != "the URL answered HTTP 404" || strings.Contains(err.Error(), "secret") {
		t.Fatalf("%+v: %v", ge, err)
	}
	// A port nothing listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	_, err = g.Fetch(context.Background(), "http://"+closed+"/", lim)
	wantKind(t, err, ErrUnreachable)
	// A name that does not resolve.
	_, err = g.Fetch(context.Background(), "http://nowhere.example/", lim)
	wantKind(t, err, ErrUnreachable)
	if _, err := g.Fetch(context.Background(), s.URL, Limits{}); err == nil {
		t.Fatal("zero limits accepted")
	}
}

// TestProxyEnvironmentIgnored: with HTTP_PROXY pointing at a listener, a
// request still goes straight to its host (a proxy would hide the address
// from the dialer's check).
func TestProxyEnvironmentIgnored(t *testing.T) {
	proxy := newServer(t, hello)
	s := newServer(t, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "direct") })
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
		t.Setenv(k, proxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	g := newGuard(t, Policy{AllowHosts: []string{"svc.example"}}, newResolver().set("svc.example", "127.0.0.1"))
	r, err := g.Fetch(context.Background(), "http://svc.example:"+s.port()+"/", lim)
	if err != nil || string(r.Body) != "direct" || proxy.hits.Load() != 0 {
		t.Fatalf("body %v, err %v, proxy hits %d", r, err, proxy.hits.Load())
	}
}

func TestErrorUnwrap(t *testing.T) {
	cause := fmt.Errorf("dial: %w", context.DeadlineExceeded)
	err := error(&Error{Kind: ErrTimeout, Err: cause})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrRefused) {
		t.Fatal("unwrap")
	}
}
