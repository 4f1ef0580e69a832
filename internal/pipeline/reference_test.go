package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// The reference cases were produced by the diffusers Flux2KleinPipeline
// (fp32, CPU) on models/tiny; see testdata/reference/README.md.
const (
	referenceDir = "../../testdata/reference"
	tinyModelDir = "../../models/tiny"
)

type refArray struct {
	File  string `json:"file"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

type refCase struct {
	Name           string              `json:"name"`
	Prompt         string              `json:"prompt"`
	NegativePrompt string              `json:"negative_prompt"`
	Width          int                 `json:"width"`
	Height         int                 `json:"height"`
	Steps          int                 `json:"num_inference_steps"`
	GuidanceScale  float64             `json:"guidance_scale"`
	NumImages      int                 `json:"num_images"`
	Seed           int64               `json:"seed"`
	Mu             float64             `json:"mu"`
	Arrays         map[string]refArray `json:"arrays"`
}

type refIndex struct {
	Cases          []refCase           `json:"cases"`
	ClipPreprocess map[string]refArray `json:"clip_preprocess"`
}

func loadRefIndex(t testing.TB) refIndex {
	t.Helper()
	return loadRefIndexFrom(t, ".")
}

// loadRefIndexFrom reads the index of referenceDir/sub (a variant's
// reference directory: testdata/reference/README.md). An array's file is
// relative to its index's folder, and may be one of another folder's (a
// variant's index names the 4B Base directory's CLIP vector with a leading
// ".."); the readers resolve files in referenceDir, so each is rewritten
// relative to it.
func loadRefIndexFrom(t testing.TB, sub string) refIndex {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(referenceDir, sub, "index.json"))
	if err != nil {
		t.Fatalf("reference index: %v", err)
	}
	var idx refIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("reference index: %v", err)
	}
	rebase := func(arrays map[string]refArray) {
		for name, a := range arrays {
			a.File = filepath.Join(sub, a.File)
			arrays[name] = a
		}
	}
	for _, c := range idx.Cases {
		rebase(c.Arrays)
	}
	rebase(idx.ClipPreprocess)
	return idx
}

func readRaw(t testing.TB, a refArray, dtype string) []byte {
	t.Helper()
	if a.DType != dtype {
		t.Fatalf("%s: dtype %s, want %s", a.File, a.DType, dtype)
	}
	b, err := os.ReadFile(filepath.Join(referenceDir, a.File))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func refF32(t testing.TB, a refArray) []float32 {
	b := readRaw(t, a, "float32")
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func refI64(t testing.TB, a refArray) []int64 {
	b := readRaw(t, a, "int64")
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func refU8(t testing.TB, a refArray) []uint8 { return readRaw(t, a, "uint8") }

func refBool(t testing.TB, a refArray) []bool {
	b := readRaw(t, a, "bool")
	out := make([]bool, len(b))
	for i, v := range b {
		out[i] = v != 0
	}
	return out
}

// relErr is max|a-b| / max|b|, the tolerance measure of the issue.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func openTiny(t testing.TB) *Engine {
	t.Helper()
	return openTinyWith(t, func(*Config) {})
}

// openTinyWith opens the tiny model with configure applied to the config.
func openTinyWith(t testing.TB, configure func(*Config)) *Engine {
	t.Helper()
	lib, err := findLibrary(os.Getenv("KLEINSERVE_ORT_LIB"))
	if err != nil {
		// The library lives at the repo root's .ort when the tests run
		// from the package directory.
		if lib, err = findLibrary("../../.ort/lib/libonnxruntime.so"); err != nil {
			t.Skipf("ONNX Runtime library not installed (run scripts/install_ort.sh): %v", err)
		}
	}
	cfg := Config{ModelDir: tinyModelDir, LibraryPath: lib, IntraOpThreads: 1}
	configure(&cfg)
	e, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open tiny model: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// captureLatents runs a reference case with the noise the reference used
// and returns the result and the final packed latents.
func runReference(t *testing.T, e *Engine, c refCase, format engine.OutputFormat) (*engine.Result, []float32) {
	t.Helper()
	req := engine.Request{
		Prompt: c.Prompt, NegativePrompt: c.NegativePrompt, GuidanceScale: c.GuidanceScale,
		Steps: c.Steps, Width: c.Width, Height: c.Height, NumImages: max(1, c.NumImages), Seed: c.Seed,
		Acceleration: engine.AccelerationNone, EnableSafetyChecker: false, OutputFormat: format,
		InitialNoise: refF32(t, c.Arrays["initial_noise"]),
	}
	var final []float32
	e.debugFinalLatents = func(x []float32) { final = append([]float32(nil), x...) }
	defer func() { e.debugFinalLatents = nil }()
	res, err := e.Generate(context.Background(), req, nil)
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return res, final
}

func TestReferenceTokens(t *testing.T) {
	e := openTiny(t)
	for _, c := range loadRefIndex(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			check := func(prompt string, ids, mask refArray) {
				gotIDs, gotMask := e.tok.EncodePrompt(prompt)
				wantIDs, wantMask := refI64(t, ids), refI64(t, mask)
				for i := range wantIDs {
					if gotIDs[i] != wantIDs[i] || gotMask[i] != wantMask[i] {
						t.Fatalf("%q: token %d: got id %d mask %d, want %d %d", prompt, i, gotIDs[i], gotMask[i], wantIDs[i], wantMask[i])
					}
				}
			}
			check(c.Prompt, c.Arrays["input_ids"], c.Arrays["attention_mask"])
			if ids, ok := c.Arrays["negative_input_ids"]; ok {
				check(c.NegativePrompt, ids, c.Arrays["negative_attention_mask"])
			}
		})
	}
}

func TestReferenceSigmasAndTimesteps(t *testing.T) {
	for _, c := range loadRefIndex(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			want := refF32(t, c.Arrays["sigmas"])
			got := schedule((c.Width/16)*(c.Height/16), c.Steps)
			for i := range want {
				if math.Abs(float64(got[i]-want[i])) > 1e-6 {
					t.Fatalf("sigma %d: %v, want %v", i, got[i], want[i])
				}
			}
			ts := refF32(t, c.Arrays["timesteps"])
			for i := range ts {
				if g := transformerTimestep(got[i], false); g != ts[i] {
					t.Fatalf("timestep %d: %v, want %v (bit-exact)", i, g, ts[i])
				}
			}
		})
	}
}

func TestReferencePromptEmbeddings(t *testing.T) {
	e := openTiny(t)
	for _, c := range loadRefIndex(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			prompts := []string{c.Prompt}
			wants := []refArray{c.Arrays["prompt_embeds"]}
			if a, ok := c.Arrays["negative_prompt_embeds"]; ok {
				prompts, wants = append(prompts, c.NegativePrompt), append(wants, a)
			}
			got, err := e.embed(context.Background(), prompts, new(time.Duration))
			if err != nil {
				t.Fatal(err)
			}
			for i := range prompts {
				if r := relErr(got[i], refF32(t, wants[i])); r > 1e-5 {
					t.Errorf("%q: relative error %.3g > 1e-5", prompts[i], r)
				}
			}
		})
	}
}

// TestReferencePipeline is the exactness check: final latents
// within 1e-4 relative error and decoded images within 1/255 per channel,
// for every case.
func TestReferencePipeline(t *testing.T) {
	e := openTiny(t)
	for _, c := range loadRefIndex(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			res, final := runReference(t, e, c, engine.FormatPNG)
			want := refF32(t, c.Arrays["final_latents"])
			if len(final) != len(want) {
				t.Fatalf("final latents: %d values, want %d", len(final), len(want))
			}
			r := relErr(final, want)
			t.Logf("final latents relative error %.3g", r)
			if r > 1e-4 {
				t.Fatalf("final latents relative error %.3g > 1e-4", r)
			}
			wantPix := refU8(t, c.Arrays["image"])
			n := c.Width * c.Height * 3
			for k, img := range res.Images {
				worst := pngDiff(t, img.Data, wantPix[k*n:(k+1)*n])
				t.Logf("image %d: max channel difference %d/255", k, worst)
				if worst > 1 {
					t.Fatalf("image %d: max channel difference %d > 1", k, worst)
				}
			}
		})
	}
}

func TestReferenceSafety(t *testing.T) {
	e := openTiny(t)
	idx := loadRefIndex(t)
	// The preprocessing itself, on the exporter's odd-sized test image.
	img := refU8(t, idx.ClipPreprocess["image"])
	shape := idx.ClipPreprocess["image"].Shape
	want := refF32(t, idx.ClipPreprocess["clip_input"])
	got := make([]float32, len(want))
	clipInput(got, img, shape[2], shape[1], e.man.Safety.InputSize, e.man.Safety.Mean, e.man.Safety.Std)
	if r := relErr(got, want); r > 1e-6 {
		t.Fatalf("clip preprocessing relative error %.3g", r)
	}
	flagged, clean := 0, 0
	for _, c := range idx.Cases {
		pix := refU8(t, c.Arrays["image"])
		n := c.Width * c.Height * 3
		var images [][]uint8
		for k := 0; k < max(1, c.NumImages); k++ {
			images = append(images, pix[k*n:(k+1)*n])
		}
		got, err := e.checkSafety(images, c.Width, c.Height, new(time.Duration))
		if err != nil {
			t.Fatal(err)
		}
		want := refBool(t, c.Arrays["has_nsfw_concepts"])
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s image %d: has_nsfw %v, want %v", c.Name, k, got[k], want[k])
			}
			if want[k] {
				flagged++
			} else {
				clean++
			}
		}
	}
	if flagged == 0 || clean == 0 {
		t.Fatalf("reference cases should hold flagged and clean images: %d flagged, %d clean", flagged, clean)
	}
}

// pngDiff decodes a PNG and returns its largest channel difference from
// want, the reference's RGB bytes of that image.
func pngDiff(t testing.TB, data []byte, want []uint8) int {
	t.Helper()
	got := decodePNG(t, data)
	if len(got) != len(want) {
		t.Fatalf("image has %d RGB values, the reference %d", len(got), len(want))
	}
	worst := 0
	for i := range want {
		d := int(got[i]) - int(want[i])
		worst = max(worst, d, -d)
	}
	return worst
}

func decodePNG(t testing.TB, data []byte) []uint8 {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	pix := make([]uint8, 0, 3*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			pix = append(pix, uint8(r>>8), uint8(g>>8), uint8(bl>>8))
		}
	}
	return pix
}
