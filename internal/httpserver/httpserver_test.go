package httpserver

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestLimitPerIP(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitPerIP(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := dial("127.0.0.1"), dial("127.0.0.1")
	_, _ = a, b
	first, second := <-accepted, <-accepted
	// The third from the same address is answered 429 and closed.
	c := dial("127.0.0.1")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v %v", resp, err)
	}
	// Another address is not affected.
	dial("127.0.0.2")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("connection from another address refused")
	}
	if n := Open(ln, netip.MustParseAddr("127.0.0.1")); n != 2 {
		t.Fatalf("open %d, want 2", n)
	}
	// Closing one frees a slot.
	first.Close()
	dial("127.0.0.1")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("freed slot not reused")
	}
	second.Close()
}
