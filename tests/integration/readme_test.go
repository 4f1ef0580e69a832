package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestReadmeShowsTheTestedCurlExamples keeps the README honest: every
// command line of tests/readme_curl.sh (which TestReadmeCurlExamples runs
// against a live server) appears in README.md, in the same order. Only the
// script's test glue (the header, "# ---" markers and bare echo lines) is
// exempt.
func TestReadmeShowsTheTestedCurlExamples(t *testing.T) {
	root := testenv.RepoRoot(t)
	script, err := os.ReadFile(filepath.Join(root, "tests", "readme_curl.sh"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(readme), "\n")
	next := 0
	started := false
	for _, l := range strings.Split(string(script), "\n") {
		switch {
		case strings.HasPrefix(l, `echo "# --- `):
			started = true
			continue
		case !started && !strings.HasPrefix(l, "export "), strings.TrimSpace(l) == "", strings.TrimSpace(l) == "echo":
			continue
		}
		found := false
		for ; next < len(lines); next++ {
			if lines[next] == l {
				found = true
				next++
				break
			}
		}
		if !found {
			t.Fatalf("README.md lacks (in order) the tested line:\n%s", l)
		}
	}
}
