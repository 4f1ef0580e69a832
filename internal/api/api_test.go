package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// TestValidationOverHTTP sends bad inputs to all three generation routes and
// expects a fal/FastAPI 422 naming the field, never anything else.
func TestValidationOverHTTP(t *testing.T) {
	env := newEnv(t, envOptions{})
	mb := strings.Repeat("x", 1<<20)
	cases := []struct {
		body  string
		field string
	}{
		{`{"prompt":1}`, "prompt"},
		{`{}`, "prompt"},
		{`{"prompt":""}`, "prompt"},
		{`{"prompt":"` + mb + `"}`, "prompt"},
		{`{"prompt":"x","negative_prompt":"` + mb + `"}`, "negative_prompt"},
		{`{"prompt":"x","guidance_scale":"high"}`, "guidance_scale"},
		{`{"prompt":"x","guidance_scale":99}`, "guidance_scale"},
		{`{"prompt":"x","num_inference_steps":0}`, "num_inference_steps"},
		{`{"prompt":"x","num_inference_steps":1000}`, "num_inference_steps"},
		{`{"prompt":"x","image_size":"giant"}`, "image_size"},
		{`{"prompt":"x","image_size":{"width":0,"height":0}}`, "image_size"},
		{`{"prompt":"x","image_size":{"width":-64,"height":64}}`, "image_size"},
		{`{"prompt":"x","image_size":{"width":100000,"height":64}}`, "image_size"},
		{`{"prompt":"x","image_size":{"width":100,"height":64}}`, "image_size"},
		{`{"prompt":"x","num_images":0}`, "num_images"},
		{`{"prompt":"x","num_images":1000}`, "num_images"},
		{`{"prompt":"x","seed":"abc"}`, "seed"},
		{`{"prompt":"x","acceleration":"ludicrous"}`, "acceleration"},
		{`{"prompt":"x","enable_safety_checker":"no"}`, "enable_safety_checker"},
		{`{"prompt":"x","output_format":"bmp"}`, "output_format"},
		{`{"prompt":"x","sync_mode":1}`, "sync_mode"},
		{`{"prompt":"x","enable_cns":"on"}`, "enable_cns"},
		{`{"prompt":"x","cns_s_churn":3}`, "cns_s_churn"},
		{`{"prompt":"x","cns_gamma_source":"guess"}`, "cns_gamma_source"},
		{`{"prompt":"x","cns_power_gamma":0}`, "cns_power_gamma"},
		{`{"prompt":"x","cns_gamma_divider":100}`, "cns_gamma_divider"},
		{`{"prompt":"x","cns_alpha_tilt_start":5}`, "cns_alpha_tilt_start"},
		{`{"prompt":"x","cns_alpha_tilt_end":-5}`, "cns_alpha_tilt_end"},
		{`{"prompt":"x","cns_alpha_use_fnorm":null,"cns_alpha_exp_interp":"x"}`, "cns_alpha_exp_interp"},
		{`{"prompt":"x","cns_alpha_exp_sharpness":0}`, "cns_alpha_exp_sharpness"},
		{`{"prompt":"x","cns_num_freq_bins":4}`, "cns_num_freq_bins"},
		{`{"prompt":"x","cns_energy_scale":2}`, "cns_energy_scale"},
		{`{"prompt": "x",`, "body"},
		{`[{"prompt":"x"}]`, "body"},
		{`null`, "body"},
		{``, "body"},
		{`prompt=a+cat`, "body"},
	}
	for _, path := range []string{submitPath, runPath, streamPath} {
		for _, tc := range cases {
			r := env.do("POST", path, tc.body, nil)
			name := tc.body
			if len(name) > 60 {
				name = name[:60] + "…"
			}
			if r.status != http.StatusUnprocessableEntity || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %d %s", path, name, r.status, r.header.Get("Content-Type"))
				continue
			}
			var verr wire.ValidationError
			if err := json.Unmarshal(r.body, &verr); err != nil || len(verr.Detail) == 0 {
				t.Errorf("%s %s: bad 422 body %s", path, name, r.body)
				continue
			}
			if got := verr.Fields()[0]; got != tc.field {
				t.Errorf("%s %s: 422 names %q, want %q", path, name, got, tc.field)
			}
		}
	}
	if n := env.engine.calls.Load(); n != 0 {
		t.Fatalf("engine ran %d times for invalid input", n)
	}
}

