package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/redistest"
	"github.com/kleinserve/kleinserve/internal/storage/storagetest"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestScaleOutOnRedis checks the many-hosts setup (docs/operations.md) with
// real processes: a
// private redis-server, one API process (-role api) and two worker
// processes (-role worker) sharing it and one files store. Ten short
// jobs warm both workers up; then a long job starts, and the worker running
// it is killed with SIGKILL mid-job while 39 more short jobs are submitted
// around the kill. The long job is redelivered to the other worker after
// the lease and completes there; every one of the 50 jobs completes exactly
// once: one "completed" outcome across the workers' logs, one run in its
// own log (two for the redelivered job, the first cut off), its own seed,
// and an image the API process serves.
//
// It runs twice: with the files store in one shared data directory (one
// host, or a shared filesystem), and with every process on its own data
// directory and an S3-compatible store (an in-process fake over plain
// http, -s3-insecure), as on separate hosts.
func TestScaleOutOnRedis(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	t.Run("shared-directory", func(t *testing.T) {
		dataDir := t.TempDir()
		scaleOut(t, bin, root, func() string { return dataDir }, nil)
	})
	t.Run("s3", func(t *testing.T) {
		s3 := storagetest.New(t, "kleinserve")
		scaleOut(t, bin, root, t.TempDir, []string{"-storage", "s3://kleinserve/scale-out",
			"-s3-endpoint", s3.HTTPEndpoint, "-s3-insecure", "-s3-region", storagetest.Region,
			"-s3-access-key", storagetest.AccessKey, "-s3-secret-key", storagetest.SecretKey})
	})
}

// scaleOut runs the scenario; dataDir gives each process its -data
// directory and storage holds the files-store flags.
func scaleOut(t *testing.T, bin, root string, dataDir func() string, storage []string) {
	redisURL := redistest.Start(t)
	apiPort := testenv.FreePort(t)
	apiBase := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	shared := append([]string{"-queue", redisURL, "-lease", "2s", "-public-url", apiBase}, storage...)

	api := startServer(t, bin, root, dataDir(), apiPort, append([]string{"-role", "api"}, shared...)...)
	workers := map[string]*server{}
	for _, name := range []string{"gpu-a", "gpu-b"} {
		workers[name] = startServer(t, bin, root, dataDir(), testenv.FreePort(t),
			append([]string{"-role", "worker", "-worker-id", name}, shared...)...)
	}
	// A worker answers only health and metrics.
	for name, w := range workers {
		if code, body := w.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", `{"prompt":"x"}`); code != 404 {
			t.Fatalf("worker %s accepted an API request: %d %v", name, code, body)
		}
	}

	const endpoint = "/queue/fal-ai/flux-2/klein/4b/base"
	type job struct{ id, statusURL, responseURL string }
	submit := func(body string) job {
		t.Helper()
		code, sub := api.call("POST", endpoint, body)
		if code != 200 {
			t.Fatalf("submit: %d %v", code, sub)
		}
		return job{sub["request_id"].(string), sub["status_url"].(string), sub["response_url"].(string)}
	}

	short := func(seed int) string {
		return fmt.Sprintf(`{"prompt":"short job %d","num_inference_steps":2,`+
			`"image_size":{"width":64,"height":64},"seed":%d,"enable_safety_checker":false}`, seed, seed)
	}
	jobs := make([]job, 50) // jobs[i] has seed i+1
	// Ten short jobs warm both workers up and show both taking work.
	for seed := 2; seed <= 11; seed++ {
		jobs[seed-1] = submit(short(seed))
	}
	for seed := 2; seed <= 11; seed++ {
		waitCompleted(t, api, jobs[seed-1].statusURL, workers["gpu-a"])
	}
	// The long job (seed 1): one of the two idle workers takes it.
	jobs[0] = submit(`{"prompt":"a slow lighthouse","num_inference_steps":50,` +
		`"image_size":{"width":512,"height":512},"seed":1,"enable_safety_checker":false}`)
	waitRunningStep(t, api, jobs[0].statusURL)
	victimName := runningWorker(t, api, jobs[0].statusURL)
	victim, survivor := workers[victimName], workers[otherWorker(victimName)]

	// Short jobs go in while the victim still runs the long one, and after
	// the kill.
	for seed := 12; seed <= 30; seed++ {
		jobs[seed-1] = submit(short(seed))
	}
	if _, st := api.call("GET", jobs[0].statusURL, ""); st["status"] != "IN_PROGRESS" {
		t.Fatalf("the long job is no longer running before the kill: %v", st)
	}
	victim.kill()
	killedAt := time.Now()
	for seed := 31; seed <= 50; seed++ {
		jobs[seed-1] = submit(short(seed))
	}

	// Every job completes, with its own seed and an image the API serves
	// from the shared files store.
	var longDone time.Time
	for i, j := range jobs {
		st := waitCompleted(t, api, j.statusURL, survivor)
		if i == 0 {
			longDone = time.Now()
		}
		if st["error"] != nil {
			t.Fatalf("job %d (%s) failed: %v", i+1, j.id, st)
		}
		code, out := api.call("GET", j.responseURL, "")
		images, _ := out["images"].([]any)
		if code != 200 || len(images) != 1 || out["seed"] != float64(i+1) {
			t.Fatalf("result of job %d: %d %v", i+1, code, out)
		}
		url := images[0].(map[string]any)["url"].(string)
		if !strings.HasPrefix(url, apiBase+"/files/") {
			t.Fatalf("job %d: image url %s is not served by the API process", i+1, url)
		}
		if i == 0 || i == len(jobs)-1 {
			fetchPNG(t, url)
		}
	}

	// Exactly once. Per job log: one run, except the redelivered job, which
	// records the dead worker, the takeover and a second attempt.
	for i, j := range jobs {
		_, st := api.call("GET", j.statusURL+"?logs=1", "")
		logs := logMessages(st)
		runs := countPrefix(logs, "Running on worker ")
		if i == 0 {
			if runs != 2 || !containsLine(logs, "stopped responding while running this request; redelivered") ||
				!containsLine(logs, "Running on worker "+otherWorker(victimName)) || !containsLine(logs, "(attempt 2)") {
				t.Fatalf("redelivered job's log: %q", logs)
			}
			continue
		}
		if runs != 1 {
			t.Fatalf("job %d ran %d times: %q", i+1, runs, logs)
		}
	}
	// Per worker log: one "completed" outcome per job across both workers,
	// the long job's on the survivor.
	completedBy := map[string][]string{}
	for name, w := range workers {
		for _, id := range completedIDs(t, w.logs.String()) {
			completedBy[id] = append(completedBy[id], name)
		}
	}
	for i, j := range jobs {
		if got := completedBy[j.id]; len(got) != 1 {
			t.Fatalf("job %d (%s) completed %d times: by %v", i+1, j.id, len(got), got)
		}
	}
	if len(completedBy) != len(jobs) {
		t.Fatalf("%d completions for %d jobs", len(completedBy), len(jobs))
	}
	if by := completedBy[jobs[0].id][0]; by == victimName {
		t.Fatalf("the killed worker %s is recorded as completing the long job", by)
	}
	// The survivor's images counter agrees with its log.
	survivorDone := 0
	for _, by := range completedBy {
		if workers[by[0]] == survivor {
			survivorDone++
		}
	}
	if got := metricValue(t, survivor.base+"/metrics", "kleinserve_images_generated_total"); got != float64(survivorDone) {
		t.Fatalf("survivor's kleinserve_images_generated_total = %v, its log shows %d completions", got, survivorDone)
	}
	t.Logf("50 jobs: %d completed by the survivor (%s), %d by the killed worker (%s) before the kill; "+
		"the long job was redelivered and completed %.1fs after the kill (lease 2s)",
		survivorDone, otherWorker(victimName), len(jobs)-survivorDone, victimName, longDone.Sub(killedAt).Seconds())
}

