package lora

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bflModules lists the BFL module names of the tiny model with their
// (in, out): a fused qkv's out is its three parts'.
func bflModules(t *testing.T, tg *Targets) map[string][2]int {
	names := []string{}
	for g := range bflGlobals {
		if g != "guidance_in.in_layer" && g != "guidance_in.out_layer" { // klein has no guidance embedder
			names = append(names, g)
		}
	}
	for b := 0; b < 2; b++ {
		for m := range bflDouble {
			names = append(names, fmt.Sprintf("double_blocks.%d.%s", b, m))
		}
		for m := range bflSingle {
			names = append(names, fmt.Sprintf("single_blocks.%d.%s", b, m))
		}
	}
	out := map[string][2]int{}
	for _, n := range names {
		idx := tg.resolve(n, false)
		if len(idx) == 0 {
			t.Fatalf("BFL module %s resolves to nothing", n)
		}
		o := 0
		for _, i := range idx {
			o += tg.At(i).Out
		}
		out[n] = [2]int{tg.At(idx[0]).In, o}
	}
	return out
}

type pair struct{ a, b []float32 } // a [r,in], b [out,r]

func randomBFL(t *testing.T, tg *Targets, r int, seed uint64) map[string]pair {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := map[string]pair{}
	mods := bflModules(t, tg)
	for _, n := range sortedKeys(mods) {
		io := mods[n]
		out[n] = pair{randVals(rng, r*io[0]), randVals(rng, io[1]*r)}
	}
	return out
}

// layout writes the BFL-named LoRA in one of the layouts trainers use.
func layout(t *testing.T, tg *Targets, name string, p map[string]pair, r int, alpha float32) []byte {
	ts := map[string]st{}
	mods := bflModules(t, tg)
	put := func(module, a, b string, m string) {
		io := mods[m]
		ts[module+a] = st{F32, []int{r, io[0]}, p[m].a}
		ts[module+b] = st{F32, []int{io[1], r}, p[m].b}
	}
	for m := range p {
		switch name {
		case "bfl":
			put("diffusion_model."+m, ".lora_A.weight", ".lora_B.weight", m)
		case "fal":
			put("base_model.model."+m, ".lora_A.weight", ".lora_B.weight", m)
		case "bare":
			put(m, ".lora_A.weight", ".lora_B.weight", m)
		case "comfy-down-up":
			put("diffusion_model."+m, ".lora_down.weight", ".lora_up.weight", m)
		case "kohya":
			k := "lora_unet_" + strings.ReplaceAll(m, ".", "_")
			put(k, ".lora_down.weight", ".lora_up.weight", m)
			ts[k+".alpha"] = st{BF16, []int{}, []float32{alpha}}
		case "diffusers":
			// diffusers splits a fused qkv: the same A for q, k and v, B by rows.
			idx := tg.resolve(m, false)
			row := 0
			for _, i := range idx {
				tgt := tg.At(i)
				ts["transformer."+tgt.Module+".lora_A.weight"] = st{F32, []int{r, tgt.In}, p[m].a}
				ts["transformer."+tgt.Module+".lora_B.weight"] = st{F32, []int{tgt.Out, r}, p[m].b[row*r : (row+tgt.Out)*r]}
				row += tgt.Out
			}
		default:
			t.Fatalf("layout %s", name)
		}
	}
	return encode(t, ts, nil)
}

func convertBytes(t *testing.T, tg *Targets, data []byte) (*Adapter, error) {
	f, err := ParseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	return Convert(f, tg)
}

// TestLayoutsAgree: one LoRA written in every layout gives the same graph
// inputs, fused qkv split the way diffusers splits it.
func TestLayoutsAgree(t *testing.T) {
	tg := tinyTargets(t)
	const r = 4
	p := randomBFL(t, tg, r, 1)
	var want *Stacked
	for _, name := range []string{"diffusers", "bfl", "fal", "bare", "comfy-down-up", "kohya"} {
		ad, err := convertBytes(t, tg, layout(t, tg, name, p, r, r))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(ad.Factors) != tg.Len() {
			t.Fatalf("%s: %d factors, want one per target (%d)", name, len(ad.Factors), tg.Len())
		}
		got := Stack(tg, []Weighted{{ad, 1}})
		if want == nil {
			want = got
			continue
		}
		for i := range got.A {
			if !slices.Equal(got.A[i], want.A[i]) || !slices.Equal(got.B[i], want.B[i]) {
				t.Fatalf("%s: target %s differs from the diffusers layout", name, tg.At(i).Module)
			}
		}
	}
}