// TestNoServerErrorForAnyClientInput throws odd requests at every route.
func TestNoServerErrorForAnyClientInput(t *testing.T) {
	env := newEnv(t, envOptions{maxBody: 3 << 20})
	bodies := []string{"", "{", "}", "[]", "null", "0", `"x"`, `{"prompt":"x","image_size":{}}`,
		`{"prompt":"x","image_size":{"width":null}}`, "\x00\xff\xfe", `{"prompt":"\ud800"}`,
		`{"prompt":"x","seed":-1}`, `{"content_type":5}`, strings.Repeat("[", 100000)}
	paths := []string{submitPath, runPath, streamPath, reqPrefix + "x", reqPrefix + "x/status",
		reqPrefix + "x/status/stream", reqPrefix + "x/cancel", "/storage/upload/initiate", "/storage/upload/zz",
		"/files/zz", "/files/../../etc/passwd", "/queue/fal-ai/other/model", "/", "/metrics", "/healthz", "/readyz",
		submitPath + "/edit", "/queue/fal-ai/flux-2/requests/%00/status"}
	for _, method := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"} {
		for _, p := range paths {
			for _, b := range bodies {
				req, err := http.NewRequest(method, env.base+p, strings.NewReader(b))
				if err != nil {
					continue
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, p, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Fatalf("%s %s %q: %d", method, p, b, resp.StatusCode)
				}
				if method != "HEAD" && resp.StatusCode != 200 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
					t.Fatalf("%s %s: error without JSON content type: %d %q", method, p, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
			}
		}
	}
	// A body over the limit is a JSON 413.
	r := env.do("POST", submitPath, `{"prompt":"`+strings.Repeat("a", 4<<20)+`"}`, nil)
	if r.status != http.StatusRequestEntityTooLarge || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("oversized body: %d %s", r.status, r.body)
	}
}

func TestRunReturnsOutputAndServesFiles(t *testing.T) {
	env := newEnv(t, envOptions{})
	r := env.do("POST", runPath, `{"prompt":"a cat","image_size":{"width":64,"height":128},"num_images":2,"seed":7,"output_format":"jpeg"}`,
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}) // curl's default
	if r.status != 200 || r.header.Get("X-Fal-Request-Id") == "" {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var out wire.Output
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 2 || out.Seed != 7 || out.Prompt != "a cat" || len(out.HasNSFWConcepts) != 2 ||
		out.Timings.Inference != 1.5 {
		t.Fatalf("output %+v", out)
	}
	for _, img := range out.Images {
		if img.Width != 64 || img.Height != 128 || img.ContentType != "image/jpeg" || !strings.HasPrefix(img.URL, env.base+"/files/") {
			t.Fatalf("image %+v", img)
		}
		f := env.do("GET", img.URL, "", nil)
		if f.status != 200 || f.header.Get("Content-Type") != "image/jpeg" || int64(len(f.body)) != img.FileSize {
			t.Fatalf("file: %d %s %d", f.status, f.header.Get("Content-Type"), len(f.body))
		}
	}
	// Image k uses seed+k, per the engine contract.
	if got := env.engine.last(); got.Seed != 7 || got.NumImages != 2 || got.OutputFormat != "jpeg" {
		t.Fatalf("engine request %+v", got)
	}
	// The run is a queue job too: its result is fetchable by its id.
	res := env.do("GET", reqPrefix+r.header.Get("X-Fal-Request-Id"), "", nil)
	if res.status != 200 || compactJSON(t, res.body) != compactJSON(t, r.body) {
		t.Fatalf("result by id: %d %s", res.status, res.body)
	}
}

