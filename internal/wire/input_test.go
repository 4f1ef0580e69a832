package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
)

func TestParseInputDefaults(t *testing.T) {
	p, err := ParseInput([]byte(`{"prompt":"a cat"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Endpoint: EndpointBase.ID,
		Prompt: "a cat", GuidanceScale: 5, NumInferenceSteps: 28, Size: Size{1024, 768}, NumImages: 1,
		Acceleration: "regular", EnableSafetyChecker: true, OutputFormat: "png",
		CNS: cns.Params{SChurn: 0.5, GammaSource: "matrix", PowerGamma: 0.75, GammaDivider: 1.73,
			AlphaTiltStart: 0.15, AlphaTiltEnd: -0.5, AlphaUseFnorm: true, AlphaExpInterp: true,
			AlphaExpSharpness: 0.75, NumFreqBins: 32, EnergyScale: 0.98},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", p, want)
	}
}

func TestParseInputEveryField(t *testing.T) {
	body := `{"prompt":"p","negative_prompt":"n","guidance_scale":0,"num_inference_steps":50.0,
	"image_size":{"width":2048,"height":2048},"num_images":4,"seed":-9223372036854775808,"acceleration":"high",
	"enable_safety_checker":false,"output_format":"webp","sync_mode":true,"enable_cns":true,"cns_s_churn":2,
	"cns_gamma_source":"approximation","cns_power_gamma":0.1,"cns_gamma_divider":50,"cns_alpha_tilt_start":-2,
	"cns_alpha_tilt_end":2,"cns_alpha_use_fnorm":false,"cns_alpha_exp_interp":false,"cns_alpha_exp_sharpness":10,
	"cns_num_freq_bins":8,"cns_energy_scale":1.5,"unknown_field":{"ignored":[1,2]}}`
	p, err := ParseInput([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	seed := int64(-9223372036854775808)
	want := Params{Endpoint: EndpointBase.ID,
		Prompt: "p", NegativePrompt: "n", GuidanceScale: 0, NumInferenceSteps: 50, Size: Size{2048, 2048},
		NumImages: 4, Seed: &seed, Acceleration: "high", EnableSafetyChecker: false, OutputFormat: "webp",
		SyncMode: true,
		CNS: cns.Params{Enable: true, SChurn: 2, GammaSource: "approximation", PowerGamma: 0.1, GammaDivider: 50,
			AlphaTiltStart: -2, AlphaTiltEnd: 2, AlphaUseFnorm: false, AlphaExpInterp: false,
			AlphaExpSharpness: 10, NumFreqBins: 8, EnergyScale: 1.5},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
}

func TestParseInputPresetsAndPartialCustomSize(t *testing.T) {
	for name, size := range SizePresets {
		p, err := ParseInput([]byte(`{"prompt":"x","image_size":"` + name + `"}`))
		if err != nil || p.Size != size {
			t.Errorf("%s: got %v, %v", name, p.Size, err)
		}
	}
	p, err := ParseInput([]byte(`{"prompt":"x","image_size":{"width":1280}}`))
	if err != nil || p.Size != (Size{1280, 512}) {
		t.Errorf("partial custom size: got %v, %v", p.Size, err)
	}
}

func TestParseInputNullMeansDefault(t *testing.T) {
	p, err := ParseInput([]byte(`{"prompt":"x","seed":null,"num_images":null,"image_size":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Seed != nil || p.NumImages != 1 || p.Size != (Size{1024, 768}) {
		t.Fatalf("null not treated as absent: %+v", p)
	}
}

// TestDecodeInputRejects feeds every field bad values and checks the 422
// names the field, with the pydantic error type.
func TestDecodeInputRejects(t *testing.T) {
	big := strings.Repeat("a", 1<<20)
	cases := []struct {
		name, body string
		loc        []any
		typ        string
	}{
		{"empty body", ``, []any{"body"}, "missing"},
		{"null body", `null`, []any{"body"}, "missing"},
		{"array body", `[{"prompt":"x"}]`, []any{"body"}, "model_attributes_type"},
		{"string body", `"a cat"`, []any{"body"}, "model_attributes_type"},
		{"number body", `42`, []any{"body"}, "model_attributes_type"},
		{"malformed json", `{"prompt": "x",}`, []any{"body", int64(16)}, "json_invalid"},
		{"truncated json", `{"prompt": "x"`, []any{"body", int64(14)}, "json_invalid"},
		{"trailing garbage", `{"prompt":"x"} {}`, []any{"body", int64(16)}, "json_invalid"},
		{"missing prompt", `{}`, []any{"body", "prompt"}, "missing"},
		{"null prompt", `{"prompt":null}`, []any{"body", "prompt"}, "string_type"},
		{"empty prompt", `{"prompt":""}`, []any{"body", "prompt"}, "string_too_short"},
		{"number prompt", `{"prompt":123}`, []any{"body", "prompt"}, "string_type"},
		{"array prompt", `{"prompt":["a"]}`, []any{"body", "prompt"}, "string_type"},
		{"1 MB prompt", `{"prompt":"` + big + `"}`, []any{"body", "prompt"}, "string_too_long"},
		{"10001 char prompt", `{"prompt":"` + strings.Repeat("é", 10001) + `"}`, []any{"body", "prompt"}, "string_too_long"},
		{"negative prompt type", `{"prompt":"x","negative_prompt":false}`, []any{"body", "negative_prompt"}, "string_type"},
		{"negative prompt long", `{"prompt":"x","negative_prompt":"` + big + `"}`, []any{"body", "negative_prompt"}, "string_too_long"},
		{"guidance string", `{"prompt":"x","guidance_scale":"5"}`, []any{"body", "guidance_scale"}, "float_type"},
		{"guidance negative", `{"prompt":"x","guidance_scale":-0.1}`, []any{"body", "guidance_scale"}, "greater_than_equal"},
		{"guidance huge", `{"prompt":"x","guidance_scale":1e309}`, []any{"body", "guidance_scale"}, "float_type"},
		{"guidance 21", `{"prompt":"x","guidance_scale":20.5}`, []any{"body", "guidance_scale"}, "less_than_equal"},
		{"steps 0", `{"prompt":"x","num_inference_steps":0}`, []any{"body", "num_inference_steps"}, "greater_than_equal"},
		{"steps 51", `{"prompt":"x","num_inference_steps":51}`, []any{"body", "num_inference_steps"}, "less_than_equal"},
		{"steps fraction", `{"prompt":"x","num_inference_steps":2.5}`, []any{"body", "num_inference_steps"}, "int_from_float"},
		{"steps bool", `{"prompt":"x","num_inference_steps":true}`, []any{"body", "num_inference_steps"}, "int_type"},
		{"steps overflow", `{"prompt":"x","num_inference_steps":99999999999999999999}`, []any{"body", "num_inference_steps"}, "int_parsing_size"},
		{"num_images 0", `{"prompt":"x","num_images":0}`, []any{"body", "num_images"}, "greater_than_equal"},
		{"num_images 1000", `{"prompt":"x","num_images":1000}`, []any{"body", "num_images"}, "less_than_equal"},
		{"num_images negative", `{"prompt":"x","num_images":-1}`, []any{"body", "num_images"}, "greater_than_equal"},
		{"num_images string", `{"prompt":"x","num_images":"2"}`, []any{"body", "num_images"}, "int_type"},
		{"seed string", `{"prompt":"x","seed":"42"}`, []any{"body", "seed"}, "int_type"},
		{"seed fraction", `{"prompt":"x","seed":4.2}`, []any{"body", "seed"}, "int_from_float"},
		{"seed overflow", `{"prompt":"x","seed":9223372036854775808}`, []any{"body", "seed"}, "int_parsing_size"},
		{"seed float overflow", `{"prompt":"x","seed":1e19}`, []any{"body", "seed"}, "int_parsing_size"},
		{"unknown size preset", `{"prompt":"x","image_size":"huge"}`, []any{"body", "image_size"}, "enum"},
		{"size number", `{"prompt":"x","image_size":512}`, []any{"body", "image_size"}, "model_type"},
		{"size array", `{"prompt":"x","image_size":[512,512]}`, []any{"body", "image_size"}, "model_type"},
		{"width zero", `{"prompt":"x","image_size":{"width":0,"height":512}}`, []any{"body", "image_size", "width"}, "greater_than_equal"},
		{"width negative", `{"prompt":"x","image_size":{"width":-512,"height":512}}`, []any{"body", "image_size", "width"}, "greater_than_equal"},
		{"height huge", `{"prompt":"x","image_size":{"width":512,"height":100000}}`, []any{"body", "image_size", "height"}, "less_than_equal"},
		{"width not multiple", `{"prompt":"x","image_size":{"width":520,"height":512}}`, []any{"body", "image_size", "width"}, "multiple_of"},
		{"height string", `{"prompt":"x","image_size":{"width":512,"height":"512"}}`, []any{"body", "image_size", "height"}, "int_type"},
		{"too many pixels", `{"prompt":"x","image_size":{"width":2048,"height":2064}}`, []any{"body", "image_size", "height"}, "less_than_equal"},
		{"acceleration unknown", `{"prompt":"x","acceleration":"turbo"}`, []any{"body", "acceleration"}, "enum"},
		{"acceleration number", `{"prompt":"x","acceleration":1}`, []any{"body", "acceleration"}, "string_type"},
		{"safety string", `{"prompt":"x","enable_safety_checker":"true"}`, []any{"body", "enable_safety_checker"}, "bool_type"},
		{"safety number", `{"prompt":"x","enable_safety_checker":1}`, []any{"body", "enable_safety_checker"}, "bool_type"},
		{"format unknown", `{"prompt":"x","output_format":"gif"}`, []any{"body", "output_format"}, "enum"},
		{"format jpg", `{"prompt":"x","output_format":"jpg"}`, []any{"body", "output_format"}, "enum"},
		{"sync_mode string", `{"prompt":"x","sync_mode":"yes"}`, []any{"body", "sync_mode"}, "bool_type"},
		{"enable_cns number", `{"prompt":"x","enable_cns":1}`, []any{"body", "enable_cns"}, "bool_type"},
		{"s_churn negative", `{"prompt":"x","cns_s_churn":-0.1}`, []any{"body", "cns_s_churn"}, "greater_than_equal"},
		{"s_churn big", `{"prompt":"x","cns_s_churn":2.01}`, []any{"body", "cns_s_churn"}, "less_than_equal"},
		{"gamma_source unknown", `{"prompt":"x","cns_gamma_source":"table"}`, []any{"body", "cns_gamma_source"}, "enum"},
		{"power_gamma low", `{"prompt":"x","cns_power_gamma":0.09}`, []any{"body", "cns_power_gamma"}, "greater_than_equal"},
		{"power_gamma high", `{"prompt":"x","cns_power_gamma":3.1}`, []any{"body", "cns_power_gamma"}, "less_than_equal"},
		{"gamma_divider low", `{"prompt":"x","cns_gamma_divider":0}`, []any{"body", "cns_gamma_divider"}, "greater_than_equal"},
		{"gamma_divider high", `{"prompt":"x","cns_gamma_divider":51}`, []any{"body", "cns_gamma_divider"}, "less_than_equal"},
		{"tilt start low", `{"prompt":"x","cns_alpha_tilt_start":-2.5}`, []any{"body", "cns_alpha_tilt_start"}, "greater_than_equal"},
		{"tilt end high", `{"prompt":"x","cns_alpha_tilt_end":3}`, []any{"body", "cns_alpha_tilt_end"}, "less_than_equal"},
		{"fnorm string", `{"prompt":"x","cns_alpha_use_fnorm":"false"}`, []any{"body", "cns_alpha_use_fnorm"}, "bool_type"},
		{"exp_interp number", `{"prompt":"x","cns_alpha_exp_interp":0}`, []any{"body", "cns_alpha_exp_interp"}, "bool_type"},
		{"sharpness low", `{"prompt":"x","cns_alpha_exp_sharpness":0.05}`, []any{"body", "cns_alpha_exp_sharpness"}, "greater_than_equal"},
		{"sharpness high", `{"prompt":"x","cns_alpha_exp_sharpness":11}`, []any{"body", "cns_alpha_exp_sharpness"}, "less_than_equal"},
		{"freq bins low", `{"prompt":"x","cns_num_freq_bins":7}`, []any{"body", "cns_num_freq_bins"}, "greater_than_equal"},
		{"freq bins high", `{"prompt":"x","cns_num_freq_bins":129}`, []any{"body", "cns_num_freq_bins"}, "less_than_equal"},
		{"freq bins fraction", `{"prompt":"x","cns_num_freq_bins":16.5}`, []any{"body", "cns_num_freq_bins"}, "int_from_float"},
		{"energy low", `{"prompt":"x","cns_energy_scale":0.4}`, []any{"body", "cns_energy_scale"}, "greater_than_equal"},
		{"energy high", `{"prompt":"x","cns_energy_scale":1.6}`, []any{"body", "cns_energy_scale"}, "less_than_equal"},
		{"energy string", `{"prompt":"x","cns_energy_scale":"1"}`, []any{"body", "cns_energy_scale"}, "float_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseInput([]byte(tc.body))
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("want *ValidationError, got %v", err)
			}
			if len(verr.Detail) != 1 {
				t.Fatalf("want one error, got %+v", verr.Detail)
			}
			d := verr.Detail[0]
			if !reflect.DeepEqual(d.Loc, tc.loc) || d.Type != tc.typ {
				t.Fatalf("got loc %v type %q msg %q; want loc %v type %q", d.Loc, d.Type, d.Msg, tc.loc, tc.typ)
			}
			if d.Msg == "" {
				t.Fatal("empty message")
			}
			// The envelope must encode and stay small even for a 1 MB input.
			raw, err := json.Marshal(verr)
			if err != nil || len(raw) > 4096 {
				t.Fatalf("envelope: %d bytes, %v", len(raw), err)
			}
		})
	}
}

func TestDecodeInputReportsEveryError(t *testing.T) {
	_, err := ParseInput([]byte(`{"num_images":9,"output_format":"gif","image_size":{"width":8,"height":17}}`))
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatal(err)
	}
	got := fmt.Sprint(verr.Fields())
	if got != "[prompt image_size image_size num_images output_format]" {
		t.Fatalf("fields %s", got)
	}
}

