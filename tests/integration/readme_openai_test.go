package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// readmeOpenAIDoc is the document that shows tests/readme_openai.py.
const readmeOpenAIDoc = "README.md"

// TestReadmeOpenAIPythonExample runs the README's OpenAI Python example
// against the server and checks the image it writes.
func TestReadmeOpenAIPythonExample(t *testing.T) {
	root := testenv.RepoRoot(t)
	python := pythonWithOpenAI(t, root)
	bin := serverBinary(t, root)
	srv := startServer(t, bin, root, t.TempDir(), testenv.FreePort(t))
	script, err := os.ReadFile(filepath.Join(root, "tests", "readme_openai.py"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := strings.ReplaceAll(string(script), "http://127.0.0.1:8080", srv.base)
	out := runTool(t, dir, []string{"OPENAI_API_KEY=" + apiKey}, python, "-c", body)
	if strings.TrimSpace(out) != "512x512 42" {
		t.Errorf("example printed %q", out)
	}
	png, err := os.ReadFile(filepath.Join(dir, "fox.png"))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 24 || string(png[:8]) != "\x89PNG\r\n\x1a\n" || be32(png[16:]) != 512 || be32(png[20:]) != 512 {
		t.Errorf("fox.png is not a 512x512 PNG (%d bytes)", len(png))
	}
}

func be32(b []byte) int { return int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]) }

// TestReadmeShowsTheTestedOpenAIExample keeps the document honest: every
// line of tests/readme_openai.py appears in it, in order.
func TestReadmeShowsTheTestedOpenAIExample(t *testing.T) {
	root := testenv.RepoRoot(t)
	script, err := os.ReadFile(filepath.Join(root, "tests", "readme_openai.py"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, readmeOpenAIDoc))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	next := 0
	for _, l := range strings.Split(strings.TrimRight(string(script), "\n"), "\n") {
		found := false
		for ; next < len(lines); next++ {
			if lines[next] == l {
				found = true
				next++
				break
			}
		}
		if !found {
			t.Fatalf("%s lacks (in order) the tested line:\n%s", readmeOpenAIDoc, l)
		}
	}
}
