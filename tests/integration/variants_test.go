package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// rssMiB is a process's resident set size in MiB (Linux /proc).
func rssMiB(t *testing.T, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestTwoVariantsOneProcess serves the 4B Base and the distilled 4B from
// one process: each answers on its own fal endpoints with its own schema
// (the distilled one runs 4 steps by default and takes no guidance), both
// are listed in /v1/models, and the graphs the two share byte for byte
// (the Qwen3 text encoder, the VAE, the safety checker) are loaded once.
func TestTwoVariantsOneProcess(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	distilledDir := filepath.Join(root, "models", "tiny-4b-distilled")
	one := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t))
	rssOne := rssMiB(t, one.cmd.Process.Pid)
	one.stop()
	alone := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t), "-models", distilledDir)
	rssDistilled := rssMiB(t, alone.cmd.Process.Pid)
	alone.stop()
	s := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t), "-models", modelDir(root)+","+distilledDir)
	rssTwo := rssMiB(t, s.cmd.Process.Pid)

	var loaded struct {
		Models, Sessions int
	}
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, "models loaded") {
			json.Unmarshal([]byte(line), &loaded)
		}
	}
	// 5 graphs each; only the transformers differ.
	if loaded.Models != 2 || loaded.Sessions != 6 {
		t.Fatalf("loaded %d models with %d sessions, want 2 and 6:\n%s", loaded.Models, loaded.Sessions, s.logs.String())
	}

	code, out := s.call("POST", "/fal-ai/flux-2/klein/4b", `{"prompt":"a fox","image_size":{"width":64,"height":64},"sync_mode":true}`)
	if code != 200 {
		t.Fatalf("distilled: %d %v", code, out)
	}
	code, out = s.call("POST", "/fal-ai/flux-2/klein/4b/base", `{"prompt":"a fox","image_size":{"width":64,"height":64},"num_inference_steps":2,"sync_mode":true}`)
	if code != 200 {
		t.Fatalf("base: %d %v", code, out)
	}
	// The distilled endpoints exist (edit and LoRA too); its schema has no
	// guidance, which, like any unknown field, is ignored.
	code, out = s.call("POST", "/queue/fal-ai/flux-2/klein/4b/edit/lora", `{"prompt":"x","image_urls":["data:,"],"guidance_scale":"not even a number"}`)
	if code != 200 {
		t.Fatalf("distilled edit/lora submit: %d %v", code, out)
	}
	code, models := s.call("GET", "/v1/models", "")
	raw, _ := json.Marshal(models)
	if code != 200 || !strings.Contains(string(raw), `"fal-ai/flux-2/klein/4b"`) || !strings.Contains(string(raw), `"fal-ai/flux-2/klein/4b/base"`) {
		t.Fatalf("/v1/models: %d %s", code, raw)
	}
	t.Logf("resident memory at ready: 4B Base alone %.0f MiB, the distilled 4B alone %.0f MiB, both in one process %.0f MiB "+
		"(6 graph sessions instead of 10; the second model adds %.0f MiB)", rssOne, rssDistilled, rssTwo, rssTwo-rssOne)
}
