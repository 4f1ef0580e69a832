package openai

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// pngBytes is the smallest header http.DetectContentType calls image/png.
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")

func decodeInput(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("input %s: %v", raw, err)
	}
	return m
}

func TestParseGenerationTranslates(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		input  map[string]any
		format string
		stream bool
		parts  int
		size   string
	}{
		{
			name:   "minimal: endpoint defaults, url",
			body:   `{"prompt":"a fox"}`,
			input:  map[string]any{"prompt": "a fox", "sync_mode": false},
			format: FormatURL, size: SizeAuto,
		},
		{
			name: "every OpenAI field",
			body: `{"prompt":"a fox","model":"fal-ai/flux-2/klein/4b/base","n":2,"size":"1024x768",
				"response_format":"b64_json","output_format":"webp","output_compression":80,"background":"opaque",
				"quality":"hd","style":"vivid","moderation":"low","user":"u1","safety_identifier":"s"}`,
			input: map[string]any{"prompt": "a fox", "num_images": 2.0, "image_size": map[string]any{"width": 1024.0, "height": 768.0},
				"sync_mode": true, "output_format": "webp"},
			format: FormatB64JSON, size: "1024x768",
		},
		{
			name: "extra body fields pass through under their names",
			body: `{"prompt":"p","seed":42,"num_inference_steps":8,"guidance_scale":3.5,"negative_prompt":"blur",
				"acceleration":"none","enable_safety_checker":false,"enable_cns":true,"cns_s_churn":0.7,"cns_gamma_source":"approximation"}`,
			input: map[string]any{"prompt": "p", "sync_mode": false, "seed": 42.0, "num_inference_steps": 8.0, "guidance_scale": 3.5,
				"negative_prompt": "blur", "acceleration": "none", "enable_safety_checker": false, "enable_cns": true,
				"cns_s_churn": 0.7, "cns_gamma_source": "approximation"},
			format: FormatURL, size: SizeAuto,
		},
		{
			name:   "size auto leaves the endpoint default",
			body:   `{"prompt":"p","size":"auto"}`,
			input:  map[string]any{"prompt": "p", "sync_mode": false},
			format: FormatURL, size: SizeAuto,
		},
		{
			name:   "stream forces b64_json and keeps partial_images",
			body:   `{"prompt":"p","stream":true,"partial_images":2}`,
			input:  map[string]any{"prompt": "p", "sync_mode": true},
			format: FormatB64JSON, stream: true, parts: 2, size: SizeAuto,
		},
		{
			name:   "nulls count as absent",
			body:   `{"prompt":"p","n":null,"size":null,"model":null,"seed":null}`,
			input:  map[string]any{"prompt": "p", "sync_mode": false, "seed": nil},
			format: FormatURL, size: SizeAuto,
		},
		{
			name:   "values the endpoint judges are passed on unjudged",
			body:   `{"prompt":"p","n":99,"size":"7x5","output_format":"gif"}`,
			input:  map[string]any{"prompt": "p", "sync_mode": false, "num_images": 99.0, "image_size": map[string]any{"width": 7.0, "height": 5.0}, "output_format": "gif"},
			format: FormatURL, size: "7x5",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := ParseGeneration([]byte(c.body), nil)
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got := decodeInput(t, req.Input); !reflect.DeepEqual(got, c.input) {
				t.Errorf("input\n got %v\nwant %v", got, c.input)
			}
			if req.EndpointID != wire.EndpointBase.ID || req.Kind != Generation {
				t.Errorf("endpoint %q kind %v", req.EndpointID, req.Kind)
			}
			if req.ResponseFormat != c.format || req.Stream != c.stream || req.PartialImages != c.parts || req.Size != c.size {
				t.Errorf("request %+v", req)
			}
		})
	}
}

// Every translated valid request is one the endpoint's validator accepts.
func TestParseGenerationOutputPassesTheEndpointValidator(t *testing.T) {
	for _, body := range []string{
		`{"prompt":"a fox"}`,
		`{"prompt":"a fox","n":4,"size":"512x768","response_format":"b64_json","output_format":"jpeg","seed":1}`,
		`{"prompt":"a fox","stream":true,"partial_images":3,"enable_cns":true,"cns_num_freq_bins":64}`,
	} {
		req, e := ParseGeneration([]byte(body), nil)
		if e != nil {
			t.Fatalf("%s: %v", body, e)
		}
		if _, err := wire.ParseInput(req.Input); err != nil {
			t.Errorf("%s → %s: %v", body, req.Input, err)
		}
	}
}

