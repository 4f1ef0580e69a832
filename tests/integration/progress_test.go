package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/redistest"
	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestProgressAcrossProcesses: a job runs on a -role worker process while
// the client talks to a -role api process, both on a private
// redis-server. The /stream answered by the API process shows every
// denoising step and at least one preview image, then the output; a status
// stream with logs, opened on the API process for a queued job, sees every
// step's log line. (Both were in-process only before: a stream on an API
// process showed no progress for a job a worker ran.)
func TestProgressAcrossProcesses(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	redisURL := redistest.Start(t)
	apiPort := testenv.FreePort(t)
	apiBase := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	shared := []string{"-queue", redisURL, "-public-url", apiBase, "-preview-every", "2"}
	dataDir := t.TempDir()
	api := startServer(t, bin, root, dataDir, apiPort, append([]string{"-role", "api"}, shared...)...)
	startServer(t, bin, root, dataDir, testenv.FreePort(t), append([]string{"-role", "worker", "-worker-id", "gpu-a"}, shared...)...)

	const steps = 8
	body := fmt.Sprintf(`{"prompt":"a lighthouse","num_inference_steps":%d,"image_size":{"width":128,"height":128},"seed":5}`, steps)

	// The status stream of a queued job, opened before the job runs.
	code, sub := api.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", body)
	if code != 200 {
		t.Fatalf("submit: %d %v", code, sub)
	}
	var statusLines []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, ev := range sseEvents(t, "GET", sub["status_url"].(string)+"/stream?logs=1", "") {
			var st struct {
				Logs []struct{ Message string } `json:"logs"`
			}
			json.Unmarshal([]byte(ev), &st)
			for _, l := range st.Logs {
				statusLines = append(statusLines, l.Message)
			}
		}
	}()

	// /stream on the API process, for a job the worker runs.
	events := sseEvents(t, "POST", apiBase+"/fal-ai/flux-2/klein/4b/base/stream", body)
	wg.Wait()
	seen := map[int]bool{}
	previews := 0
	for _, ev := range events[:len(events)-1] {
		var p struct {
			Step    int  `json:"step"`
			Partial bool `json:"partial"`
			Images  []struct {
				URL string `json:"url"`
			} `json:"images"`
		}
		if err := json.Unmarshal([]byte(ev), &p); err != nil || !p.Partial {
			t.Fatalf("progress event %q", ev)
		}
		seen[p.Step] = true
		if len(p.Images) > 0 && strings.HasPrefix(p.Images[0].URL, "data:image/jpeg;base64,") {
			previews++
		}
	}
	for s := 1; s <= steps; s++ {
		if !seen[s] {
			t.Errorf("/stream on the API process missed step %d (events: %d)", s, len(events))
		}
	}
	if previews == 0 {
		t.Error("/stream on the API process carried no preview")
	}
	var out struct {
		Images []struct{ URL string } `json:"images"`
		Seed   int64                  `json:"seed"`
	}
	if err := json.Unmarshal([]byte(events[len(events)-1]), &out); err != nil || len(out.Images) != 1 || out.Seed != 5 {
		t.Fatalf("last event is not the output: %s", events[len(events)-1])
	}
	for s := 1; s <= steps; s++ {
		want := fmt.Sprintf("Step %d/%d", s, steps)
		found := false
		for _, l := range statusLines {
			found = found || l == want
		}
		if !found {
			t.Errorf("status stream on the API process lacks %q (lines: %q)", want, statusLines)
		}
	}
	t.Logf("API process relayed %d of %d steps and %d previews of a job run by the worker process", len(seen), steps, previews)
}

// sseEvents makes an authenticated request and returns the data of every
// Server-Sent Event until the server closes the stream.
func sseEvents(t *testing.T, method, url, body string) []string {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return nil
	}
	req.Header.Set("Authorization", "Key "+apiKey)
	client := &http.Client{Timeout: 3 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("%s %s: %d", method, url, resp.StatusCode)
		return nil
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	return events
}
