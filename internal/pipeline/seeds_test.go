package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// TestSeedParityWithDiffusers runs the cases of testdata/reference/seeds,
// where diffusers drew the initial noise itself from
// torch.Generator("cpu").manual_seed(seed), with nothing but the seed: the
// engine's default noise must give the same final latents (1e-4 relative)
// and images (1/255).
func TestSeedParityWithDiffusers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(referenceDir, "seeds", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx refIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Cases) < 4 {
		t.Fatalf("%d seed cases", len(idx.Cases))
	}
	e := openTiny(t)
	if e.cfg.Noise != sampler.NoiseTorch {
		t.Fatalf("default noise %q", e.cfg.Noise)
	}
	for _, c := range idx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			for name, a := range c.Arrays {
				a.File = filepath.Join("seeds", a.File)
				c.Arrays[name] = a
			}
			req := engine.Request{
				Prompt: c.Prompt, NegativePrompt: c.NegativePrompt, GuidanceScale: c.GuidanceScale,
				Steps: c.Steps, Width: c.Width, Height: c.Height, NumImages: max(1, c.NumImages), Seed: c.Seed,
				Acceleration: engine.AccelerationNone, OutputFormat: engine.FormatPNG,
			}
			var final []float32
			e.debugFinalLatents = func(x []float32) { final = append([]float32(nil), x...) }
			defer func() { e.debugFinalLatents = nil }()
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := relErr(final, refF32(t, c.Arrays["final_latents"])); r > 1e-4 {
				t.Fatalf("final latents: relative error %.3g > 1e-4", r)
			} else {
				t.Logf("seed %d, %d image(s): final latents relative error %.2g", c.Seed, req.NumImages, r)
			}
			want := refU8(t, c.Arrays["image"])
			per := len(want) / req.NumImages
			for k, img := range res.Images {
				worst := pngDiff(t, img.Data, want[k*per:(k+1)*per])
				t.Logf("image %d: max channel difference %d/255", k, worst)
				if worst > 1 {
					t.Fatalf("image %d differs by %d/255", k, worst)
				}
			}
		})
	}
}
