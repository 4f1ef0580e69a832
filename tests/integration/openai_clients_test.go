package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// openaiPyVersion is the PyPI openai release tests/clients/requirements.txt pins.
const openaiPyVersion = "3.57.0"

// TestOpenAIClients drives the official OpenAI clients against the
// server's /v1 API: npm openai@6.49.0 and PyPI openai==3.57.0 generate with
// url and b64_json, n=2, a size and extra body fields, stream partial
// images, edit with two images (skipped, naming the endpoint, while the
// edit endpoint is not served), and get the errors they raise.
func TestOpenAIClients(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t))
	clients := filepath.Join(root, "tests", "clients")
	env := []string{"KLEINSERVE_URL=" + srv.base, "KLEINSERVE_KEY=" + apiKey}

	t.Run("js", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			testenv.SkipUnlessRequired(t, "node not found in PATH")
		}
		if _, err := os.Stat(filepath.Join(clients, "node_modules", "openai", "package.json")); err != nil {
			testenv.SkipUnlessRequired(t, "openai not installed: run `npm ci --prefix tests/clients`")
		}
		checkOpenAISummary(t, runTool(t, clients, env, node, "openai_js.mjs"), 5)
	})

	t.Run("python", func(t *testing.T) {
		python := pythonWithOpenAI(t, root)
		checkOpenAISummary(t, runTool(t, clients, env, python, "openai_py.py"), 5)
	})

	if t.Failed() {
		t.Logf("server log:\n%s", srv.logs.String())
	}
}

// checkOpenAISummary checks a client's summary line: every check passed,
// and each skipped one becomes a skipped subtest with its reason.
func checkOpenAISummary(t *testing.T, out string, wantChecks int) {
	t.Helper()
	t.Logf("client:\n%s", out)
	summary := lastJSONLine(t, out)
	checks, _ := summary["checks"].([]any)
	skipped, _ := summary["skipped"].([]any)
	if summary["ok"] != true || len(checks)+len(skipped) != wantChecks+1 || len(checks) < wantChecks {
		t.Fatalf("summary %v", summary)
	}
	for _, s := range skipped {
		s := s.(map[string]any)
		t.Run(s["name"].(string), func(t *testing.T) { t.Skip(s["reason"]) })
	}
}

// pythonWithOpenAI finds a Python that imports the pinned openai.
func pythonWithOpenAI(t *testing.T, root string) string {
	t.Helper()
	candidates := []string{os.Getenv("KLEINSERVE_TEST_PYTHON"), filepath.Join(root, ".cache", "venv-clients", "bin", "python"),
		filepath.Join(root, ".venv", "bin", "python"), "python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		out, err := exec.Command(c, "-c", "import importlib.metadata as m, openai; print(m.version('openai'))").Output()
		if err == nil && strings.TrimSpace(string(out)) == openaiPyVersion {
			return c
		}
	}
	testenv.SkipUnlessRequired(t, "openai==%s not installed: run `python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt`", openaiPyVersion)
	return ""
}
