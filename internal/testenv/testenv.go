// Package testenv holds what the tests that run real programs share: the
// repository root, free loopback ports, required external tools, and a
// buffer for a child process's output. An external tool that is missing
// skips the test, or fails it when RequireEnv is set (make test and CI set
// it), so a green run there means every such test ran.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RequireEnv turns a missing tool, client or model into a failure.
const RequireEnv = "KLEINSERVE_REQUIRE_CLIENTS"

// RepoRoot finds the module root (the directory holding go.mod) above the
// test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// SkipUnlessRequired skips the test, saying why, unless RequireEnv is set;
// then it fails the test.
func SkipUnlessRequired(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("required by "+RequireEnv+": "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireTool returns the path of an external program (installed by
// scripts/install_test_tools.sh), or skips or fails the test without it.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipUnlessRequired(t, "%s not installed (scripts/install_test_tools.sh)", name)
	}
	return p
}

// SyncBuffer collects a child process's stdout and stderr; it is safe to
// read while the process writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
