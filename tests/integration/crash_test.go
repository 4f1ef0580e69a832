package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/testenv"
)

// TestCrashRecovery kills the server with SIGKILL while one job runs and
// three wait, restarts it on the same data directory and port, and checks
// that all four complete and their results are fetched by the original ids.
func TestCrashRecovery(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	dataDir := t.TempDir()
	port := testenv.FreePort(t)
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
	waitRunningStep(t, srv, statusURLs[0])
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

// TestGracefulShutdown sends SIGTERM while a job runs: with a grace period
// the job finishes before the process exits; without one it is interrupted,
// stays durable, and completes after the restart.
func TestGracefulShutdown(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	slow := `{"prompt":"a slow lighthouse","num_inference_steps":50,"image_size":{"width":512,"height":512}}`

	for _, tc := range []struct {
		grace       string
		interrupted bool
	}{{"2m", false}, {"0s", true}} {
		t.Run("grace="+tc.grace, func(t *testing.T) {
			dataDir, port := t.TempDir(), testenv.FreePort(t)
			srv := startServer(t, bin, root, dataDir, port, "-shutdown-grace", tc.grace)
			code, sub := srv.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", slow)
			if code != 200 {
				t.Fatalf("submit: %d %v", code, sub)
			}
			statusURL := sub["status_url"].(string)
			waitRunningStep(t, srv, statusURL)
			srv.stop() // SIGTERM, waits for the exit
			if st := srv.cmd.ProcessState; st == nil || !st.Success() {
				t.Fatalf("unclean exit %v:\n%s", st, srv.logs.String())
			}
			if got := strings.Contains(srv.logs.String(), "interrupting running jobs"); got != tc.interrupted {
				t.Fatalf("interrupted=%v, want %v:\n%s", got, tc.interrupted, srv.logs.String())
			}

			srv2 := startServer(t, bin, root, dataDir, port)
			deadline := time.Now().Add(3 * time.Minute)
			for {
				_, st := srv2.call("GET", statusURL+"?logs=1", "")
				if st["status"] == "COMPLETED" {
					if st["error"] != nil {
						t.Fatalf("job failed: %v", st)
					}
					requeued := strings.Contains(fmt.Sprint(st["logs"]), "Interrupted by server shutdown; requeued")
					if requeued != tc.interrupted {
						t.Fatalf("requeue line present=%v, want %v: %v", requeued, tc.interrupted, st["logs"])
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("job not completed after restart: %v\n%s", st, srv2.logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// waitRunningStep waits until a job reports its first denoising step.
func waitRunningStep(t *testing.T, srv *server, statusURL string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, st := srv.call("GET", statusURL+"?logs=1", "")
		if st["status"] == "IN_PROGRESS" && strings.Contains(fmt.Sprint(st["logs"]), "Step ") {
			return
		}
		if st["status"] == "COMPLETED" || time.Now().After(deadline) {
			t.Fatalf("job did not start or finished too early: %v\n%s", st, srv.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCrashLoopingRequestEnds kills the server with SIGKILL three times
// while the same request runs. After the first kill it runs again first;
// after the second, a request submitted after it runs before it; after the
// third (two retries by default) it fails with a stored error and never
// runs again.
func TestCrashLoopingRequestEnds(t *testing.T) {
	root := testenv.RepoRoot(t)
	bin := serverBinary(t, root)
	dataDir := t.TempDir()
	port := testenv.FreePort(t)
	srv := startServer(t, bin, root, dataDir, port)

	poison := `{"prompt":"a slow lighthouse","num_inference_steps":50,"image_size":{"width":512,"height":512},"seed":1}`
	later := `{"prompt":"waiting one","num_inference_steps":2,"image_size":{"width":64,"height":64},"seed":2}`
	_, sub := srv.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", poison)
	poisonStatus := sub["status_url"].(string)
	waitRunningStep(t, srv, poisonStatus)
	_, sub = srv.call("POST", "/queue/fal-ai/flux-2/klein/4b/base", later)
	laterStatus := sub["status_url"].(string)

	for kill := 1; kill <= 3; kill++ {
		srv.kill()
		srv = startServer(t, bin, root, dataDir, port)
		if kill == 2 {
			// Requeued behind "later", which runs to the end first.
			waitCompleted(t, srv, laterStatus, srv)
			_, st := srv.call("GET", poisonStatus+"?logs=1", "")
			if !strings.Contains(fmt.Sprint(st["logs"]), "(2 times); requeued behind the waiting requests") {
				t.Fatalf("second requeue not logged: %v", st["logs"])
			}
		}
		if kill < 3 {
			waitRunningStep(t, srv, poisonStatus)
		}
	}
	if !strings.Contains(srv.logs.String(), `"failed_after_retries":1`) {
		t.Fatalf("the restart did not fail the request:\n%s", srv.logs.String())
	}
	st := waitCompleted(t, srv, poisonStatus, srv)
	want := "the server stopped 3 times while running this request; not retried again"
	if !strings.Contains(fmt.Sprint(st["error"]), want) {
		t.Fatalf("status error %v, want it to say %q", st["error"], want)
	}
	code, out := srv.call("GET", strings.TrimSuffix(poisonStatus, "/status"), "")
	if code < 400 || !strings.Contains(fmt.Sprint(out), want) {
		t.Fatalf("result: %d %v", code, out)
	}
}