func otherWorker(name string) string {
	if name == "gpu-a" {
		return "gpu-b"
	}
	return "gpu-a"
}

// runningWorker reads which worker process (by -worker-id) runs a job.
func runningWorker(t *testing.T, api *server, statusURL string) string {
	t.Helper()
	_, st := api.call("GET", statusURL+"?logs=1", "")
	for _, l := range logMessages(st) {
		for _, name := range []string{"gpu-a", "gpu-b"} {
			if strings.HasPrefix(l, "Running on worker "+name+"-") {
				return name
			}
		}
	}
	t.Fatalf("no worker named in the job log: %v", st)
	return ""
}

// waitCompleted polls a status URL until COMPLETED (3 minutes at most).
func waitCompleted(t *testing.T, api *server, statusURL string, worker *server) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, st := api.call("GET", statusURL, "")
		if code == 200 && st["status"] == "COMPLETED" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not completed after 3 minutes: %d %v\nworker log:\n%s", code, st, worker.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logMessages(status map[string]any) []string {
	entries, _ := status["logs"].([]any)
	var out []string
	for _, e := range entries {
		if m, ok := e.(map[string]any); ok {
			msg, _ := m["message"].(string)
			out = append(out, msg)
		}
	}
	return out
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func containsLine(lines []string, part string) bool {
	for _, l := range lines {
		if strings.Contains(l, part) {
			return true
		}
	}
	return false
}

// completedIDs returns the request ids of a process's "request finished"
// log lines with outcome completed (zerolog JSON, one object per line).
func completedIDs(t *testing.T, logs string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e struct {
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
			Outcome   string `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			continue // a line cut off by SIGKILL
		}
		if e.Message == "request finished" && e.Outcome == "completed" {
			ids = append(ids, e.RequestID)
		}
	}
	return ids
}

// fetchPNG downloads an image URL and checks the PNG signature.
func fetchPNG(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 8)
	if _, err := io.ReadFull(resp.Body, head); err != nil || resp.StatusCode != 200 || string(head) != "\x89PNG\r\n\x1a\n" {
		t.Fatalf("GET %s: %d %q %v", url, resp.StatusCode, head, err)
	}
}

// metricValue scrapes one unlabelled sample from a Prometheus endpoint.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == name {
			v, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("%s not in %s", name, url)
	return 0
}