func TestPixelLimit(t *testing.T) {
	// 2048x2048 is exactly MaxPixels: allowed. Every larger area needs a side
	// above MaxSide, so the pixel rule only bites if the limits change; test
	// it directly through the decoder to keep it honest.
	if _, err := ParseInput([]byte(`{"prompt":"x","image_size":{"width":2048,"height":2048}}`)); err != nil {
		t.Fatalf("4 MP rejected: %v", err)
	}
	d := fieldDecoder{fields: map[string]json.RawMessage{"image_size": json.RawMessage(`{"width":2048,"height":2048}`)}}
	if d.imageSizeValue("image_size") == nil || len(d.errs) != 0 {
		t.Fatal("unexpected failure")
	}
	if MinSide*MinSide > MaxPixels || MinSide%SizeMultiple != 0 || MaxSide%SizeMultiple != 0 {
		t.Fatal("inconsistent size limits")
	}
}

func TestEnumMessage(t *testing.T) {
	_, err := ParseInput([]byte(`{"prompt":"x","acceleration":"max"}`))
	var verr *ValidationError
	errors.As(err, &verr)
	if verr.Detail[0].Msg != "Input should be 'none', 'regular' or 'high'" {
		t.Fatalf("message %q", verr.Detail[0].Msg)
	}
}

