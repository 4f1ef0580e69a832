package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
)

// The LoRA reference cases: diffusers' Flux2KleinPipeline with
// load_lora_weights and set_adapters on models/tiny, with random LoRA files
// in each layout (scripts/reference_lora.py).
const loraReferenceDir = referenceDir + "/lora"

type loraRefCase struct {
	refCase
	LoRAs []struct {
		File  string  `json:"file"`
		Scale float64 `json:"scale"`
	} `json:"loras"`
	Effect float64 `json:"lora_effect"`
}

func loadLoRAIndex(t testing.TB) []loraRefCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(loraReferenceDir, "index.json"))
	if err != nil {
		t.Fatalf("LoRA reference index: %v", err)
	}
	var idx struct {
		Cases []loraRefCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Cases
}

func loraRequest(t testing.TB, c loraRefCase, withLoRA bool) engine.Request {
	req := engine.Request{
		Prompt: c.Prompt, NegativePrompt: c.NegativePrompt, GuidanceScale: c.GuidanceScale,
		Steps: c.Steps, Width: c.Width, Height: c.Height, NumImages: max(1, c.NumImages), Seed: c.Seed,
		Acceleration: engine.AccelerationNone, OutputFormat: engine.FormatPNG,
		InitialNoise: refF32FromDir(t, loraReferenceDir, c.Arrays["initial_noise"]),
	}
	if withLoRA {
		for _, l := range c.LoRAs {
			req.LoRAs = append(req.LoRAs, engine.LoRA{Path: l.File, Scale: l.Scale})
		}
	}
	return req
}

func refF32FromDir(t testing.TB, dir string, a refArray) []float32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, a.File))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestReferenceLoRA holds the Go pipeline to diffusers with LoRAs loaded:
// final latents within 1e-4 relative error, images within 1/255, for one
// LoRA in each layout and three at once. Each case also runs without its
// LoRAs and must then miss the reference by far, so the check cannot pass
// with the LoRAs ignored.
func TestReferenceLoRA(t *testing.T) {
	store, err := lora.NewStore(lora.StoreConfig{Dir: loraReferenceDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := openTinyWith(t, func(c *Config) { c.LoRA = store })
	for _, c := range loadLoRAIndex(t) {
		t.Run(c.Name, func(t *testing.T) {
			want := refF32FromDir(t, loraReferenceDir, c.Arrays["final_latents"])
			var final []float32
			e.debugFinalLatents = func(x []float32) { final = append([]float32(nil), x...) }
			defer func() { e.debugFinalLatents = nil }()
			res, err := e.Generate(context.Background(), loraRequest(t, c, true), nil)
			if err != nil {
				t.Fatal(err)
			}
			r := relErr(final, want)
			t.Logf("final latents relative error %.3g (the LoRAs move them by %.3g)", r, c.Effect)
			if r > 1e-4 {
				t.Fatalf("final latents relative error %.3g > 1e-4", r)
			}
			b, err := os.ReadFile(filepath.Join(loraReferenceDir, c.Arrays["image"].File))
			if err != nil {
				t.Fatal(err)
			}
			n := c.Width * c.Height * 3
			for k, img := range res.Images {
				pix := decodePNG(t, img.Data)
				worst := 0
				for i := 0; i < n; i++ {
					d := int(pix[i]) - int(b[k*n+i])
					worst = max(worst, d, -d)
				}
				if worst > 1 {
					t.Fatalf("image %d: max channel difference %d > 1", k, worst)
				}
			}
			if _, err := e.Generate(context.Background(), loraRequest(t, c, false), nil); err != nil {
				t.Fatal(err)
			}
			if r := relErr(final, want); r < 1e-2 {
				t.Fatalf("without its LoRAs the case still matches (relative error %.3g): the check is blind", r)
			}
		})
	}
}