func TestSyncModeReturnsDataURIsAndStoresNothing(t *testing.T) {
	env := newEnv(t, envOptions{})
	r := env.do("POST", runPath, `{"prompt":"x","image_size":"square","sync_mode":true,"num_inference_steps":1}`, nil)
	if r.status != 200 {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var out wire.Output
	json.Unmarshal(r.body, &out)
	url := out.Images[0].URL
	if !strings.HasPrefix(url, "data:image/png;base64,") {
		t.Fatalf("url %.60s", url)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(url, "data:image/png;base64,"))
	if err != nil || int64(len(raw)) != out.Images[0].FileSize || !strings.HasPrefix(string(raw), "\x89PNG") {
		t.Fatalf("data URI payload: %v, %d bytes", err, len(raw))
	}
	entries, _ := os.ReadDir(filepath.Join(env.dataDir, "files", "files"))
	if len(entries) != 0 {
		t.Fatalf("sync_mode stored %d files", len(entries))
	}
}

func TestNSFWFlagAndEngineFailure(t *testing.T) {
	env := newEnv(t, envOptions{})
	r := env.do("POST", runPath, `{"prompt":"nsfw thing","num_inference_steps":1,"image_size":"square"}`, nil)
	var out wire.Output
	json.Unmarshal(r.body, &out)
	if len(out.HasNSFWConcepts) != 1 || !out.HasNSFWConcepts[0] {
		t.Fatalf("nsfw flags %v", out.HasNSFWConcepts)
	}
	r = env.do("POST", runPath, `{"prompt":"nsfw thing","num_inference_steps":1,"image_size":"square","enable_safety_checker":false}`, nil)
	json.Unmarshal(r.body, &out)
	if out.HasNSFWConcepts[0] {
		t.Fatal("flagged with the checker off")
	}

	env.engine.fail = fmt.Errorf("fake size check: %w", engine.ErrInvalidRequest)
	r = env.do("POST", runPath, `{"prompt":"x"}`, nil)
	if r.status != 422 || r.json(t)["detail"] == nil {
		t.Fatalf("engine invalid request: %d %s", r.status, r.body)
	}
	env.engine.fail = errors.New("device lost")
	r = env.do("POST", runPath, `{"prompt":"x"}`, nil)
	if r.status != 500 || r.json(t)["error_type"] != "internal_server_error" {
		t.Fatalf("engine failure: %d %s", r.status, r.body)
	}
}

func TestEngineLimitsAreCheckedAtSubmit(t *testing.T) {
	env := newEnv(t, envOptions{admit: func(p wire.Params) error {
		if p.Size.Width > 1024 || p.Size.Height > 1024 {
			return wire.NewValidationError([]any{"body", "image_size"}, "Value error, sides of at most 1024 pixels", "value_error")
		}
		return nil
	}})
	r := env.do("POST", submitPath, `{"prompt":"x","image_size":{"width":2048,"height":1024}}`, nil)
	if r.status != 422 || !strings.Contains(string(r.body), "image_size") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestStreamEventsAndFinalOutput(t *testing.T) {
	env := newEnv(t, envOptions{previewEvery: 2})
	resp, err := http.Post(env.base+streamPath, "application/json",
		strings.NewReader(`{"prompt":"日本の庭","num_inference_steps":5,"image_size":"square","seed":3}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Fal-Request-Id") == "" {
		t.Fatalf("stream response %d %v", resp.StatusCode, resp.Header)
	}
	events, _ := readSSE(t, resp.Body)
	if len(events) != 6 {
		t.Fatalf("want 5 progress events and the output, got %d", len(events))
	}
	previews := 0
	for i, ev := range events[:5] {
		var p wire.StreamProgress
		json.Unmarshal([]byte(ev.data), &p)
		if !p.Partial || p.Step != i+1 || p.NumInferenceSteps != 5 {
			t.Fatalf("progress event %d: %s", i, ev.data)
		}
		if len(p.Images) > 0 {
			previews++
			if !strings.HasPrefix(p.Images[0].URL, "data:image/jpeg;base64,") {
				t.Fatalf("preview url %.40s", p.Images[0].URL)
			}
		}
	}
	if previews != 2 {
		t.Fatalf("previews %d, want 2 (steps 2 and 4)", previews)
	}
	last := events[len(events)-1].data
	res := env.do("GET", reqPrefix+resp.Header.Get("X-Fal-Request-Id"), "", nil)
	if compactJSON(t, []byte(last)) != compactJSON(t, res.body) {
		t.Fatalf("last event is not the output:\n%s\n%s", last, res.body)
	}
	if !strings.Contains(last, `\u65e5\u672c`) {
		t.Fatalf("prompt not ASCII-escaped: %s", last)
	}
}

func TestStreamErrorEvent(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.fail = errors.New("out of memory")
	resp, err := http.Post(env.base+streamPath, "application/json", strings.NewReader(`{"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, _ := readSSE(t, resp.Body)
	var last map[string]any
	json.Unmarshal([]byte(events[len(events)-1].data), &last)
	if last["error"] == nil || last["error_type"] != "internal_server_error" {
		t.Fatalf("last event %v", last)
	}
}

func TestStreamDisconnectCancelsGeneration(t *testing.T) {
	env := newEnv(t, envOptions{keepAlive: 10 * time.Millisecond})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 1)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", env.base+streamPath, strings.NewReader(`{"prompt":"x"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Fal-Request-Id")
	<-env.engine.entered
	cancel()
	resp.Body.Close()
	job := env.waitJob(id, queue.StatusCompleted)
	if job.Failure == nil || job.Failure.Type != wire.ErrorTypeRequestCancelled {
		t.Fatalf("job after disconnect: %+v", job.Failure)
	}
	if env.engine.canceledRuns() != 1 {
		t.Fatal("engine context was not canceled")
	}
}

func TestRunDisconnectCancelsQueuedJob(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 2)
	blocker := env.submit(`{"prompt":"blocker"}`)
	<-env.engine.entered
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "POST", env.base+runPath, strings.NewReader(`{"prompt":"x"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	// Wait until the run's job is queued behind the blocker, then leave.
	for env.queue.Depth() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	for env.queue.Depth() != 0 {
		time.Sleep(time.Millisecond)
	}
	env.engine.hold <- struct{}{}
	env.waitJob(blocker, queue.StatusCompleted)
	if n := env.engine.calls.Load(); n != 1 {
		t.Fatalf("abandoned run still generated (%d engine calls)", n)
	}
}

func TestStatusStream(t *testing.T) {
	env := newEnv(t, envOptions{keepAlive: 5 * time.Millisecond})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 2)
	blocker := env.submit(`{"prompt":"blocker","num_inference_steps":1}`)
	<-env.engine.entered
	id := env.submit(`{"prompt":"x","num_inference_steps":3}`)
	resp, err := http.Get(env.base + reqPrefix + id + "/status/stream?logs=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	go func() {
		time.Sleep(30 * time.Millisecond) // let keep-alives flow while queued
		env.engine.hold <- struct{}{}     // blocker
		<-env.engine.entered
		env.engine.hold <- struct{}{} // our job
	}()
	events, comments := readSSE(t, resp.Body) // returns when the server closes
	if comments == 0 {
		t.Error("no keep-alive comments")
	}
	var statuses []string
	var logs []string
	for _, ev := range events {
		var st wire.Status
		if err := json.Unmarshal([]byte(ev.data), &st); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, st.Status)
		if st.Logs == nil {
			t.Fatalf("logs key null with logs=1: %s", ev.data)
		}
		for _, l := range st.Logs {
			logs = append(logs, l.Message)
		}
	}
	if statuses[0] != "IN_QUEUE" || statuses[len(statuses)-1] != "COMPLETED" {
		t.Fatalf("statuses %v", statuses)
	}
	want := []string{"Generating 1 image(s) of 1024x768 with 3 steps, guidance 5, seed 1002", "Step 1/3", "Step 2/3",
		"Step 3/3", "Generated 1 image(s) in 1.50s"}
	if !reflect.DeepEqual(logs, want) {
		t.Fatalf("logs across events (each line once):\n got %q\nwant %q", logs, want)
	}
	env.waitJob(blocker, queue.StatusCompleted)
}

func TestStatusStreamOfCompletedJobClosesAtOnce(t *testing.T) {
	env := newEnv(t, envOptions{})
	r := env.do("POST", runPath, `{"prompt":"x","num_inference_steps":1}`, nil)
	id := r.header.Get("X-Fal-Request-Id")
	resp, err := http.Get(env.base + reqPrefix + id + "/status/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, _ := readSSE(t, resp.Body)
	if len(events) != 1 || !strings.Contains(events[0].data, `"COMPLETED"`) || !strings.Contains(events[0].data, `"logs":null`) {
		t.Fatalf("events %v", events)
	}
	nf := env.do("GET", reqPrefix+"nope/status/stream", "", nil)
	if nf.status != 404 {
		t.Fatalf("unknown id stream: %d", nf.status)
	}
}

func TestAuthAndCORS(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k1", "id:secret"}})
	r := env.do("POST", submitPath, `{"prompt":"x"}`, nil)
	if r.status != 401 || r.header.Get("Content-Type") != "application/json" || r.json(t)["error_type"] != "unauthorized" {
		t.Fatalf("no key: %d %s", r.status, r.body)
	}
	r = env.do("POST", submitPath, `{"prompt":"x"}`, map[string]string{"Authorization": "Key wrong"})
	if r.status != 401 {
		t.Fatalf("wrong key: %d", r.status)
	}
	for _, h := range []string{"Key k1", "key id:secret", "Bearer k1"} {
		r = env.do("POST", submitPath, `{"prompt":"x","num_inference_steps":1}`, map[string]string{"Authorization": h})
		if r.status != 200 {
			t.Fatalf("%q: %d %s", h, r.status, r.body)
		}
	}
	id := r.json(t)["request_id"].(string)
	if s := env.do("GET", reqPrefix+id+"/status", "", nil); s.status != 401 {
		t.Fatalf("status without key: %d", s.status)
	}
	for _, open := range []string{"/healthz", "/metrics", "/files/0123456789abcdef0123456789abcdef.png"} {
		if s := env.do("GET", open, "", nil); s.status == 401 {
			t.Fatalf("%s requires auth", open)
		}
	}
	pre := env.do("OPTIONS", submitPath, "", map[string]string{"Origin": "https://app.example",
		"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-fal-queue-priority"})
	if pre.status != 204 || pre.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "x-fal-queue-priority") ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Fatalf("preflight %d %v", pre.status, pre.header)
	}
	got := env.do("GET", "/healthz", "", map[string]string{"Origin": "https://app.example"})
	if !strings.Contains(got.header.Get("Access-Control-Expose-Headers"), "X-Fal-Request-Id") {
		t.Fatalf("expose headers %v", got.header)
	}
}

func TestUploadFlow(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k"}})
	auth := map[string]string{"Authorization": "Key k"}
	if r := env.do("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", `{}`, nil); r.status != 401 {
		t.Fatalf("initiate without key: %d", r.status)
	}
	r := env.do("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", `{"content_type":"text/plain","file_name":"hello.txt"}`, auth)
	if r.status != 200 {
		t.Fatalf("initiate: %d %s", r.status, r.body)
	}
	var up wire.UploadInitiateResponse
	json.Unmarshal(r.body, &up)
	put := env.do("PUT", up.UploadURL, "Hello, World!", map[string]string{"Content-Type": "text/plain"})
	if put.status != 200 {
		t.Fatalf("put: %d %s", put.status, put.body)
	}
	get := env.do("GET", up.FileURL, "", nil)
	if get.status != 200 || string(get.body) != "Hello, World!" || get.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("get: %d %q %q", get.status, get.body, get.header.Get("Content-Type"))
	}
	if r := env.do("PUT", up.UploadURL, "again", nil); r.status != 404 {
		t.Fatalf("second put: %d", r.status)
	}
	r = env.do("POST", "/storage/upload/initiate", `{"content_type":"application/octet-stream"}`, auth)
	json.Unmarshal(r.body, &up)
	if big := env.do("PUT", up.UploadURL, strings.Repeat("x", 2<<20), nil); big.status != 413 {
		t.Fatalf("oversized upload: %d %s", big.status, big.body)
	}
	if bad := env.do("POST", "/storage/upload/initiate", `[1]`, auth); bad.status != 422 {
		t.Fatalf("bad initiate body: %d", bad.status)
	}
}

func TestMultipartUploadFlow(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k"}})
	r := env.do("POST", "/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
		`{"content_type":"application/pdf","file_name":"doc.pdf"}`, map[string]string{"Authorization": "Key k"})
	if r.status != 200 {
		t.Fatalf("initiate: %d %s", r.status, r.body)
	}
	var up wire.UploadInitiateResponse
	json.Unmarshal(r.body, &up)
	// As the JS client does: PUT {upload_url}/{n}, then POST {upload_url}/complete, no credentials.
	var parts []map[string]any
	for i, chunk := range []string{"%PDF-", "1.7"} {
		p := env.do("PUT", partURL(up.UploadURL, strconv.Itoa(i+1)), chunk, nil)
		if p.status != 200 || p.header.Get("Content-Type") != "application/json" {
			t.Fatalf("part %d: %d %s", i+1, p.status, p.body)
		}
		parts = append(parts, p.json(t))
	}
	if parts[0]["partNumber"].(float64) != 1 || parts[0]["etag"] == "" {
		t.Fatalf("part answer %v", parts[0])
	}
	body, _ := json.Marshal(map[string]any{"parts": parts})
	c := env.do("POST", partURL(up.UploadURL, "complete"), string(body), map[string]string{"Content-Type": "application/json"})
	if c.status != 200 {
		t.Fatalf("complete: %d %s", c.status, c.body)
	}
	f := env.do("GET", up.FileURL, "", nil)
	if string(f.body) != "%PDF-1.7" || f.header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("file %q %q", f.body, f.header.Get("Content-Type"))
	}
	for _, bad := range []struct{ method, path, body string }{
		{"PUT", up.UploadURL + "/x", "a"},
		{"PUT", up.UploadURL + "/1", "a"},
		{"POST", up.UploadURL + "/complete", `{"parts":"no"}`},
		{"POST", "/storage/upload/0123456789abcdef0123456789abcdef/complete", `{"parts":[]}`},
	} {
		if r := env.do(bad.method, bad.path, bad.body, nil); r.status < 400 || r.status >= 500 {
			t.Fatalf("%s %s: %d %s", bad.method, bad.path, r.status, r.body)
		}
	}
}

func TestQueueFullIs429(t *testing.T) {
	env := newEnv(t, envOptions{maxQueued: 1})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 1)
	env.submit(`{"prompt":"running"}`)
	<-env.engine.entered
	env.submit(`{"prompt":"waiting"}`)
	r := env.do("POST", submitPath, `{"prompt":"rejected"}`, nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.json(t)["error_type"] != "queue_full" {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
}

func TestRequestTimeoutHeader(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 1)
	env.submit(`{"prompt":"busy"}`)
	<-env.engine.entered
	r := env.do("POST", runPath, `{"prompt":"x"}`, map[string]string{"X-Fal-Request-Timeout": "0.05"})
	if r.status != 504 || r.header.Get("X-Fal-Request-Timeout-Type") != "user" || r.json(t)["error_type"] != "request_timeout" {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
	for _, bad := range []string{"soon", "-1", "0", "NaN", "Inf"} {
		r := env.do("POST", submitPath, `{"prompt":"x"}`, map[string]string{"X-Fal-Request-Timeout": bad})
		if r.status != 422 || !strings.Contains(string(r.body), "x-fal-request-timeout") {
			t.Fatalf("%q: %d %s", bad, r.status, r.body)
		}
	}
	// The queued variant: the stored failure carries the header too.
	id := env.submitWith(`{"prompt":"x"}`, map[string]string{"X-Fal-Request-Timeout": "0.05"})
	env.waitJob(id, queue.StatusCompleted)
	res := env.do("GET", reqPrefix+id, "", nil)
	if res.status != 504 || res.header.Get("X-Fal-Request-Timeout-Type") != "user" {
		t.Fatalf("stored timeout: %d %v", res.status, res.header)
	}
}

func (e *testEnv) submitWith(body string, header map[string]string) string {
	e.t.Helper()
	r := e.do("POST", submitPath, body, header)
	if r.status != 200 {
		e.t.Fatalf("submit: %d %s", r.status, r.body)
	}
	return r.json(e.t)["request_id"].(string)
}

func TestWebhookDelivery(t *testing.T) {
	got := make(chan []byte, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer hook.Close()
	// The receiver is on loopback, which webhooks reach only when allowed.
	env := newEnv(t, envOptions{urlPolicy: netguard.Policy{AllowPrivate: true}})
	r := env.do("POST", submitPath+"?fal_webhook="+hook.URL+"/hook%3Fa%3D1", `{"prompt":"hooked","num_inference_steps":1}`, nil)
	hookID := r.json(t)["request_id"].(string)
	var body wire.WebhookBody
	select {
	case b := <-got:
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook")
	}
	res := env.do("GET", reqPrefix+hookID, "", nil)
	if body.RequestID != hookID || body.Status != "OK" || body.Error != nil ||
		compactJSON(t, body.Payload) != compactJSON(t, res.body) {
		t.Fatalf("webhook %+v", body)
	}
	if r := env.do("POST", submitPath+"?fal_webhook=ftp://x", `{"prompt":"x"}`, nil); r.status != 422 {
		t.Fatalf("bad webhook url: %d", r.status)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	env := newEnv(t, envOptions{noEngine: true})
	if r := env.do("GET", "/readyz", "", nil); r.status != 503 || r.json(t)["status"] != "loading" {
		t.Fatalf("readyz before engine: %d %s", r.status, r.body)
	}
	// Work submitted while the model loads waits durably.
	id := env.submit(`{"prompt":"early","num_inference_steps":1}`)
	if r := env.do("GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	env.worker.SetEngine(wire.Base4B.ID, env.engine)
	env.queue.Start(env.worker.Process)
	env.waitJob(id, queue.StatusCompleted)
	if r := env.do("GET", "/readyz", "", nil); r.status != 200 || r.json(t)["model"] != "fake model" {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	m := env.do("GET", "/metrics", "", nil)
	for _, want := range []string{"kleinserve_images_generated_total 1", `kleinserve_model_info{model="fake model"`,
		`kleinserve_http_requests_total{code="200",method="POST",route="/queue/fal-ai/flux-2/klein/4b/base"} 1`,
		"kleinserve_queue_depth 0", "kleinserve_denoising_step_seconds_count 1"} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	env.server.BeginShutdown()
	if r := env.do("GET", "/readyz", "", nil); r.status != 503 {
		t.Fatalf("readyz while stopping: %d", r.status)
	}
}

func TestPriorityHeader(t *testing.T) {
	env := newEnv(t, envOptions{})
	env.engine.hold = make(chan struct{})
	env.engine.entered = make(chan engine.Request, 4)
	env.submit(`{"prompt":"running"}`)
	<-env.engine.entered
	low := env.submitWith(`{"prompt":"low"}`, map[string]string{"X-Fal-Queue-Priority": "low"})
	normal := env.submitWith(`{"prompt":"normal"}`, map[string]string{"x-fal-queue-priority": "normal"})
	st := env.do("GET", reqPrefix+low+"/status", "", nil).json(t)
	if st["queue_position"].(float64) != 1 {
		t.Fatalf("low priority position %v", st["queue_position"])
	}
	st = env.do("GET", reqPrefix+normal+"/status", "", nil).json(t)
	if st["queue_position"].(float64) != 0 {
		t.Fatalf("normal priority position %v", st["queue_position"])
	}
}

func TestRandomSeedRange(t *testing.T) {
	for i := 0; i < 1000; i++ {
		if s := wire.RandomSeed(); s < 0 || s >= 1<<53 {
			t.Fatalf("seed %d out of [0, 2^53)", s)
		}
	}
	env := newEnv(t, envOptions{})
	env.server.opts.NewSeed = wire.RandomSeed
	var out wire.Output
	r := env.do("POST", runPath, `{"prompt":"x","num_inference_steps":1,"image_size":"square"}`, nil)
	json.Unmarshal(r.body, &out)
	if out.Seed != env.engine.last().Seed {
		t.Fatalf("reported seed %d, engine used %d", out.Seed, env.engine.last().Seed)
	}
}

func TestClassifyCoversSentinels(t *testing.T) {
	cases := map[error]int{
		queue.ErrNotFound: 404, queue.ErrQueueFull: 429, queue.ErrCanceled: 400, engine.ErrCanceled: 400,
		queue.ErrStartTimeout: 504, queue.ErrAlreadyCompleted: 400, queue.ErrClosed: 503, engine.ErrClosed: 503,
		queue.ErrInterrupted: 500, engine.ErrInvalidRequest: 422, errUnauthorized: 401, errInProgress: 400,
		wire.NewValidationError([]any{"body"}, "m", "t"): 422, &http.MaxBytesError{Limit: 1}: 413,
		errors.New("other"): 500, context.DeadlineExceeded: 504,
	}
	for err, code := range cases {
		wrapped := fmt.Errorf("outer: %w", err)
		if got := classify(wrapped).status; got != code {
			t.Errorf("%v: %d, want %d", err, got, code)
		}
		f := DescribeFailure(wrapped)
		if f.HTTPStatus != code || !json.Valid(f.Body) || f.Message == "" || f.Type == "" {
			t.Errorf("%v: failure %+v", err, f)
		}
	}
}
