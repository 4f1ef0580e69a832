package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
)

// The LoRA reference cases: diffusers' Flux2KleinPipeline with
// load_lora_weights and set_adapters on models/tiny, with random LoRA files
// in each layout, some with reference images (image=[...], the edit
// pipeline) (scripts/reference_lora.py).
const loraReferenceDir = referenceDir + "/lora"

type loraRefCase struct {
	refCase
	LoRAs []struct {
		File  string  `json:"file"`
		Scale float64 `json:"scale"`
	} `json:"loras"`
	Effect float64 `json:"lora_effect"`
	// References are passed in this order; File is relative to
	// loraReferenceDir (the edit cases' PNGs).
	References []struct {
		File   string `json:"file"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
		SHA256 string `json:"sha256"`
	} `json:"references"`
	ReferenceEffect float64 `json:"reference_effect"`
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

// loraRequest is a case as an engine request, with or without its LoRAs
// and its reference images (to show that each of them matters).
func loraRequest(t testing.TB, c loraRefCase, withLoRA, withRefs bool) engine.Request {
	t.Helper()
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
	if withRefs {
		for _, r := range c.References {
			path := filepath.Join(loraReferenceDir, filepath.FromSlash(r.File))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != r.SHA256 {
				t.Fatalf("%s changed since the case was generated (rerun scripts/reference_lora.py)", r.File)
			}
			ref := readReferencePNG(t, path)
			if ref.Width != r.Width || ref.Height != r.Height {
				t.Fatalf("%s: %dx%d, index says %dx%d", r.File, ref.Width, ref.Height, r.Width, r.Height)
			}
			req.References = append(req.References, ref)
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

// TestReferenceLoRACoverage keeps the cases what they are meant to be: one
// LoRA in each layout, several at once, and LoRAs with reference images,
// one and two references, one LoRA and two at different scales, with CFG.
func TestReferenceLoRACoverage(t *testing.T) {
	var several, editOne, editSeveral bool
	refCounts := map[int]bool{}
	for _, c := range loadLoRAIndex(t) {
		several = several || len(c.LoRAs) > 1 && len(c.References) == 0
		if len(c.References) == 0 || c.GuidanceScale <= 1 {
			continue
		}
		refCounts[len(c.References)] = true
		editOne = editOne || len(c.LoRAs) == 1
		editSeveral = editSeveral || len(c.LoRAs) > 1 && c.LoRAs[0].Scale != c.LoRAs[1].Scale
	}
	if !several || !editOne || !editSeveral || !refCounts[1] || !refCounts[2] {
		t.Fatalf("LoRA cases miss a kind: several LoRAs %v; with references and CFG: one LoRA %v, "+
			"several at different scales %v, reference counts %v", several, editOne, editSeveral, refCounts)
	}
}

// TestReferenceLoRA holds the Go pipeline to diffusers with LoRAs loaded:
// final latents within 1e-4 relative error, images within 1/255, for one
// LoRA in each layout, three at once, and LoRAs with reference images. Each
// case also runs without its LoRAs (and without its reference images, if it
// has any) and must then miss the reference by far, so the check cannot
// pass with either ignored.
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
			res, err := e.Generate(context.Background(), loraRequest(t, c, true, true), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(final) != len(want) {
				t.Fatalf("final latents: %d values, want %d", len(final), len(want))
			}
			r := relErr(final, want)
			b, err := os.ReadFile(filepath.Join(loraReferenceDir, c.Arrays["image"].File))
			if err != nil {
				t.Fatal(err)
			}
			n := c.Width * c.Height * 3
			if len(res.Images)*n != len(b) {
				t.Fatalf("%d images of %dx%d, the reference holds %d bytes", len(res.Images), c.Width, c.Height, len(b))
			}
			worst := 0
			for k, img := range res.Images {
				worst = max(worst, pngDiff(t, img.Data, b[k*n:(k+1)*n]))
			}
			moved := fmt.Sprintf("the LoRAs move the latents by %.3g", c.Effect)
			if len(c.References) > 0 {
				moved += fmt.Sprintf(", the reference images by %.3g", c.ReferenceEffect)
			}
			t.Logf("final latents relative error %.3g, images max channel difference %d/255 (%s)", r, worst, moved)
			if r > 1e-4 {
				t.Fatalf("final latents relative error %.3g > 1e-4", r)
			}
			if worst > 1 {
				t.Fatalf("images: max channel difference %d > 1", worst)
			}
			blind := func(what string, req engine.Request) {
				t.Helper()
				if _, err := e.Generate(context.Background(), req, nil); err != nil {
					t.Fatal(err)
				}
				r := relErr(final, want)
				t.Logf("without its %s: final latents relative error %.3g", what, r)
				if r < 1e-2 {
					t.Fatalf("without its %s the case still matches (relative error %.3g): the check is blind", what, r)
				}
			}
			blind("LoRAs", loraRequest(t, c, false, true))
			if len(c.References) > 0 {
				blind("reference images", loraRequest(t, c, true, false))
			}
		})
	}
}
