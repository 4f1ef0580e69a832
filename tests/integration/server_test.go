// Package integration runs the real server binary (./cmd/server, with the
// engine newEngine returns) against real clients: the npm @fal-ai/client,
// the PyPI fal-client, the README's curl examples, and a SIGKILL crash.
//
// Environment:
//
//	KLEINSERVE_SERVER_BIN   use this server binary instead of building ./cmd/server
//	KLEINSERVE_TEST_MODELS  model directory passed as -models (default models/tiny)
//	KLEINSERVE_TEST_PYTHON  Python with fal-client installed (default .venv/bin/python)
//
// Tests skip, saying why, when the model or a client is not installed:
//
//	npm ci --prefix tests/clients
//	python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

const apiKey = "integration-test-key"

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// serverBinary returns KLEINSERVE_SERVER_BIN or builds ./cmd/server once.
// Without a custom binary, the test is skipped when the model is absent.
func serverBinary(t *testing.T, root string) string {
	t.Helper()
	if bin := os.Getenv("KLEINSERVE_SERVER_BIN"); bin != "" {
		return bin
	}
	if _, err := os.Stat(filepath.Join(modelDir(root), "model.json")); err != nil {
		testenv.SkipUnlessRequired(t, "no model at %s (set KLEINSERVE_TEST_MODELS or KLEINSERVE_SERVER_BIN)", modelDir(root))
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kleinserve-it-*")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "server")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/server")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func modelDir(root string) string {
	if d := os.Getenv("KLEINSERVE_TEST_MODELS"); d != "" {
		return d
	}
	return filepath.Join(root, "models", "tiny")
}

// server is one running server process.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	logs *testenv.SyncBuffer
	done chan struct{}
}

// startServer runs the binary on a loopback port with a data directory and
// waits until /readyz answers 200.
func startServer(t *testing.T, bin, root, dataDir string, port int, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "-addr", "127.0.0.1:" + strconv.Itoa(port), "-data", dataDir,
		"-models", modelDir(root), "-keys", apiKey, "-workers", "1", "-shutdown-grace", "5s"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-s.done:
			t.Fatalf("server exited during start-up:\n%s", logs.String())
		default:
		}
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 3 minutes:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; a process that does not exit is killed.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("server ignored SIGTERM for 20s:\n%s", s.logs.String())
	}
}

// kill sends SIGKILL: no cleanup of any kind runs in the server.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// call does an authenticated JSON request and decodes a JSON object answer.
func (s *server) call(method, url, body string) (int, map[string]any) {
	s.t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = s.base + url
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		s.t.Fatalf("%s %s: %d non-JSON body %q", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

// runTool runs a client program with the server's address and key.
func runTool(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// lastJSONLine decodes a client's summary line.
func lastJSONLine(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("no JSON summary line:\n%s", out)
	}
	return m
}

// writeExecutable writes a script with mode 0755.
func writeExecutable(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o755)
}
