package playground

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/wire"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(body)
}

func TestServesThePage(t *testing.T) {
	h := Handler(Config{AuthRequired: true})
	for _, c := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/playground/app.js">`},
		{"/playground/app.js", "text/javascript; charset=utf-8", "sseEvents"},
		{"/playground/style.css", "text/css; charset=utf-8", "prefers-color-scheme"},
		{"/playground/config.json", "application/json", `"auth_required":true`},
	} {
		resp, body := get(t, h, c.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.contentType || !strings.Contains(body, c.contains) {
			t.Errorf("%s: %d %q, body lacks %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains)
		}
	}
	for _, path := range []string{"/playground/missing.js", "/playground/", "/other", "/playground/../playground.go"} {
		if resp, _ := get(t, h, path); resp.StatusCode == 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
}

// The page's defaults and bounds are package wire's.
func TestConfigDocument(t *testing.T) {
	_, body := get(t, Handler(Config{}), "/playground/config.json")
	var doc Document
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AuthRequired || doc.AppID != wire.AppID || len(doc.Models) != 1 {
		t.Fatalf("doc %+v", doc)
	}
	m := doc.Models[0]
	if m.ID != wire.Base4B.ID || m.Distilled || !m.LoRA || len(m.Endpoints) != 4 || m.Endpoints[0].ID != wire.EndpointBase.ID {
		t.Fatalf("model %+v", m)
	}
	fields := m.Endpoints[0].Fields
	cnsDef := cns.DefaultParams()
	checks := map[string]any{
		"guidance_scale": wire.DefaultGuidanceScale, "num_inference_steps": float64(wire.DefaultNumInferenceSteps),
		"image_size": wire.DefaultImageSize, "num_images": float64(wire.DefaultNumImages), "acceleration": string(wire.DefaultAcceleration),
		"output_format": string(wire.DefaultOutputFormat), "enable_safety_checker": true, "sync_mode": false, "seed": nil,
		"cns_s_churn": cnsDef.SChurn, "cns_num_freq_bins": float64(cnsDef.NumFreqBins),
		"cns_gamma_source": string(cnsDef.GammaSource), "cns_energy_scale": cnsDef.EnergyScale,
	}
	for name, want := range checks {
		if got := fields[name].Default; got != want {
			t.Errorf("%s default %v, want %v", name, got, want)
		}
	}
	if f := fields["num_inference_steps"]; *f.Min != wire.MinSteps || *f.Max != wire.MaxSteps {
		t.Errorf("steps bounds %v %v", *f.Min, *f.Max)
	}
	if def := m.Endpoints[1].Fields["image_size"].Default; !m.Endpoints[1].Edit || def != nil {
		t.Errorf("edit endpoint %s: image_size default %v, want none (the first reference's size)", m.Endpoints[1].ID, def)
	}
	if doc.SizePresets["square_hd"] != wire.SizePresets["square_hd"] || doc.MaxSide != wire.MaxSide {
		t.Errorf("sizes %+v", doc)
	}
}

// Every served model is listed, in the catalog's order, and each of its
// endpoints carries exactly its own fields, each default and bound as
// wire's field table has it: a distilled model's endpoints have no
// guidance, negative prompt, acceleration or CNS fields and default to
// its own number of steps.
func TestConfigDocumentPerEndpoint(t *testing.T) {
	distilled4B := wire.Model{ID: "fal-ai/flux-2/klein/4b", Distilled: true, LoRA: true}
	base9B := wire.Model{ID: "fal-ai/flux-2/klein/9b/base"} // no LoRA endpoints
	cat, err := wire.NewCatalog(distilled4B, wire.Base4B, base9B)
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, Handler(Config{Catalog: cat}), "/playground/config.json")
	var doc Document
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Models) != len(cat.Models()) {
		t.Fatalf("%d models in the document, %d served", len(doc.Models), len(cat.Models()))
	}
	for i, wm := range cat.Models() {
		m := doc.Models[i]
		if m.ID != wm.ID || m.Distilled != wm.Distilled || m.LoRA != wm.LoRA || len(m.Endpoints) != len(wm.Endpoints()) {
			t.Errorf("model %d: %+v, want %+v with %d endpoints", i, m, wm, len(wm.Endpoints()))
			continue
		}
		for j, ep := range wm.Endpoints() {
			got := m.Endpoints[j]
			if got.ID != ep.ID || got.Edit != ep.Edit || got.LoRA != ep.LoRA {
				t.Errorf("endpoint %+v, want %s edit=%v lora=%v", got, ep.ID, ep.Edit, ep.LoRA)
			}
			want := map[string]bool{}
			for _, f := range ep.Fields() {
				want[f.Name] = true
				d, ok := got.Fields[f.Name]
				if !ok {
					t.Errorf("%s: field %s missing", ep.ID, f.Name)
					continue
				}
				if !sameJSON(d.Default, f.Default) || !sameJSON(d.Min, f.Min) || !sameJSON(d.Max, f.Max) || !sameJSON(d.Enum, f.Enum) {
					want, _ := json.Marshal(Field{Default: f.Default, Min: f.Min, Max: f.Max, Enum: f.Enum})
					have, _ := json.Marshal(d)
					t.Errorf("%s: field %s is %s, wire has %s", ep.ID, f.Name, have, want)
				}
			}
			if ep.LoRA {
				want["lora_scale"] = true
				if s := got.Fields["lora_scale"]; s.Min == nil || *s.Min != engine.MinLoRAScale || *s.Max != engine.MaxLoRAScale || s.Default != engine.DefaultLoRAScale {
					t.Errorf("%s: lora_scale %+v", ep.ID, s)
				}
			}
			for name := range got.Fields {
				if !want[name] {
					t.Errorf("%s: the document offers %s, which the endpoint does not take", ep.ID, name)
				}
			}
			steps := got.Fields["num_inference_steps"].Default
			if wm.Distilled {
				for name := range got.Fields {
					if name == "guidance_scale" || name == "negative_prompt" || name == "acceleration" || strings.HasPrefix(name, "cns_") || name == "enable_cns" {
						t.Errorf("distilled %s offers %s", ep.ID, name)
					}
				}
				if steps != float64(wire.DefaultDistilledSteps) {
					t.Errorf("distilled %s: steps default %v, want %d", ep.ID, steps, wire.DefaultDistilledSteps)
				}
			} else {
				if _, ok := got.Fields["guidance_scale"]; !ok {
					t.Errorf("%s has no guidance_scale", ep.ID)
				}
				if steps != float64(wire.DefaultNumInferenceSteps) {
					t.Errorf("%s: steps default %v, want %d", ep.ID, steps, wire.DefaultNumInferenceSteps)
				}
			}
		}
	}
}

// sameJSON reports whether a value read back from the document equals
// wire's, both seen through JSON.
func sameJSON(got, want any) bool {
	a, errA := json.Marshal(got)
	b, errB := json.Marshal(want)
	return errA == nil && errB == nil && string(a) == string(b)
}

// Every element the script looks up by a literal id exists in the page.
func TestScriptIDsExistInThePage(t *testing.T) {
	js, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	generated := map[string]bool{"image_size": true, "width": true, "height": true, "custom-size": true}
	for _, name := range inputFields() {
		generated[name] = true
	}
	for _, m := range regexp.MustCompile(`\$\("([a-z0-9_-]+)"\)`).FindAllStringSubmatch(string(js), -1) {
		id := m[1]
		if !generated[id] && !strings.Contains(string(html), `id="`+id+`"`) {
			t.Errorf("app.js uses #%s, which index.html lacks", id)
		}
	}
}

// inputFields are the names of every endpoint's input fields.
func inputFields() []string {
	var names []string
	for _, ep := range wire.Endpoints() {
		for _, f := range ep.Fields() {
			names = append(names, f.Name)
		}
	}
	return names
}
