package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

func tinyRequest() engine.Request {
	return engine.Request{Prompt: "a red fox in fresh snow", GuidanceScale: 4, Steps: 6, Width: 64, Height: 48,
		NumImages: 1, Seed: 42, Acceleration: engine.AccelerationNone, EnableSafetyChecker: false,
		OutputFormat: engine.FormatPNG, CNS: cns.DefaultParams()}
}

func TestGenerateDeterministicAndSeeded(t *testing.T) {
	e := openTiny(t)
	req := tinyRequest()
	a, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Images[0].Data, b.Images[0].Data) {
		t.Fatal("same request, different bytes")
	}
	req.Seed = 43
	c, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Images[0].Data, c.Images[0].Data) {
		t.Fatal("different seeds, same bytes")
	}
	if a.Seed != 42 || a.Images[0].Width != 64 || a.Images[0].Height != 48 || a.Images[0].ContentType != "image/png" {
		t.Fatalf("result fields: %+v", a)
	}
}

// With the Philox noise source, image k of a batch is the single-image run
// with seed+k. (With torch's, as with diffusers, a batch is one draw:
// TestSeedParityWithDiffusers covers it.)
func TestGenerateBatchMatchesSingles(t *testing.T) {
	e := openTinyWith(t, func(c *Config) { c.Noise = sampler.NoisePhilox })
	req := tinyRequest()
	req.EnableSafetyChecker = false
	req.NumImages = 2
	batch, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.NumImages = 1
	req.Seed = 43
	single, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if worst := pngDiff(t, batch.Images[1].Data, decodePNG(t, single.Images[0].Data)); worst > 1 {
		t.Fatalf("batch image 1 differs from single run with seed+1 by %d", worst)
	}
}

