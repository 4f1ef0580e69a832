package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// fakeBackend validates with the endpoint's real validator and "generates"
// blank PNGs of the requested size.
type fakeBackend struct {
	keys        []string
	editServed  bool
	submitErr   error
	failure     *FalError
	progress    []Progress
	hold        chan struct{} // Wait blocks until closed (or ctx ends)
	mu          sync.Mutex
	submissions []Submission
	cancelled   []string
	released    int
}

func (f *fakeBackend) Authorize(key string) error {
	if len(f.keys) == 0 {
		return nil
	}
	for _, k := range f.keys {
		if k == key {
			return nil
		}
	}
	return ErrUnauthorized
}

func (f *fakeBackend) Submit(ctx context.Context, s Submission) (Ticket, error) {
	if f.submitErr != nil {
		return Ticket{}, f.submitErr
	}
	if s.EndpointID == EditEndpoint(wire.Base4B.ID) && !f.editServed || s.EndpointID != EditEndpoint(wire.Base4B.ID) && s.EndpointID != wire.Base4B.ID {
		return Ticket{}, ErrEndpointUnavailable
	}
	var plain map[string]json.RawMessage
	json.Unmarshal(s.Input, &plain)
	delete(plain, "image_urls") // the base validator does not know it
	base, _ := json.Marshal(plain)
	if _, err := wire.ParseInput(base); err != nil {
		raw, _ := json.Marshal(err)
		return Ticket{}, &FalError{Status: http.StatusUnprocessableEntity, Body: raw}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submissions = append(f.submissions, s)
	t := Ticket{RequestID: fmt.Sprintf("req-%d", len(f.submissions))}
	if s.Progress {
		ch := make(chan Progress, len(f.progress))
		for _, p := range f.progress {
			ch <- p
		}
		t.Progress = ch
		t.Release = func() { f.mu.Lock(); f.released++; f.mu.Unlock() }
	}
	return t, nil
}

func (f *fakeBackend) Wait(ctx context.Context, id string) (Outcome, error) {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled = append(f.cancelled, id)
			f.mu.Unlock()
			return Outcome{}, ctx.Err()
		}
	}
	if f.failure != nil {
		return Outcome{Failure: f.failure}, nil
	}
	f.mu.Lock()
	s := f.submissions[len(f.submissions)-1]
	f.mu.Unlock()
	p, _ := wire.ParseInput(stripImages(s.Input))
	out := wire.Output{Seed: 42, Prompt: p.Prompt}
	for i := range p.NumImages {
		var buf bytes.Buffer
		png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, p.Size.Width, p.Size.Height)))
		img := wire.Image{ContentType: "image/png", Width: p.Size.Width, Height: p.Size.Height,
			URL: fmt.Sprintf("http://files/%d.png", i)}
		if p.SyncMode {
			img.URL = "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())
		}
		out.Images = append(out.Images, img)
		out.HasNSFWConcepts = append(out.HasNSFWConcepts, false)
	}
	raw, _ := json.Marshal(out)
	return Outcome{Output: raw}, nil
}

func stripImages(input json.RawMessage) []byte {
	var m map[string]json.RawMessage
	json.Unmarshal(input, &m)
	delete(m, "image_urls")
	raw, _ := json.Marshal(m)
	return raw
}

var fixedNow = time.Unix(1700000000, 0)

func newTestServer(t *testing.T, f *fakeBackend) *httptest.Server {
	t.Helper()
	h := NewHandler(f, Options{Now: func() time.Time { return fixedNow }, MaxBodyBytes: 1 << 16, MaxFormBytes: 1 << 16,
		KeepAlive: time.Hour})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, key, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

func postJSON(t *testing.T, srv *httptest.Server, key, body string) (*http.Response, []byte) {
	return do(t, http.MethodPost, srv.URL+"/v1/images/generations", key, "application/json", strings.NewReader(body))
}

type envelope struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeEnvelope(t *testing.T, raw []byte) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an error envelope: %s", raw)
	}
	return e
}

func pngSize(t *testing.T, b64 string) (int, int) {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Width, cfg.Height
}