func TestParseGenerationRejects(t *testing.T) {
	cases := []struct {
		body   string
		status int
		param  string
		code   string
		msg    string
	}{
		{`[1]`, 400, "", CodeInvalidJSON, "JSON body"},
		{`{"prompt":`, 400, "", CodeInvalidJSON, "JSON body"},
		{``, 400, "", CodeInvalidJSON, "JSON body"},
		{`{"prompt":"p","bogus":1}`, 400, "bogus", CodeUnknownParameter, "Unrecognized request argument supplied: bogus"},
		{`{"prompt":"p","num_images":2}`, 400, "num_images", CodeUnknownParameter, "from 'n'"},
		{`{"prompt":"p","image_size":"square"}`, 400, "image_size", CodeUnknownParameter, "from 'size'"},
		{`{"prompt":"p","sync_mode":true}`, 400, "sync_mode", CodeUnknownParameter, "from 'response_format'"},
		{`{"prompt":"p","model":"dall-e-3"}`, 404, "model", CodeModelNotFound, "'dall-e-3' does not exist"},
		{`{"prompt":"p","model":3}`, 400, "model", CodeInvalidType, "string"},
		{`{"prompt":"p","size":"1024*768"}`, 400, "size", CodeInvalidValue, "WIDTHxHEIGHT"},
		{`{"prompt":"p","size":"-16x64"}`, 400, "size", CodeInvalidValue, "WIDTHxHEIGHT"},
		{`{"prompt":"p","size":"0x64"}`, 400, "size", CodeInvalidValue, "WIDTHxHEIGHT"},
		{`{"prompt":"p","size":1024}`, 400, "size", CodeInvalidType, "string"},
		{`{"prompt":"p","response_format":"png"}`, 400, "response_format", CodeInvalidValue, "'url' or 'b64_json'"},
		{`{"prompt":"p","stream":true,"response_format":"url"}`, 400, "response_format", CodeUnsupportedValue, "b64_json"},
		{`{"prompt":"p","stream":"yes"}`, 400, "stream", CodeInvalidType, "boolean"},
		{`{"prompt":"p","partial_images":4}`, 400, "partial_images", CodeInvalidValue, "from 0 to 3"},
		{`{"prompt":"p","partial_images":1.5}`, 400, "partial_images", CodeInvalidType, "integer"},
		{`{"prompt":"p","output_compression":101}`, 400, "output_compression", CodeInvalidValue, "from 0 to 100"},
		{`{"prompt":"p","background":"transparent"}`, 400, "background", CodeUnsupportedValue, "opaque"},
		{`{"prompt":"p","background":"blue"}`, 400, "background", CodeInvalidValue, "opaque"},
		{`{"prompt":"p","quality":5}`, 400, "quality", CodeInvalidType, "string"},
		{`{"prompt":"p","image_urls":[]}`, 400, "image_urls", CodeUnknownParameter, "from 'image'"},
		{`{"prompt":"p","mask":"x"}`, 400, "mask", CodeUnknownParameter, "mask"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			_, e := ParseGeneration([]byte(c.body), nil)
			if e == nil {
				t.Fatal("accepted")
			}
			if e.Status != c.status || e.Param != c.param || e.Code != c.code || !strings.Contains(e.Message, c.msg) {
				t.Errorf("got %d param=%q code=%q %q; want %d %q %q containing %q", e.Status, e.Param, e.Code, e.Message,
					c.status, c.param, c.code, c.msg)
			}
			if e.Type != TypeInvalidRequest {
				t.Errorf("type %q", e.Type)
			}
		})
	}
}

// editForm builds a multipart form as the clients send it.
func editForm(t *testing.T, values map[string]string, files map[string][][]byte) *multipart.Form {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range values {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for name, contents := range files {
		for i, data := range contents {
			fw, err := mw.CreateFormFile(name, "img"+string(rune('0'+i))+".png")
			if err != nil {
				t.Fatal(err)
			}
			fw.Write(data)
		}
	}
	mw.Close()
	form, err := multipart.NewReader(&buf, mw.Boundary()).ReadForm(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { form.RemoveAll() })
	return form
}

func TestParseEditTranslates(t *testing.T) {
	jpeg := []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")
	form := editForm(t, map[string]string{
		"prompt": "make it blue", "n": "2", "size": "512x512", "response_format": "b64_json",
		"seed": "7", "guidance_scale": "4.5", "enable_cns": "true", "num_inference_steps": "eight",
		"stream": "false", "input_fidelity": "high",
	}, map[string][][]byte{"image[]": {pngBytes, jpeg}})
	req, e := ParseEdit(form, nil)
	if e != nil {
		t.Fatal(e)
	}
	if req.Kind != Edit || req.EndpointID != EditEndpoint(wire.Base4B.ID) || req.ResponseFormat != FormatB64JSON || req.Size != "512x512" {
		t.Errorf("request %+v", req)
	}
	in := decodeInput(t, req.Input)
	urls, _ := in["image_urls"].([]any)
	if len(urls) != 2 || !strings.HasPrefix(urls[0].(string), "data:image/png;base64,") ||
		!strings.HasPrefix(urls[1].(string), "data:image/jpeg;base64,") {
		t.Errorf("image_urls %v", in["image_urls"])
	}
	delete(in, "image_urls")
	want := map[string]any{"prompt": "make it blue", "num_images": 2.0, "image_size": map[string]any{"width": 512.0, "height": 512.0},
		"sync_mode": true, "seed": 7.0, "guidance_scale": 4.5, "enable_cns": true,
		// Not a number: passed as a string, so the validator names the field.
		"num_inference_steps": "eight"}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("input\n got %v\nwant %v", in, want)
	}
}