func TestGenerateCNS(t *testing.T) {
	e := openTiny(t)
	base := tinyRequest()
	plain, err := e.Generate(context.Background(), base, nil)
	if err != nil {
		t.Fatal(err)
	}
	off := base
	off.CNS.Enable, off.CNS.SChurn = true, 0
	zero, err := e.Generate(context.Background(), off, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain.Images[0].Data, zero.Images[0].Data) {
		t.Fatal("enable_cns with s_churn 0 must equal the plain sampler byte for byte")
	}
	on := base
	on.CNS.Enable, on.CNS.SChurn = true, 0.5
	x, err := e.Generate(context.Background(), on, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := e.Generate(context.Background(), on, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(plain.Images[0].Data, x.Images[0].Data) {
		t.Fatal("s_churn 0.5 should change the image")
	}
	if !bytes.Equal(x.Images[0].Data, y.Images[0].Data) {
		t.Fatal("CNS run is not deterministic")
	}
	bad := on
	bad.CNS.SChurn = 7
	if _, err := e.Generate(context.Background(), bad, nil); !errors.Is(err, engine.ErrInvalidRequest) {
		t.Fatalf("out-of-range s_churn: %v", err)
	}
}

func TestGenerateProgressPreviewAndCancel(t *testing.T) {
	e := openTiny(t)
	req := tinyRequest()
	req.PreviewEvery = 2
	var steps, previews int
	if _, err := e.Generate(context.Background(), req, func(p engine.Progress) {
		steps++
		if p.Step != steps || p.TotalSteps != req.Steps {
			t.Errorf("progress %d/%d at call %d", p.Step, p.TotalSteps, steps)
		}
		if p.Preview != nil {
			previews++
			if p.Preview.ContentType != "image/jpeg" || len(p.Preview.Data) == 0 {
				t.Errorf("preview %+v", p.Preview)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if steps != req.Steps || previews != 2 { // after steps 2 and 4; none on the last
		t.Fatalf("%d progress calls, %d previews", steps, previews)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var seen int
	_, err := e.Generate(ctx, req, func(p engine.Progress) {
		seen = p.Step
		if p.Step == 2 {
			cancel()
		}
	})
	if !errors.Is(err, engine.ErrCanceled) || seen != 2 {
		t.Fatalf("cancel after step 2: err %v, last step %d", err, seen)
	}
	// The engine is usable after a cancel.
	if _, err := e.Generate(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
}

// A flagged image comes back black with NSFW set; an unflagged one is the
// same image as with the checker off. (The tiny model's checker is random
// but calibrated to flag about half of its images.)
func TestGenerateSafetyChecker(t *testing.T) {
	e := openTiny(t)
	flagged, clean := 0, 0
	for seed := int64(0); seed < 12 && (flagged == 0 || clean == 0); seed++ {
		req := tinyRequest()
		req.Seed = seed
		off, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.EnableSafetyChecker = true
		on, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if off.Images[0].NSFW {
			t.Fatal("NSFW set with the checker off")
		}
		if !on.Images[0].NSFW {
			clean++
			if !bytes.Equal(on.Images[0].Data, off.Images[0].Data) {
				t.Fatalf("seed %d: unflagged image changed by the checker", seed)
			}
			continue
		}
		flagged++
		for i, v := range decodePNG(t, on.Images[0].Data) {
			if v != 0 {
				t.Fatalf("seed %d: flagged image not black (byte %d = %d)", seed, i, v)
			}
		}
	}
	if flagged == 0 || clean == 0 {
		t.Fatalf("12 seeds gave %d flagged and %d clean images; want both", flagged, clean)
	}
}

func TestGenerateRejectsBadRequests(t *testing.T) {
	e := openTiny(t)
	for name, mut := range map[string]func(*engine.Request){
		"width not multiple of 16": func(r *engine.Request) { r.Width = 70 },
		"too large":                func(r *engine.Request) { r.Width, r.Height = 4096, 4096 },
		"zero steps":               func(r *engine.Request) { r.Steps = 0 },
		"too many images":          func(r *engine.Request) { r.NumImages = 9 },
		"bad format":               func(r *engine.Request) { r.OutputFormat = "gif" },
		"short noise":              func(r *engine.Request) { r.InitialNoise = make([]float32, 3) },
	} {
		t.Run(name, func(t *testing.T) {
			req := tinyRequest()
			mut(&req)
			if _, err := e.Generate(context.Background(), req, nil); !errors.Is(err, engine.ErrInvalidRequest) {
				t.Fatalf("want ErrInvalidRequest, got %v", err)
			}
		})
	}
}

func TestGenerateOutputFormats(t *testing.T) {
	e := openTiny(t)
	for format, ct := range map[engine.OutputFormat]string{"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"} {
		req := tinyRequest()
		req.OutputFormat = format
		res, err := e.Generate(context.Background(), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Images[0].ContentType != ct || len(res.Images[0].Data) == 0 {
			t.Fatalf("%s: %+v", format, res.Images[0].ContentType)
		}
	}
}

// copyModel copies models/tiny so a test can break it.
func copyModel(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(tinyModelDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tinyModelDir, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// Open fails loudly, naming the graph and tensor, when the model does not
// match what the code runs.
func TestOpenRejectsMismatchedModel(t *testing.T) {
	lib, err := findLibrary("../../.ort/lib/libonnxruntime.so")
	if err != nil {
		t.Skip(err)
	}
	for name, tc := range map[string]struct {
		edit func(m map[string]any, dir string)
		want string
	}{
		"renamed input in manifest": {func(m map[string]any, _ string) {
			g := m["graphs"].(map[string]any)["transformer"].(map[string]any)
			g["inputs"].([]any)[0].(map[string]any)["name"] = "latent"
		}, `transformer: unexpected input "latent"`},
		"wrong dtype": {func(m map[string]any, _ string) {
			g := m["graphs"].(map[string]any)["text_encoder"].(map[string]any)
			g["inputs"].([]any)[0].(map[string]any)["dtype"] = "int32"
		}, `input "input_ids": dtype int32, want int64`},
		"graph swapped for another": {func(_ map[string]any, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "vae_encoder.onnx"))
			os.WriteFile(filepath.Join(dir, "vae_decoder.onnx"), b, 0o644)
		}, "vae_decoder"},
		"truncated file": {func(_ map[string]any, dir string) {
			p := filepath.Join(dir, "transformer.onnx")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, "transformer"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := copyModel(t)
			raw, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			tc.edit(m, dir)
			raw, _ = json.Marshal(m)
			os.WriteFile(filepath.Join(dir, ManifestFile), raw, 0o644)
			_, err := Open(context.Background(), Config{ModelDir: dir, LibraryPath: lib})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}