func TestAlphaScales(t *testing.T) {
	tg := tinyTargets(t)
	p := randomBFL(t, tg, 6, 2)
	ad, err := convertBytes(t, tg, layout(t, tg, "kohya", p, 6, 3))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ad.Factors {
		if f.Scale != 0.5 {
			t.Fatalf("%s: scale %v, want alpha/rank = 0.5", tg.At(f.Target).Module, f.Scale)
		}
	}
	// diffusers' LoraConfig in the safetensors metadata.
	rng := rand.New(rand.NewPCG(3, 3))
	ts := map[string]st{
		"transformer.x_embedder.lora_A.weight":      {F32, []int{4, 128}, randVals(rng, 4*128)},
		"transformer.x_embedder.lora_B.weight":      {F32, []int{32, 4}, randVals(rng, 32*4)},
		"transformer.proj_out.lora_A.weight":        {F32, []int{4, 32}, randVals(rng, 4*32)},
		"transformer.proj_out.lora_B.weight":        {F32, []int{128, 4}, randVals(rng, 128*4)},
		"transformer.norm_out.linear.lora_A.weight": {F32, []int{4, 32}, randVals(rng, 4*32)},
		"transformer.norm_out.linear.lora_B.weight": {F32, []int{64, 4}, randVals(rng, 64*4)},
	}
	for _, tc := range []struct {
		meta map[string]any
		want map[string]float32
	}{
		{map[string]any{"transformer.r": 4, "transformer.lora_alpha": 8}, map[string]float32{"x_embedder": 2, "proj_out": 2, "norm_out.linear": 2}},
		{map[string]any{"r": 4, "lora_alpha": 8}, map[string]float32{"x_embedder": 2, "proj_out": 2, "norm_out.linear": 2}},
		{map[string]any{"transformer.lora_alpha": 8, "transformer.alpha_pattern": map[string]float64{"proj_out": 2, "^norm_out\\.linear": 12}},
			map[string]float32{"x_embedder": 2, "proj_out": 0.5, "norm_out.linear": 3}},
		{map[string]any{"transformer.lora_alpha": 8, "transformer.use_rslora": true}, map[string]float32{"x_embedder": 4, "proj_out": 4, "norm_out.linear": 4}},
		{map[string]any{"transformer.r": 4}, map[string]float32{"x_embedder": 1, "proj_out": 1, "norm_out.linear": 1}},
	} {
		raw, _ := json.Marshal(tc.meta)
		ad, err := convertBytes(t, tg, encode(t, ts, map[string]string{"lora_adapter_metadata": string(raw)}))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range ad.Factors {
			if m := tg.At(f.Target).Module; f.Scale != tc.want[m] {
				t.Errorf("metadata %s: %s scale %v, want %v", raw, m, f.Scale, tc.want[m])
			}
		}
	}
	raw, _ := json.Marshal(map[string]any{"transformer.use_dora": true, "transformer.lora_alpha": 4})
	if _, err := convertBytes(t, tg, encode(t, ts, map[string]string{"lora_adapter_metadata": string(raw)})); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DoRA metadata: %v", err)
	}
}

