package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCrashRecovery kills the server with SIGKILL while one job runs and
// three wait, restarts it on the same data directory and port, and checks
// that all four complete and their results are fetched by the original ids.
func TestCrashRecovery(t *testing.T) {
	root := repoRoot(t)
	bin := serverBinary(t, root)
	dataDir := t.TempDir()
	port := freePort(t)
	srv := startServer(t, bin, root, dataDir, port)

	// The first job is long (50 steps), so the kill lands while it runs.
	bodies := []string{
		`{"prompt":"a slow lighthouse","num_inference_steps":50,"image_size":{"width":512,"height":512},"seed":1}`,
		`{"prompt":"waiting one","num_inference_steps":2,"image_size":{"width":64,"height":64},"seed":2}`,
		`{"prompt":"waiting two","num_inference_steps":2,"image_size":{"width":64,"height":64},"seed":3}`,
		`{"prompt":"waiting three","num_inference_steps":2,"image_size":{"width":64,"height":64},"seed":4}`,
	}
	var ids, statusURLs, responseURLs []string
	for _, b := range bodies {
		code, sub := srv.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", b)
		if code != 200 {
			t.Fatalf("submit: %d %v", code, sub)
		}
		ids = append(ids, sub["request_id"].(string))
		statusURLs = append(statusURLs, sub["status_url"].(string))
		responseURLs = append(responseURLs, sub["response_url"].(string))
	}

	// Wait until the first job has finished at least one denoising step.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, st := srv.call("GET", statusURLs[0]+"?logs=1", "")
		if st["status"] == "IN_PROGRESS" && strings.Contains(fmt.Sprint(st["logs"]), "Step ") {
			break
		}
		if st["status"] == "COMPLETED" {
			t.Fatalf("the long job finished before it could be interrupted: %v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("first job never started: %v\n%s", st, srv.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, want := range []float64{0, 1, 2} {
		_, st := srv.call("GET", statusURLs[i+1], "")
		if st["status"] != "IN_QUEUE" || st["queue_position"] != want {
			t.Fatalf("job %d before the kill: %v", i+1, st)
		}
	}
	srv.kill()

	srv2 := startServer(t, bin, root, dataDir, port)
	if !strings.Contains(srv2.logs.String(), `"requeued":1`) {
		t.Fatalf("restart did not requeue the interrupted job:\n%s", srv2.logs.String())
	}
	for i, id := range ids {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			code, st := srv2.call("GET", statusURLs[i], "")
			if code == 200 && st["status"] == "COMPLETED" {
				if st["error"] != nil {
					t.Fatalf("job %d failed after restart: %v", i, st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d (%s) not completed after restart: %d %v\n%s", i, id, code, st, srv2.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, out := srv2.call("GET", responseURLs[i], "")
		images, _ := out["images"].([]any)
		if code != 200 || len(images) != 1 || out["seed"] != float64(i+1) {
			t.Fatalf("result %d: %d %v", i, code, out)
		}
		url := images[0].(map[string]any)["url"].(string)
		if !strings.HasPrefix(url, srv2.base+"/files/") {
			t.Fatalf("image url %s", url)
		}
	}
	// The interrupted job's log records the restart.
	_, st := srv2.call("GET", statusURLs[0]+"?logs=true", "")
	if !strings.Contains(fmt.Sprint(st["logs"]), "Server restarted while this request was running; requeued") {
		t.Fatalf("no requeue line in the log: %v", st["logs"])
	}
}
