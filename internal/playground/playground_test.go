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
	h := Handler(Config{AuthRequired: true, Served: []string{wire.EndpointBase.ID}})
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
	if doc.AuthRequired || doc.Endpoint != wire.EndpointBase.ID || doc.AppID != wire.AppID || doc.Served == nil {
		t.Errorf("doc %+v", doc)
	}
	cnsDef := cns.DefaultParams()
	checks := map[string]any{
		"guidance_scale": wire.DefaultGuidanceScale, "num_inference_steps": float64(wire.DefaultNumInferenceSteps),
		"image_size": wire.DefaultImageSize, "num_images": float64(wire.DefaultNumImages), "acceleration": string(wire.DefaultAcceleration),
		"output_format": string(wire.DefaultOutputFormat), "enable_safety_checker": true, "sync_mode": false, "seed": nil,
		"cns_s_churn": cnsDef.SChurn, "cns_num_freq_bins": float64(cnsDef.NumFreqBins),
		"cns_gamma_source": string(cnsDef.GammaSource), "cns_energy_scale": cnsDef.EnergyScale,
	}
	for name, want := range checks {
		if got := doc.Fields[name].Default; got != want {
			t.Errorf("%s default %v, want %v", name, got, want)
		}
	}
	if f := doc.Fields["num_inference_steps"]; *f.Min != wire.MinSteps || *f.Max != wire.MaxSteps {
		t.Errorf("steps bounds %v %v", *f.Min, *f.Max)
	}
	if doc.SizePresets["square_hd"] != wire.SizePresets["square_hd"] || doc.MaxSide != wire.MaxSide {
		t.Errorf("sizes %+v", doc)
	}
}

// Every field of the endpoint's input appears in the page's config, so
// the form offers it with its default.
func TestConfigCoversTheEndpointInput(t *testing.T) {
	doc := NewDocument(Config{})
	for _, name := range inputFields() {
		if name == "prompt" {
			continue
		}
		if _, ok := doc.Fields[name]; !ok {
			t.Errorf("field %s has no default in the playground config", name)
		}
	}
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