func TestConvertRejectsNamingTheFirstBadKey(t *testing.T) {
	tg := tinyTargets(t)
	rng := rand.New(rand.NewPCG(4, 4))
	good := func() map[string]st {
		return map[string]st{
			"transformer.x_embedder.lora_A.weight": {F32, []int{2, 128}, randVals(rng, 256)},
			"transformer.x_embedder.lora_B.weight": {F32, []int{32, 2}, randVals(rng, 64)},
		}
	}
	with := func(extra map[string]st) map[string]st {
		m := good()
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	a := func(r, in int) st { return st{F32, []int{r, in}, randVals(rng, r*in)} }
	for _, tc := range []struct {
		name    string
		tensors map[string]st
		kind    error
		key     string
		says    string
	}{
		{"unknown block", with(map[string]st{"transformer.transformer_blocks.7.attn.to_q.lora_A.weight": a(2, 32),
			"transformer.transformer_blocks.7.attn.to_q.lora_B.weight": a(32, 2)}), ErrUnknownKey, "transformer.transformer_blocks.7.attn.to_q.lora_A.weight", ""},
		{"text encoder key", with(map[string]st{"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": a(2, 8)}), ErrUnknownKey,
			"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", ""},
		{"not a LoRA tensor", with(map[string]st{"transformer.x_embedder.weight": a(32, 128)}), ErrUnknownKey, "transformer.x_embedder.weight", ""},
		{"A of the wrong width", with(map[string]st{"transformer.proj_out.lora_A.weight": a(2, 31), "transformer.proj_out.lora_B.weight": a(128, 2)}),
			ErrShape, "transformer.proj_out.lora_A.weight", ""},
		{"B of the wrong rank", with(map[string]st{"transformer.proj_out.lora_A.weight": a(2, 32), "transformer.proj_out.lora_B.weight": a(128, 3)}),
			ErrShape, "transformer.proj_out.lora_B.weight", ""},
		{"fused qkv of the wrong height", with(map[string]st{"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": a(2, 32),
			"diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": a(64, 2)}), ErrShape, "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight", ""},
		{"A without B", with(map[string]st{"transformer.proj_out.lora_A.weight": a(2, 32)}), ErrIncomplete, "transformer.proj_out.lora_A.weight", ""},
		{"same target twice", with(map[string]st{"diffusion_model.img_in.lora_A.weight": a(2, 128), "diffusion_model.img_in.lora_B.weight": a(32, 2)}),
			ErrDuplicate, "transformer.x_embedder.lora_A.weight", ""},
		{"LoKr", with(map[string]st{"diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1": a(4, 4)}), ErrUnsupported,
			"diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1", "LoKr"},
		{"LyCORIS LoKr", map[string]st{"lycoris_transformer_blocks_0_attn_to_q.lokr_w1": a(4, 4)}, ErrUnsupported,
			"lycoris_transformer_blocks_0_attn_to_q.lokr_w1", "LoKr"},
		{"LoHa", with(map[string]st{"lora_unet_img_in.hada_w1_a": a(4, 4)}), ErrUnsupported, "lora_unet_img_in.hada_w1_a", "LoHa"},
		{"DoRA", with(map[string]st{"transformer.x_embedder.lora_magnitude_vector": {F32, []int{32}, randVals(rng, 32)}}), ErrUnsupported,
			"transformer.x_embedder.lora_magnitude_vector", "DoRA"},
		{"alpha of two numbers", with(map[string]st{"transformer.x_embedder.alpha": {F32, []int{2}, []float32{1, 2}}}), ErrShape, "transformer.x_embedder.alpha", ""},
		{"NaN", map[string]st{"transformer.x_embedder.lora_A.weight": {F32, []int{1, 128}, append([]float32{float32(math.NaN())}, make([]float32, 127)...)},
			"transformer.x_embedder.lora_B.weight": a(32, 1)}, ErrValue, "transformer.x_embedder.lora_A.weight", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ad, err := convertBytes(t, tg, encode(t, tc.tensors, nil))
			if ad != nil || !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, %v; want %v", ad, err, tc.kind)
			}
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("error %q does not name %q", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q does not say %q", err, tc.says)
			}
		})
	}
	if _, err := convertBytes(t, tg, encode(t, map[string]st{}, nil)); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty file: %v", err)
	}
	f, _ := ParseSafetensors(encode(t, good(), nil))
	if _, err := Convert(f, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("model without LoRA inputs: %v", err)
	}
}

// TestReferenceFilesConvert: the files the reference cases load (one per
// layout, F32, F16 and BF16) convert onto the tiny model.
func TestReferenceFilesConvert(t *testing.T) {
	tg := tinyTargets(t)
	raw, err := os.ReadFile("../../testdata/reference/lora/index.json")
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Files map[string]struct {
			File    string `json:"file"`
			Layout  string `json:"layout"`
			Modules int    `json:"modules"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	wantLayout := map[string]string{"diffusers": "diffusers", "bfl": "bfl", "kohya": "kohya", "fal": "peft"}
	for name, f := range idx.Files {
		data, err := os.ReadFile(filepath.Join("../../testdata/reference/lora", f.File))
		if err != nil {
			t.Fatal(err)
		}
		ad, err := convertBytes(t, tg, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ad.Layout != wantLayout[f.Layout] {
			t.Errorf("%s: layout %q, want %q", name, ad.Layout, wantLayout[f.Layout])
		}
		t.Logf("%s: %s, %d modules -> %d targets, %d bytes", name, ad.Layout, f.Modules, len(ad.Factors), ad.Bytes)
	}
}
