package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestSlowClientsCannotStarveKeyedOnes runs the server with 256 file
// descriptors (RLIMIT_NOFILE) and opens 260 connections from 127.0.0.1 that
// send a request without a key and then trickle its 1 KB body. A keyed
// client on 127.0.0.2 must still get its sync run and /healthz answered.
// Before the per-address connection cap and the answer-before-body on a
// missing key, the slow connections held every descriptor and both timed
// out.
func TestSlowClientsCannotStarveKeyedOnes(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	// ulimit -n sets the soft and the hard limit, so the Go runtime cannot
	// raise it again at start.
	wrapped := t.TempDir() + "/limited.sh"
	if err := writeExecutable(wrapped, "#!/bin/bash\nulimit -n 256 || exit 3\nexec "+bin+" \"$@\"\n"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, wrapped, root, t.TempDir(), testenv.FreePort(t))
	addr := strings.TrimPrefix(s.base, "http://")

	const attackers = 260
	var wg sync.WaitGroup
	stop := make(chan struct{})
	held := make(chan net.Conn, attackers)
	for i := 0; i < attackers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return
			}
			held <- c
			fmt.Fprintf(c, "POST /fal-ai/flux-2/klein/4b/base HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				"Content-Length: 1024\r\n\r\n{")
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		close(held)
		for c := range held {
			c.Close()
		}
	}()
	time.Sleep(3 * time.Second) // let every slow connection settle in

	victim := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	start := time.Now()
	resp, err := victim.Get(s.base + "/healthz")
	if err != nil {
		t.Fatalf("/healthz from another address after %v: %v\n%s", time.Since(start), err, s.logs.String())
	}
	resp.Body.Close()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", s.base+"/fal-ai/flux-2/klein/4b/base",
		strings.NewReader(`{"prompt":"a fox","num_inference_steps":1,"image_size":{"width":64,"height":64},"sync_mode":true}`))
	req.Header.Set("Authorization", "Key "+apiKey)
	resp, err = victim.Do(req)
	if err != nil {
		t.Fatalf("keyed sync run after %v: %v", time.Since(start), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "data:image/png;base64,") {
		t.Fatalf("keyed sync run: %d %s", resp.StatusCode, body)
	}
	t.Logf("with %d slow unauthenticated connections: /healthz and a keyed 1-step sync run answered in %v",
		attackers, time.Since(start).Round(time.Millisecond))
}