func TestParseEditImagesInOrder(t *testing.T) {
	form := editForm(t, map[string]string{"prompt": "p"}, map[string][][]byte{"image": {pngBytes}})
	req, e := ParseEdit(form, nil)
	if e != nil {
		t.Fatal(e)
	}
	if urls := decodeInput(t, req.Input)["image_urls"].([]any); len(urls) != 1 {
		t.Errorf("image_urls %v", urls)
	}
	// No image at all still reaches the validator, which names 'image'.
	req, e = ParseEdit(editForm(t, map[string]string{"prompt": "p"}, nil), nil)
	if e != nil {
		t.Fatal(e)
	}
	if urls := decodeInput(t, req.Input)["image_urls"].([]any); len(urls) != 0 {
		t.Errorf("image_urls %v", urls)
	}
}

func TestParseEditRejects(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]string
		files  map[string][][]byte
		param  string
		code   string
		msg    string
	}{
		{"mask file", map[string]string{"prompt": "p"}, map[string][][]byte{"image": {pngBytes}, "mask": {pngBytes}},
			"mask", CodeUnsupportedParameter, "Masked editing is not supported"},
		{"mask text", map[string]string{"prompt": "p", "mask": "m"}, map[string][][]byte{"image": {pngBytes}},
			"mask", CodeUnsupportedParameter, "Masked editing"},
		{"not an image", map[string]string{"prompt": "p"}, map[string][][]byte{"image": {[]byte("hello world")}},
			"image", CodeInvalidValue, "not a PNG, JPEG, WebP or BMP image"},
		{"a GIF", map[string]string{"prompt": "p"}, map[string][][]byte{"image": {[]byte("GIF89a\x01\x00\x01\x00")}},
			"image", CodeInvalidValue, "GIF images are not supported"},
		{"image as text", map[string]string{"prompt": "p", "image": "http://x/a.png"}, nil,
			"image", CodeInvalidType, "image files"},
		{"unknown file", map[string]string{"prompt": "p"}, map[string][][]byte{"picture": {pngBytes}},
			"picture", CodeUnknownParameter, "picture"},
		{"style is generation-only", map[string]string{"prompt": "p", "style": "vivid"}, map[string][][]byte{"image": {pngBytes}},
			"style", CodeUnknownParameter, "style"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, e := ParseEdit(editForm(t, c.values, c.files), nil)
			if e == nil {
				t.Fatal("accepted")
			}
			if e.Status != http.StatusBadRequest || e.Param != c.param || e.Code != c.code || !strings.Contains(e.Message, c.msg) {
				t.Errorf("got %+v; want param %q code %q containing %q", e, c.param, c.code, c.msg)
			}
		})
	}
}

func TestFormValueJSON(t *testing.T) {
	cases := []struct {
		v    string
		kind paramKind
		want string
	}{
		{"42", kindInt, `42`},
		{" 4.5 ", kindNumber, `4.5`},
		{"-1", kindInt, `-1`},
		{"1e3", kindNumber, `1e3`},
		{"0x10", kindInt, `"0x10"`},
		{"NaN", kindNumber, `"NaN"`},
		{"", kindInt, `""`},
		{"true", kindBool, `true`},
		{"False", kindBool, `false`},
		{"1", kindBool, `"1"`},
		{"a \"q\"", kindString, `"a \"q\""`},
		{"42", kindString, `"42"`},
	}
	for _, c := range cases {
		if got := string(formValueJSON(c.v, c.kind)); got != c.want {
			t.Errorf("formValueJSON(%q, %v) = %s, want %s", c.v, c.kind, got, c.want)
		}
	}
}

// The pass-through list is the fal endpoints' fields less those OpenAI
// parameters set; a field added to the endpoint becomes an extra field.
func TestPassthroughParams(t *testing.T) {
	got := passthroughParams()
	for _, name := range []string{"seed", "num_inference_steps", "guidance_scale", "negative_prompt", "acceleration",
		"enable_safety_checker", "enable_cns", "cns_s_churn", "cns_gamma_source", "cns_energy_scale", "cns_num_freq_bins"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s is not passed through", name)
		}
	}
	for _, name := range []string{"prompt", "image_size", "num_images", "sync_mode", "output_format"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s is passed through", name)
		}
	}
	if got["seed"] != kindInt || got["guidance_scale"] != kindNumber || got["enable_cns"] != kindBool || got["acceleration"] != kindString {
		t.Errorf("kinds %v", got)
	}
}
