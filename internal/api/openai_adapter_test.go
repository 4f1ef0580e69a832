package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/openai"
	"github.com/kleinserve/kleinserve/internal/playground"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// OpenAI requests run on the same queue, keys and engine as fal's.
func TestOpenAIOnTheQueue(t *testing.T) {
	env := newEnv(t, envOptions{keys: []string{"k"}, previewEvery: 2})
	bearer := map[string]string{"Authorization": "Bearer k", "Content-Type": "application/json"}

	r := env.do("POST", "/v1/images/generations", `{"prompt":"a fox"}`, nil)
	if r.status != 401 || !strings.Contains(string(r.body), `"code":"invalid_api_key"`) {
		t.Fatalf("no key: %d %s", r.status, r.body)
	}

	r = env.do("POST", "/v1/images/generations", `{"prompt":"a fox","size":"96x64","seed":5,"num_inference_steps":3}`, bearer)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var resp openai.ImagesResponse
	json.Unmarshal(r.body, &resp)
	if len(resp.Data) != 1 || !strings.HasPrefix(resp.Data[0].URL, env.base+"/files/") || resp.Size != "96x64" || resp.Seed != 5 {
		t.Errorf("response %s", r.body)
	}
	if req := env.engine.last(); req.Steps != 3 || req.Width != 96 || req.Height != 64 || req.Seed != 5 || req.PreviewEvery != 0 {
		t.Errorf("engine request %+v", req)
	}
	if got := env.do("GET", resp.Data[0].URL, "", nil); got.status != 200 || !bytes.HasPrefix(got.body, []byte("\x89PNG")) {
		t.Errorf("image url: %d", got.status)
	}

	r = env.do("POST", "/v1/images/generations", `{"prompt":"a fox","n":7}`, bearer)
	if r.status != 400 || !strings.Contains(string(r.body), `"param":"n"`) {
		t.Errorf("validation: %d %s", r.status, r.body)
	}
	r = env.do("POST", "/v1/images/generations", `{"prompt":"a fox","size":"4096x64"}`, bearer)
	if r.status != 400 || !strings.Contains(string(r.body), `"param":"size"`) {
		t.Errorf("size: %d %s", r.status, r.body)
	}

	// Streams get previews every PreviewEvery steps: 2 and 4 of 6.
	r = env.do("POST", "/v1/images/generations", `{"prompt":"a fox","size":"64x64","num_inference_steps":6,"stream":true,"partial_images":2}`, bearer)
	events, _ := readSSE(t, bytes.NewReader(r.body))
	var types []string
	for _, ev := range events {
		types = append(types, ev.fields["event"][0])
	}
	if want := "image_generation.partial_image,image_generation.partial_image,image_generation.completed"; strings.Join(types, ",") != want {
		t.Errorf("stream events %v\n%s", types, r.body)
	}
	if req := env.engine.last(); req.PreviewEvery != 2 {
		t.Errorf("stream engine request %+v", req)
	}

	r = env.do("GET", "/v1/models", "", bearer)
	if r.status != 200 || !strings.Contains(string(r.body), `"id":"fal-ai/flux-2/klein/4b/base"`) {
		t.Errorf("models: %d %s", r.status, r.body)
	}
}

// The playground at "/" offers what the server serves: its config
// document lists the catalog's models, in order, each with its endpoints.
func TestPlaygroundOffersTheCatalog(t *testing.T) {
	distilled := wire.Model{ID: "fal-ai/flux-2/klein/4b", Distilled: true}
	cat, err := wire.NewCatalog(wire.Base4B, distilled)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, envOptions{keys: []string{"k"}, catalog: cat})
	r := env.do("GET", "/playground/config.json", "", nil)
	if r.status != 200 {
		t.Fatalf("config: %d %s", r.status, r.body)
	}
	var doc playground.Document
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range doc.Models {
		got = append(got, m.ID)
		for _, ep := range m.Endpoints {
			got = append(got, ep.ID)
		}
	}
	var want []string
	for _, m := range cat.Models() {
		want = append(want, m.ID)
		for _, ep := range m.Endpoints() {
			want = append(want, ep.ID)
		}
	}
	if !doc.AuthRequired || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("auth %v, models and endpoints %v, want %v", doc.AuthRequired, got, want)
	}
	if len(doc.Models) == 2 && !doc.Models[1].Distilled {
		t.Errorf("second model %+v is not distilled", doc.Models[1])
	}
}
