package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	m := New()
	m.RegisterQueueGauges(func() int { return 3 }, func() int { return 1 })
	m.ObserveHTTP("/queue/fal-ai/flux-2/klein/4b/base", "POST", 200, 5*time.Millisecond)
	m.ObserveQueueWait(time.Second)
	m.ObserveInference(2 * time.Second)
	m.ObserveStep(100 * time.Millisecond)
	m.AddImages(4, 1)
	m.FinishRequest(OutcomeOK)
	m.SetModelInfo("FLUX.2 [klein] 4B Base", "klein-4b-base", "cuda", "bf16")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`kleinserve_http_requests_total{code="200",method="POST",route="/queue/fal-ai/flux-2/klein/4b/base"} 1`,
		`kleinserve_queue_depth 3`,
		`kleinserve_queue_running 1`,
		`kleinserve_queue_wait_seconds_count 1`,
		`kleinserve_inference_seconds_sum 2`,
		`kleinserve_denoising_step_seconds_count 1`,
		`kleinserve_images_generated_total 4`,
		`kleinserve_nsfw_flagged_total 1`,
		`kleinserve_requests_finished_total{outcome="ok"} 1`,
		`kleinserve_model_info{model="FLUX.2 [klein] 4B Base",precision="bf16",provider="cuda",variant="klein-4b-base"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q", want)
		}
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	// Two servers in one process (as in tests) must not collide.
	a, b := New(), New()
	a.AddImages(1, 0)
	b.AddImages(2, 0)
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "kleinserve_images_generated_total 2") {
		t.Fatal("registry b saw a's counts or none")
	}
}
