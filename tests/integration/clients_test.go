package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestRealClients drives the official clients against one server: the npm
// @fal-ai/client@1.10.1 (subscribe with logs and onQueueUpdate, status
// stream, submit/status/result, cancel, stream, run, storage.upload simple
// and multipart, validation errors) and the PyPI fal-client==1.0.3 (submit/status/result,
// subscribe, cancel, run, stream, validation errors).
func TestRealClients(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	// Two variants in one process: 4B Base and the distilled 4B.
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t),
		"-models", modelDir(root)+","+filepath.Join(root, "models", "tiny-4b-distilled"))
	clients := filepath.Join(root, "tests", "clients")
	env := []string{"KLEINSERVE_URL=" + srv.base, "KLEINSERVE_KEY=" + apiKey,
		"KLEINSERVE_LORA_FILE=" + filepath.Join(root, "testdata", "reference", "lora", "diffusers_r4.safetensors")}

	t.Run("js", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			testenv.SkipUnlessRequired(t, "node not found in PATH")
		}
		if _, err := os.Stat(filepath.Join(clients, "node_modules", "@fal-ai", "client", "package.json")); err != nil {
			testenv.SkipUnlessRequired(t, "@fal-ai/client not installed: run `npm ci --prefix tests/clients`")
		}
		out := runTool(t, clients, env, node, "js_client.mjs")
		t.Logf("js client:\n%s", out)
		summary := lastJSONLine(t, out)
		checks, _ := summary["checks"].([]any)
		if summary["ok"] != true || len(checks) != 15 {
			t.Fatalf("js summary %v", summary)
		}
	})

	t.Run("python", func(t *testing.T) {
		python := pythonWithFalClient(t, root)
		out := runTool(t, clients, env, python, "py_client.py")
		t.Logf("python client:\n%s", out)
		summary := lastJSONLine(t, out)
		checks, _ := summary["checks"].([]any)
		if summary["ok"] != true || len(checks) != 11 {
			t.Fatalf("python summary %v", summary)
		}
	})

	if t.Failed() {
		t.Logf("server log:\n%s", srv.logs.String())
	}
}

// pythonWithFalClient finds a Python that imports fal_client 1.0.3.
func pythonWithFalClient(t *testing.T, root string) string {
	t.Helper()
	candidates := []string{os.Getenv("KLEINSERVE_TEST_PYTHON"), filepath.Join(root, ".venv", "bin", "python"), "python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		out, err := exec.Command(c, "-c", "import importlib.metadata as m, fal_client; print(m.version('fal-client'))").Output()
		if err == nil && strings.TrimSpace(string(out)) == "1.0.3" {
			return c
		}
	}
	testenv.SkipUnlessRequired(t, "fal-client==1.0.3 not installed: run `python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt`")
	return ""
}

// TestReadmeCurlExamples runs tests/readme_curl.sh (the README's curl
// examples) against the server and checks what each example printed.
func TestReadmeCurlExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "sed", "grep"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipUnlessRequired(t, "%s not found in PATH", tool)
		}
	}
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t))
	script, err := os.ReadFile(filepath.Join(root, "tests", "readme_curl.sh"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.ReplaceAll(string(script), "http://127.0.0.1:8080", srv.base)
	out := runTool(t, root, []string{"FAL_KEY=" + apiKey,
		"LORA_FILE=" + filepath.Join(root, "testdata", "reference", "lora", "diffusers_r4.safetensors")}, "bash", "-c", body)

	sections := map[string]string{}
	var name string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# --- ") {
			name = strings.TrimPrefix(line, "# --- ")
			continue
		}
		sections[name] += line + "\n"
	}
	expect := map[string][]string{
		"run":    {`"images":[{"url":"` + srv.base + `/files/`, `"seed":42`, `"prompt":"a red fox in the snow"`},
		"submit": {`"status":"IN_QUEUE"`, `"status_url":"` + srv.base + `/queue/fal-ai/flux-2/requests/`},
		"status": {`"status":"COMPLETED"`, `"message":"Step 4/4"`, `"inference_time":`},
		"result": {`"prompt":"a lighthouse at dusk, oil painting"`, `"has_nsfw_concepts":[`},
		"cancel": {`"status":"ALREADY_COMPLETED"`},
		"stream": {`data: {"step":1,`, `"partial":true`, `"prompt":"a bowl of ramen"`},
		"upload": {`"upload_url":"` + srv.base + `/storage/upload/`, "Hello, World!"},
		"edit":   {`"width":512,"height":512`, `"prompt":"the same fox at night"`},
		"lora":   {`"images":[{"url":"` + srv.base + `/files/`, `"prompt":"a red fox in the snow"`},
		"health": {`"status":"ready"`, "kleinserve_images_generated_total 6"},
	}
	for section, wants := range expect {
		for _, want := range wants {
			if !strings.Contains(sections[section], want) {
				t.Errorf("section %q lacks %q:\n%s", section, want, sections[section])
			}
		}
	}
	// The stream's last event is the output, not a partial one.
	events := regexp.MustCompile(`(?m)^data: (.*)$`).FindAllStringSubmatch(sections["stream"], -1)
	if len(events) < 2 || strings.Contains(events[len(events)-1][1], `"partial"`) {
		t.Errorf("stream events: %d, last %q", len(events), events[len(events)-1][1])
	}
	if t.Failed() {
		t.Logf("script output:\n%s\nserver log:\n%s", out, srv.logs.String())
	}
}
