// Package httpserver builds the HTTP server around the API handler with the
// limits that keep one client from starving the others: header, idle and
// shutdown timeouts, and a cap on concurrent connections per client
// address. Body-read and response-write deadlines are per request and live
// in the API's middleware, because they depend on the route (uploads and
// event streams last long; a stalled client must not).
package httpserver

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Timeouts of the server itself.
const (
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 64 << 10
)

// New returns the server for handler.
func New(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// LimitPerIP wraps ln so that each remote IP holds at most perIP open
// connections; perIP <= 0 means no limit. A connection over the limit is
// answered with a plain 429 and closed at once, so it holds its file
// descriptor for microseconds rather than for the header timeout.
func LimitPerIP(ln net.Listener, perIP int) net.Listener {
	if perIP <= 0 {
		return ln
	}
	return &perIPListener{Listener: ln, limit: perIP, open: map[netip.Addr]int{}}
}

type perIPListener struct {
	net.Listener
	limit int
	mu    sync.Mutex
	open  map[netip.Addr]int
}

// tooMany is written to a refused connection: a complete HTTP/1.1 answer,
// so a client sees why instead of a reset.
const tooMany = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nConnection: close\r\n" +
	"Retry-After: 5\r\nContent-Length: 84\r\n\r\n" +
	`{"detail":"Too many open connections from this address","error_type":"rate_limited"}`

func (l *perIPListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		n := l.open[ip]
		if n >= l.limit {
			l.mu.Unlock()
			refuse(c)
			continue
		}
		l.open[ip] = n + 1
		l.mu.Unlock()
		return &trackedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *perIPListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip] <= 1 {
		delete(l.open, ip)
	} else {
		l.open[ip]--
	}
}

// Open is the number of connections ip holds (tests and metrics).
func Open(ln net.Listener, ip netip.Addr) int {
	l, ok := ln.(*perIPListener)
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip]
}

func refuse(c net.Conn) {
	// Never block the accept loop on a client that does not read.
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	w := bufio.NewWriterSize(c, len(tooMany))
	_, _ = w.WriteString(tooMany)
	_ = w.Flush()
	_ = c.Close()
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
