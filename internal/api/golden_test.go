package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/queue"
)

var update = flag.Bool("update", false, "rewrite golden files")

// transcript records HTTP exchanges with volatile values normalised, for
// comparison with a golden file.
type transcript struct {
	env *testEnv
	buf bytes.Buffer
}

var (
	uuidRe     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	fileKeyRe  = regexp.MustCompile(`/files/[0-9a-f]{32}\.`)
	fileNameRe = regexp.MustCompile(`"[0-9a-f]{32}\.(png|jpeg|webp)"`)
	stampRe    = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`)
	inferRe    = regexp.MustCompile(`"inference_time": [0-9.e-]+`)
)

func (tr *transcript) normalise(s string) string {
	s = strings.ReplaceAll(s, tr.env.base, "<base>")
	s = uuidRe.ReplaceAllString(s, "<request-id>")
	s = fileKeyRe.ReplaceAllString(s, "/files/<file>.")
	s = fileNameRe.ReplaceAllString(s, `"<file>.$1"`)
	s = stampRe.ReplaceAllString(s, `"<timestamp>"`)
	s = inferRe.ReplaceAllString(s, `"inference_time": <seconds>`)
	return s
}

// do performs a request and records it; the response is returned raw.
func (tr *transcript) do(note, method, path, body string) response {
	r := tr.env.do(method, path, body, nil)
	fmt.Fprintf(&tr.buf, "### %s\n%s %s\n", note, method, tr.normalise(path))
	if body != "" {
		fmt.Fprintf(&tr.buf, "%s\n", body)
	}
	fmt.Fprintf(&tr.buf, "--> %d %s", r.status, r.header.Get("Content-Type"))
	if r.header.Get("X-Fal-Request-Id") != "" {
		fmt.Fprintf(&tr.buf, " x-fal-request-id=%s", tr.normalise(r.header.Get("X-Fal-Request-Id")))
	}
	tr.buf.WriteString("\n")
	var pretty bytes.Buffer
	if json.Indent(&pretty, r.body, "", "  ") == nil {
		tr.buf.WriteString(tr.normalise(pretty.String()))
	} else {
		tr.buf.WriteString(tr.normalise(string(r.body)))
	}
	tr.buf.WriteString("\n\n")
	return r
}

func (tr *transcript) check(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, tr.buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/api -run %s -update to create it)", err, t.Name())
	}
	if got := tr.buf.String(); got != string(want) {
		t.Fatalf("transcript differs from %s (rerun with -update if intended):\n%s", path, firstDiff(string(want), got))
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d\nwant: %s\n got: %s", i+1, w, g)
		}
	}
	return "(no difference)"
}

// TestGoldenQueueTranscript drives submit, status, result and cancel
// through every state and compares the bodies with a golden transcript.
func TestGoldenQueueTranscript(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 4)
	tr := &transcript{env: env}

	a := tr.do("submit A (runs first; the engine holds it)", "POST", submitPath,
		`{"prompt":"a red fox in the snow","num_inference_steps":2,"image_size":"square","seed":42}`)
	idA := a.json(t)["request_id"].(string)
	<-env.engine.entered
	env.waitJob(idA, queue.StatusRunning)
	b := tr.do("submit B (waits behind A)", "POST", submitPath,
		`{"prompt":"a cat","image_size":{"width":64,"height":64},"num_images":2,"output_format":"jpeg"}`)
	idB := b.json(t)["request_id"].(string)
	c := tr.do("submit C (waits behind B)", "POST", submitPath, `{"prompt":"café ☕","num_inference_steps":1}`)
	idC := c.json(t)["request_id"].(string)

	tr.do("status of A, running, without logs", "GET", reqPrefix+idA+"/status", "")
	tr.do("status of A with logs=1 (JS)", "GET", reqPrefix+idA+"/status?logs=1", "")
	tr.do("status of C at position 1 with logs=true (Python)", "GET", reqPrefix+idC+"/status?logs=true", "")
	tr.do("result of C before it ran", "GET", reqPrefix+idC, "")
	tr.do("cancel queued B", "PUT", reqPrefix+idB+"/cancel", "")
	tr.do("status of B after cancel", "GET", reqPrefix+idB+"/status?logs=1", "")
	tr.do("status of C moved to position 0", "GET", reqPrefix+idC+"/status", "")
	tr.do("result of cancelled B", "GET", reqPrefix+idB, "")
	tr.do("cancel B again", "PUT", reqPrefix+idB+"/cancel", "")

	env.engine.hold <- struct{}{} // A
	env.waitJob(idA, queue.StatusCompleted)
	<-env.engine.entered
	env.engine.hold <- struct{}{} // C
	env.waitJob(idC, queue.StatusCompleted)

	tr.do("status of completed A with logs", "GET", reqPrefix+idA+"/status?logs=1", "")
	tr.do("result of A", "GET", reqPrefix+idA, "")
	tr.do("result of C via the full endpoint id", "GET", "/queue/fal-ai/flux-2/klein/4b/base/requests/"+idC, "")
	tr.do("cancel completed A", "PUT", reqPrefix+idA+"/cancel", "")
	tr.do("status of an unknown id", "GET", reqPrefix+"00000000-0000-4000-8000-000000000000/status", "")
	tr.do("cancel of an unknown id", "PUT", reqPrefix+"00000000-0000-4000-8000-000000000000/cancel", "")
	tr.do("validation error", "POST", submitPath, `{"prompt":"","num_images":9}`)
	tr.check(t, "queue_transcript.golden")
}
