// Package redistest runs a private redis-server (the Debian package
// redis-server) for tests of the Redis queue and of processes sharing it:
// on a free loopback port, in a temporary directory, with the durable
// settings the operator's page asks for (appendonly yes, appendfsync
// always), stopped when the test ends. Without redis-server the test is
// skipped, or fails under testenv.RequireEnv.
package redistest

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// Start runs redis-server and returns its URL, redis://127.0.0.1:PORT/0.
func Start(t testing.TB) string {
	t.Helper()
	bin := testenv.RequireTool(t, "redis-server")
	port := testenv.FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir(),
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no")
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for !answersPing(addr) {
		select {
		case <-done:
			t.Fatalf("redis-server exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer PING in 10s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "redis://" + addr + "/0"
}

// answersPing sends an inline PING and expects +PONG.
func answersPing(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}