func TestGenerationsURL(t *testing.T) {
	f := &fakeBackend{}
	srv := newTestServer(t, f)
	resp, raw := postJSON(t, srv, "", `{"prompt":"a fox","size":"96x64","seed":3,"num_inference_steps":4}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var got ImagesResponse
	json.Unmarshal(raw, &got)
	if got.Created != fixedNow.Unix() || len(got.Data) != 1 || got.Data[0].URL != "http://files/0.png" || got.Size != "96x64" ||
		got.OutputFormat != "png" || got.Usage == nil || got.Seed != 42 {
		t.Errorf("response %s", raw)
	}
	if resp.Header.Get("X-Request-Id") != "req-1" {
		t.Errorf("x-request-id %q", resp.Header.Get("X-Request-Id"))
	}
	s := f.submissions[0]
	if s.EndpointID != wire.EndpointBase.ID || s.Progress {
		t.Errorf("submission %+v", s)
	}
	if in := decodeInput(t, s.Input); in["seed"] != 3.0 || in["num_inference_steps"] != 4.0 || in["sync_mode"] != false {
		t.Errorf("input %v", in)
	}
}

func TestGenerationsB64JSON(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{})
	resp, raw := postJSON(t, srv, "", `{"prompt":"a fox","size":"96x64","n":2,"response_format":"b64_json"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var got ImagesResponse
	json.Unmarshal(raw, &got)
	if len(got.Data) != 2 {
		t.Fatalf("response %s", raw)
	}
	for _, d := range got.Data {
		if d.URL != "" {
			t.Errorf("url with b64_json: %q", d.URL)
		}
		if w, h := pngSize(t, d.B64JSON); w != 96 || h != 64 {
			t.Errorf("image %dx%d", w, h)
		}
	}
}

func TestAuthorization(t *testing.T) {
	f := &fakeBackend{keys: []string{"k1"}}
	srv := newTestServer(t, f)
	for _, c := range []struct {
		name, header string
		status       int
	}{
		{"none", "", 401},
		{"wrong", "Bearer nope", 401},
		{"other scheme", "Basic k1", 401},
		{"bearer", "Bearer k1", 200},
		{"fal's Key scheme", "Key k1", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			if c.status == 401 {
				e := decodeEnvelope(t, raw)
				if *e.Error.Code != CodeInvalidAPIKey || resp.Header.Get("WWW-Authenticate") != "Bearer" {
					t.Errorf("%s %v", raw, resp.Header)
				}
			}
		})
	}
	if resp, raw := postJSON(t, srv, "", `{"prompt":"p"}`); resp.StatusCode != 401 || len(f.submissions) != 0 {
		t.Errorf("unauthorized generation: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := postJSON(t, srv, "k1", `{"prompt":"p","size":"64x64"}`); resp.StatusCode != 200 || f.submissions[0].Key != "k1" {
		t.Errorf("authorized generation: %d %s", resp.StatusCode, raw)
	}
}

func TestErrorsInTheEnvelope(t *testing.T) {
	cases := []struct {
		name      string
		f         *fakeBackend
		body      string
		status    int
		param     string
		code      string
		header    string
		headerVal string
	}{
		{"validation", &fakeBackend{}, `{"prompt":"p","n":9}`, 400, "n", CodeInvalidValue, "", ""},
		{"translation", &fakeBackend{}, `{"prompt":"p","size":"big"}`, 400, "size", CodeInvalidValue, "", ""},
		{"unknown model", &fakeBackend{}, `{"prompt":"p","model":"dall-e-3"}`, 404, "model", CodeModelNotFound, "", ""},
		{"queue full", &fakeBackend{submitErr: &FalError{Status: 429, Body: json.RawMessage(`{"detail":"The queue is full; retry later","error_type":"queue_full"}`), RetryAfter: "5"}},
			`{"prompt":"p"}`, 429, "", CodeRateLimitExceeded, "Retry-After", "5"},
		{"backend bug", &fakeBackend{submitErr: errors.New("disk on fire")}, `{"prompt":"p"}`, 500, "", CodeServerError, "", ""},
		{"generation failed", &fakeBackend{failure: &FalError{Status: 500, Body: json.RawMessage(`{"detail":"Internal server error: x"}`)}},
			`{"prompt":"p","size":"64x64"}`, 500, "", CodeServerError, "", ""},
		{"body too large", &fakeBackend{}, `{"prompt":"` + strings.Repeat("a", 1<<16) + `"}`, 413, "", "request_too_large", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newTestServer(t, c.f)
			resp, raw := postJSON(t, srv, "", c.body)
			if resp.StatusCode != c.status {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			e := decodeEnvelope(t, raw)
			if (e.Error.Param == nil) != (c.param == "") || (e.Error.Param != nil && *e.Error.Param != c.param) ||
				e.Error.Code == nil || *e.Error.Code != c.code {
				t.Errorf("envelope %s", raw)
			}
			if c.header != "" && resp.Header.Get(c.header) != c.headerVal {
				t.Errorf("%s: %q", c.header, resp.Header.Get(c.header))
			}
			if strings.Contains(string(raw), "disk on fire") {
				t.Errorf("internal detail leaked: %s", raw)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{})
	resp, raw := do(t, http.MethodGet, srv.URL+"/v1/models", "", "", nil)
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Created             int64
		} `json:"data"`
	}
	json.Unmarshal(raw, &list)
	if resp.StatusCode != 200 || list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != wire.Base4B.ID ||
		list.Data[0].Object != "model" || list.Data[0].Created != fixedNow.Unix() {
		t.Errorf("models: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := do(t, http.MethodGet, srv.URL+"/v1/models/"+wire.Base4B.ID, "", "", nil); resp.StatusCode != 200 ||
		!strings.Contains(string(raw), `"id":"`+wire.Base4B.ID+`"`) {
		t.Errorf("model: %d %s", resp.StatusCode, raw)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/models/dall-e-3", 404},
		{http.MethodGet, "/v1/images/variations", 404},
		{http.MethodPost, "/v1/chat/completions", 404},
		{http.MethodGet, "/v1/images/generations", 405},
		{http.MethodDelete, "/v1/models", 405},
	} {
		resp, raw := do(t, c.method, srv.URL+c.path, "", "", nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, raw)
		}
		decodeEnvelope(t, raw)
	}
}

func multipartBody(t *testing.T, values map[string]string, images int) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range values {
		mw.WriteField(k, v)
	}
	for i := range images {
		fw, _ := mw.CreateFormFile("image[]", fmt.Sprintf("ref%d.png", i))
		png.Encode(fw, image.NewRGBA(image.Rect(0, 0, 16, 16)))
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func TestEdits(t *testing.T) {
	t.Run("endpoint not served yet", func(t *testing.T) {
		srv := newTestServer(t, &fakeBackend{})
		ct, body := multipartBody(t, map[string]string{"prompt": "p"}, 1)
		resp, raw := do(t, http.MethodPost, srv.URL+"/v1/images/edits", "", ct, body)
		if resp.StatusCode != 404 || !strings.Contains(decodeEnvelope(t, raw).Error.Message, EditEndpoint(wire.Base4B.ID)) {
			t.Errorf("%d %s", resp.StatusCode, raw)
		}
	})
	t.Run("two images", func(t *testing.T) {
		f := &fakeBackend{editServed: true}
		srv := newTestServer(t, f)
		ct, body := multipartBody(t, map[string]string{"prompt": "p", "size": "64x80", "response_format": "b64_json", "seed": "5"}, 2)
		resp, raw := do(t, http.MethodPost, srv.URL+"/v1/images/edits", "", ct, body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
		var got ImagesResponse
		json.Unmarshal(raw, &got)
		if w, h := pngSize(t, got.Data[0].B64JSON); w != 64 || h != 80 {
			t.Errorf("image %dx%d", w, h)
		}
		in := decodeInput(t, f.submissions[0].Input)
		if f.submissions[0].EndpointID != EditEndpoint(wire.Base4B.ID) || len(in["image_urls"].([]any)) != 2 || in["seed"] != 5.0 {
			t.Errorf("submission %s %v", f.submissions[0].EndpointID, in)
		}
	})
	t.Run("mask", func(t *testing.T) {
		srv := newTestServer(t, &fakeBackend{editServed: true})
		ct, body := multipartBody(t, map[string]string{"prompt": "p", "mask": "m"}, 1)
		resp, raw := do(t, http.MethodPost, srv.URL+"/v1/images/edits", "", ct, body)
		if e := decodeEnvelope(t, raw); resp.StatusCode != 400 || *e.Error.Param != "mask" {
			t.Errorf("%d %s", resp.StatusCode, raw)
		}
	})
	t.Run("json body", func(t *testing.T) {
		srv := newTestServer(t, &fakeBackend{editServed: true})
		resp, raw := do(t, http.MethodPost, srv.URL+"/v1/images/edits", "", "application/json", strings.NewReader(`{"prompt":"p"}`))
		if e := decodeEnvelope(t, raw); resp.StatusCode != 400 || !strings.Contains(e.Error.Message, "multipart/form-data") {
			t.Errorf("%d %s", resp.StatusCode, raw)
		}
	})
	t.Run("too large", func(t *testing.T) {
		srv := newTestServer(t, &fakeBackend{editServed: true})
		ct, body := multipartBody(t, map[string]string{"prompt": strings.Repeat("p", 1<<17)}, 1)
		resp, raw := do(t, http.MethodPost, srv.URL+"/v1/images/edits", "", ct, body)
		if resp.StatusCode != 413 {
			t.Errorf("%d %s", resp.StatusCode, raw)
		}
	})
}

type sseEvent struct {
	name string
	data map[string]any
}

func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var events []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
				t.Fatalf("data %q: %v", line, err)
			}
		case line == "":
			if cur.name != "" || cur.data != nil {
				events = append(events, cur)
			}
			cur = sseEvent{}
		}
	}
	return events
}

func previewJPEG() []byte { return []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00preview") }

func TestStream(t *testing.T) {
	f := &fakeBackend{progress: []Progress{
		{Step: 1, TotalSteps: 12}, {Step: 4, TotalSteps: 12, Preview: previewJPEG()},
		{Step: 8, TotalSteps: 12, Preview: previewJPEG()}, {Step: 12, TotalSteps: 12},
	}}
	srv := newTestServer(t, f)
	resp, raw := postJSON(t, srv, "", `{"prompt":"p","size":"96x64","n":2,"stream":true,"partial_images":2}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, raw)
	}
	events := readSSE(t, bytes.NewReader(raw))
	var names []string
	for _, e := range events {
		names = append(names, e.name)
		if e.data["type"] != e.name {
			t.Errorf("event %q carries type %v", e.name, e.data["type"])
		}
	}
	want := []string{EventGenerationPartial, EventGenerationPartial, EventGenerationCompleted, EventGenerationCompleted}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v", names)
	}
	if events[0].data["partial_image_index"] != 0.0 || events[1].data["partial_image_index"] != 1.0 ||
		events[0].data["output_format"] != "jpeg" {
		t.Errorf("partials %v", events[:2])
	}
	for _, e := range events[2:] {
		if w, h := pngSize(t, e.data["b64_json"].(string)); w != 96 || h != 64 || e.data["size"] != "96x64" || e.data["usage"] == nil {
			t.Errorf("completed %v", e.data)
		}
	}
	if !f.submissions[0].Progress || f.released != 1 {
		t.Errorf("progress %v released %d", f.submissions[0].Progress, f.released)
	}
	if in := decodeInput(t, f.submissions[0].Input); in["sync_mode"] != true {
		t.Errorf("stream input %v", in)
	}
}

func TestStreamWithoutPartials(t *testing.T) {
	f := &fakeBackend{progress: []Progress{{Step: 4, TotalSteps: 8, Preview: previewJPEG()}}}
	srv := newTestServer(t, f)
	_, raw := postJSON(t, srv, "", `{"prompt":"p","size":"96x64","stream":true}`)
	events := readSSE(t, bytes.NewReader(raw))
	if len(events) != 1 || events[0].name != EventGenerationCompleted {
		t.Errorf("events %v", events)
	}
}

func TestStreamFailureIsAnErrorEvent(t *testing.T) {
	f := &fakeBackend{failure: &FalError{Status: 400, Body: json.RawMessage(`{"detail":"Request cancelled","error_type":"request_cancelled"}`)}}
	srv := newTestServer(t, f)
	resp, raw := postJSON(t, srv, "", `{"prompt":"p","size":"96x64","stream":true}`)
	events := readSSE(t, bytes.NewReader(raw))
	if resp.StatusCode != 200 || len(events) != 1 || events[0].name != EventError {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	e, _ := events[0].data["error"].(map[string]any)
	if e["message"] != "Request cancelled" || e["code"] != "request_cancelled" || events[0].data["type"] != "error" {
		t.Errorf("error event %v", events[0].data)
	}
}

// A validation error of a stream is an ordinary JSON answer: nothing was
// streamed yet.
func TestStreamValidationErrorIsJSON(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{})
	resp, raw := postJSON(t, srv, "", `{"prompt":"p","n":7,"stream":true}`)
	if resp.StatusCode != 400 || *decodeEnvelope(t, raw).Error.Param != "n" {
		t.Errorf("%d %s", resp.StatusCode, raw)
	}
}

// A client that leaves a stream cancels its request.
func TestStreamClientGoneCancels(t *testing.T) {
	f := &fakeBackend{hold: make(chan struct{})}
	defer close(f.hold)
	srv := newTestServer(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/images/generations",
		strings.NewReader(`{"prompt":"p","size":"96x64","stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	resp.Body.Close()
	for i := 0; ; i++ {
		f.mu.Lock()
		n := len(f.cancelled)
		f.mu.Unlock()
		if n == 1 {
			break
		}
		if i > 500 {
			t.Fatal("request not cancelled after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client that leaves a plain request cancels it too.
func TestClientGoneCancels(t *testing.T) {
	f := &fakeBackend{hold: make(chan struct{})}
	defer close(f.hold)
	srv := newTestServer(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/images/generations",
		strings.NewReader(`{"prompt":"p","size":"96x64"}`))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request completed while held")
	}
	for i := 0; ; i++ {
		f.mu.Lock()
		n := len(f.cancelled)
		f.mu.Unlock()
		if n == 1 {
			break
		}
		if i > 500 {
			t.Fatal("request not cancelled after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