func TestImageSizeMarshal(t *testing.T) {
	a, _ := json.Marshal(ImageSize{Preset: "square"})
	b, _ := json.Marshal(ImageSize{Custom: Size{64, 128}})
	if string(a) != `"square"` || string(b) != `{"width":64,"height":128}` {
		t.Fatalf("%s %s", a, b)
	}
}

// TestPolicyInsideEngine holds fal's policy inside what the engine and the
// CNS sampler accept, and its defaults inside its own ranges: a request the
// API accepts never fails the engine's own checks.
func TestPolicyInsideEngine(t *testing.T) {
	if MinSide < engine.MinSide || MaxSide > engine.MaxSide || MaxPixels > engine.MaxPixels ||
		SizeMultiple%engine.SizeMultiple != 0 || MinSide%SizeMultiple != 0 {
		t.Errorf("image size policy [%d, %d] /%d, %d px outside the engine's [%d, %d] /%d, %d px",
			MinSide, MaxSide, SizeMultiple, MaxPixels, engine.MinSide, engine.MaxSide, engine.SizeMultiple, engine.MaxPixels)
	}
	if MinNumImages < 1 || MaxNumImages > engine.MaxImages || MinSteps < 1 || MaxSteps > engine.MaxSteps || MinGuidance < 0 {
		t.Error("num_images, steps or guidance policy outside the engine's limits")
	}
	for _, s := range SizePresets {
		if s.Width%SizeMultiple != 0 || s.Height%SizeMultiple != 0 || s.Width < MinSide || s.Height < MinSide ||
			s.Width > MaxSide || s.Height > MaxSide {
			t.Errorf("preset %v outside the policy", s)
		}
	}
	// Every bound of every numeric field, sent with CNS on, makes a
	// request the engine (and through it the CNS sampler) accepts.
	for _, ep := range Endpoints() {
		for _, f := range ep.Fields() {
			if f.Min == nil {
				continue
			}
			for _, v := range []float64{*f.Min, *f.Max} {
				var value any = v
				if f.Kind == KindLoRAs {
					value = []map[string]any{{"path": "style.safetensors", "scale": v}}
				}
				body, _ := json.Marshal(map[string]any{"prompt": "x", "enable_cns": true, f.Name: value,
					"image_size": "square", "image_urls": []string{"http://example.com/a.png"}})
				p, err := ep.ParseInput(body)
				if err != nil {
					t.Fatalf("%s: %s = %g refused: %v", ep.ID, f.Name, v, err)
				}
				req := p.Request()
				if err := req.Check(); err != nil {
					t.Errorf("%s = %g accepted by the API, refused by the engine: %v", f.Name, v, err)
				}
			}
		}
	}
	// Defaults: the endpoint's defaults parse back as themselves and the
	// engine accepts the request they make.
	p, err := ParseInput([]byte(`{"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.CNS != cns.DefaultParams() {
		t.Errorf("CNS defaults %+v differ from the sampler's %+v", p.CNS, cns.DefaultParams())
	}
	p.CNS.Enable = true
	req := p.Request()
	if err := req.Check(); err != nil {
		t.Errorf("default request refused by the engine: %v", err)
	}
}

// TestParamsRequest checks the one mapping from the protocol to an engine
// request, field by field.
func TestParamsRequest(t *testing.T) {
	params, err := ParseInput([]byte(`{"prompt":"p","negative_prompt":"n","guidance_scale":3.5,"num_inference_steps":9,
	"image_size":{"width":96,"height":64},"num_images":3,"seed":11,"acceleration":"high","enable_safety_checker":false,
	"output_format":"webp","enable_cns":true,"cns_s_churn":1.5,"cns_gamma_source":"approximation","cns_power_gamma":2,
	"cns_gamma_divider":25,"cns_alpha_tilt_start":-1,"cns_alpha_tilt_end":1,"cns_alpha_use_fnorm":false,
	"cns_alpha_exp_interp":false,"cns_alpha_exp_sharpness":4,"cns_num_freq_bins":64,"cns_energy_scale":0.998}`))
	if err != nil {
		t.Fatal(err)
	}
	got := params.Request()
	want := engine.Request{Prompt: "p", NegativePrompt: "n", GuidanceScale: 3.5, Steps: 9, Width: 96, Height: 64,
		NumImages: 3, Seed: 11, Acceleration: "high", EnableSafetyChecker: false, OutputFormat: "webp",
		CNS: cns.Params{Enable: true, SChurn: 1.5, GammaSource: "approximation", PowerGamma: 2, GammaDivider: 25,
			AlphaTiltStart: -1, AlphaTiltEnd: 1, AlphaUseFnorm: false, AlphaExpInterp: false, AlphaExpSharpness: 4,
			NumFreqBins: 64, EnergyScale: 0.998}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("mapping\n got %+v\nwant %+v", got, want)
	}
}

func TestParseLoRAs(t *testing.T) {
	p, err := EndpointLoRA.ParseInput([]byte(`{"prompt":"x","loras":[{"path":"https://h/a.safetensors"},{"path":"style","scale":-0.5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []LoRAWeight{{Path: "https://h/a.safetensors", Scale: engine.DefaultLoRAScale}, {Path: "style", Scale: -0.5}}
	if !reflect.DeepEqual(p.LoRAs, want) || p.Endpoint != EndpointLoRA.ID {
		t.Fatalf("loras %+v", p.LoRAs)
	}
	req := p.Request()
	if len(req.LoRAs) != 2 || req.LoRAs[1].Scale != -0.5 || req.LoRAs[0].Path != "https://h/a.safetensors" {
		t.Fatalf("engine loras %+v", req.LoRAs)
	}
	if p, err := EndpointLoRA.ParseInput([]byte(`{"prompt":"x"}`)); err != nil || p.LoRAs != nil {
		t.Fatalf("no loras: %+v %v", p.LoRAs, err)
	}
	for body, loc := range map[string]string{
		`{"prompt":"x","loras":"a"}`: `["body","loras"]`,
		`{"prompt":"x","loras":[{"path":"a"},{"path":"b"},{"path":"c"},{"path":"d"}]}`: `["body","loras"]`,
		`{"prompt":"x","loras":[5]}`:                                   `["body","loras",0]`,
		`{"prompt":"x","loras":[{"scale":1}]}`:                         `["body","loras",0,"path"]`,
		`{"prompt":"x","loras":[{"path":""}]}`:                         `["body","loras",0,"path"]`,
		`{"prompt":"x","loras":[{"path":"a"},{"path":"b","scale":9}]}`: `["body","loras",1,"scale"]`,
		`{"prompt":"x","loras":[{"path":"a","scale":"1"}]}`:            `["body","loras",0,"scale"]`,
	} {
		_, err := EndpointLoRA.ParseInput([]byte(body))
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: accepted", body)
			continue
		}
		raw, _ := json.Marshal(verr.Detail[0].Loc)
		if string(raw) != loc {
			t.Errorf("%s: loc %s, want %s", body, raw, loc)
		}
	}
	// The text-to-image endpoint ignores loras, as it ignores any unknown field.
	if p, err := ParseInput([]byte(`{"prompt":"x","loras":[{"path":"a"}]}`)); err != nil || p.LoRAs != nil {
		t.Fatalf("base endpoint: %+v %v", p.LoRAs, err)
	}
}

func TestCatalog(t *testing.T) {
	distilled := Model{ID: "fal-ai/flux-2/klein/4b", Distilled: true}
	cat, err := NewCatalog(Base4B, distilled)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ep := range cat.Endpoints() {
		ids = append(ids, ep.ID)
	}
	want := "[fal-ai/flux-2/klein/4b/base fal-ai/flux-2/klein/4b/base/edit fal-ai/flux-2/klein/4b/base/lora " +
		"fal-ai/flux-2/klein/4b/base/edit/lora fal-ai/flux-2/klein/4b fal-ai/flux-2/klein/4b/edit]"
	if fmt.Sprint(ids) != want {
		t.Fatalf("endpoints %v", ids)
	}
	if ep, ok := cat.Lookup("fal-ai/flux-2/klein/4b/edit"); !ok || !ep.Edit || !ep.Distilled || ep.Model != distilled.ID {
		t.Fatalf("lookup %+v %v", ep, ok)
	}
	if _, ok := cat.Lookup("fal-ai/flux-2/klein/4b/lora"); ok {
		t.Fatal("a model without LoRA inputs has a LoRA endpoint")
	}
	for _, bad := range [][]Model{{}, {Base4B, Base4B}, {{ID: "other/app"}}} {
		if _, err := NewCatalog(bad...); err == nil {
			t.Errorf("catalog of %v accepted", bad)
		}
	}
}

// A distilled endpoint has fal's distilled schema: 4 steps by default, no
// guidance, negative prompt, acceleration or CNS fields (ignored when sent,
// as unknown fields are), and no classifier-free guidance in the request.
func TestDistilledInput(t *testing.T) {
	ep := Model{ID: "fal-ai/flux-2/klein/4b", Distilled: true}.Endpoints()[0]
	for _, f := range ep.Fields() {
		switch f.Name {
		case "guidance_scale", "negative_prompt", "acceleration", "enable_cns", "cns_s_churn":
			t.Errorf("distilled field %s", f.Name)
		}
	}
	p, err := ep.ParseInput([]byte(`{"prompt":"x","guidance_scale":"ignored","negative_prompt":7}`))
	if err != nil {
		t.Fatal(err)
	}
	req := p.Request()
	if p.NumInferenceSteps != DefaultDistilledSteps || req.UsesCFG() || p.NegativePrompt != "" ||
		p.Acceleration != engine.AccelerationNone || p.CNS.Active() {
		t.Fatalf("distilled params %+v", p)
	}
	if err := req.Check(); err != nil {
		t.Fatalf("engine refuses the distilled defaults: %v", err)
	}
}
