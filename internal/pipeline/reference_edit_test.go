package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// The edit cases were produced by diffusers' Flux2KleinPipeline(image=[...])
// (fp32, CPU) on models/tiny; see testdata/reference/edit/README.md.
const editReferenceDir = referenceDir + "/edit"

type editCase struct {
	Name            string              `json:"name"`
	Prompt          string              `json:"prompt"`
	References      []string            `json:"references"`
	Width           *int                `json:"width"`
	Height          *int                `json:"height"`
	OutputWidth     int                 `json:"output_width"`
	OutputHeight    int                 `json:"output_height"`
	Steps           int                 `json:"num_inference_steps"`
	GuidanceScale   float64             `json:"guidance_scale"`
	NumImages       int                 `json:"num_images"`
	Seed            int64               `json:"seed"`
	ReferenceGrids  [][2]int            `json:"reference_grids"`
	ReferenceSeqLen int                 `json:"reference_seq_len"`
	PreparedSHA256  []string            `json:"prepared_sha256"`
	Arrays          map[string]refArray `json:"arrays"`
}

type editIndex struct {
	References []struct {
		Name          string `json:"name"`
		File          string `json:"file"`
		Width, Height int
	} `json:"references"`
	Cases []editCase `json:"cases"`
}

// loadEditIndex reads the edit cases and decodes their reference images.
func loadEditIndex(t testing.TB) (editIndex, map[string]engine.ReferenceImage) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(editReferenceDir, "index.json"))
	if err != nil {
		t.Fatalf("edit reference index: %v", err)
	}
	var idx editIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatalf("edit reference index: %v", err)
	}
	for _, c := range idx.Cases { // the array readers resolve files in referenceDir
		for name, a := range c.Arrays {
			a.File = filepath.Join("edit", a.File)
			c.Arrays[name] = a
		}
	}
	refs := map[string]engine.ReferenceImage{}
	for _, r := range idx.References {
		refs[r.Name] = readReferencePNG(t, filepath.Join(editReferenceDir, r.File))
		if refs[r.Name].Width != r.Width || refs[r.Name].Height != r.Height {
			t.Fatalf("%s: %dx%d, index says %dx%d", r.File, refs[r.Name].Width, refs[r.Name].Height, r.Width, r.Height)
		}
	}
	return idx, refs
}

// readReferencePNG decodes an 8-bit RGB PNG into a reference image.
func readReferencePNG(t testing.TB, path string) engine.ReferenceImage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rgba, ok := img.(*image.RGBA) // Go decodes 8-bit RGB PNGs as opaque RGBA
	if !ok {
		t.Fatalf("%s: decoded as %T", path, img)
	}
	b := rgba.Bounds()
	ref := engine.ReferenceImage{Pix: make([]uint8, 0, 3*b.Dx()*b.Dy()), Width: b.Dx(), Height: b.Dy()}
	for i := 0; i < len(rgba.Pix); i += 4 {
		ref.Pix = append(ref.Pix, rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2])
	}
	return ref
}

// editRequest is a case as an engine request; a null size stays 0 (the
// first reference's processed size).
func editRequest(t testing.TB, c editCase, refs map[string]engine.ReferenceImage) engine.Request {
	req := engine.Request{Prompt: c.Prompt, GuidanceScale: c.GuidanceScale, Steps: c.Steps,
		NumImages: c.NumImages, Seed: c.Seed, Acceleration: engine.AccelerationNone, OutputFormat: engine.FormatPNG,
		InitialNoise: refF32(t, c.Arrays["initial_noise"])}
	if c.Width != nil {
		req.Width = *c.Width
	}
	if c.Height != nil {
		req.Height = *c.Height
	}
	for _, name := range c.References {
		req.References = append(req.References, refs[name])
	}
	return req
}

// TestEditReferenceCoverage keeps the cases what they are meant to be: 1, 2
// and 4 references of different sizes, CFG and not, a reference above the
// pixel budget, a case without an output size, a batch of two.
func TestEditReferenceCoverage(t *testing.T) {
	idx, refs := loadEditIndex(t)
	counts := map[int]bool{}
	var cfg, noCFG, budget, defaultSize, batch bool
	for _, c := range idx.Cases {
		counts[len(c.References)] = true
		cfg = cfg || c.GuidanceScale > 1
		noCFG = noCFG || c.GuidanceScale <= 1
		defaultSize = defaultSize || (c.Width == nil && c.Height == nil)
		batch = batch || c.NumImages > 1
		for _, r := range c.References {
			budget = budget || refs[r].Width*refs[r].Height > imageprep.MaxArea
		}
	}
	if !counts[1] || !counts[2] || !counts[4] || !cfg || !noCFG || !budget || !defaultSize || !batch {
		t.Fatalf("edit cases miss a kind: references %v, cfg %v, no cfg %v, budget %v, default size %v, batch %v",
			counts, cfg, noCFG, budget, defaultSize, batch)
	}
}

// TestEditReferencePreparation: the prepared pixels, the grids, the
// position ids and the VAE-encoded reference tokens the transformer sees.
func TestEditReferencePreparation(t *testing.T) {
	e := openTiny(t)
	idx, refs := loadEditIndex(t)
	for _, c := range idx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var images []engine.ReferenceImage
			for i, name := range c.References {
				ref := refs[name]
				images = append(images, ref)
				img, err := imageprep.PrepareReference(imageprep.RGB{Pix: ref.Pix, Width: ref.Width, Height: ref.Height})
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(img.Pix)
				if hex.EncodeToString(sum[:]) != c.PreparedSHA256[i] {
					t.Fatalf("reference %d (%s): prepared pixels differ from diffusers'", i, name)
				}
			}
			set, err := e.referenceSet(context.Background(), images, new(time.Duration))
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range set.latents {
				if l.h != c.ReferenceGrids[i][0] || l.w != c.ReferenceGrids[i][1] {
					t.Fatalf("reference %d: grid %dx%d, want %v", i, l.h, l.w, c.ReferenceGrids[i])
				}
			}
			if set.len() != c.ReferenceSeqLen {
				t.Fatalf("%d reference tokens, want %d", set.len(), c.ReferenceSeqLen)
			}
			if a, ok := c.Arrays["img_ids"]; ok {
				h, w := c.OutputHeight/sampler.Downscale, c.OutputWidth/sampler.Downscale
				got := append(sampler.ImageIDs(0, h, w), set.ids()...)
				if !slices.Equal(got, refI64(t, a)) {
					t.Fatal("img_ids differ from the reference pipeline's")
				}
			}
			if a, ok := c.Arrays["reference_tokens"]; ok {
				var got []float32
				for _, l := range set.latents {
					got = append(got, l.tokens...)
				}
				want := refF32(t, a)
				if len(got) != len(want) {
					t.Fatalf("%d reference values, want %d", len(got), len(want))
				}
				r := relErr(got, want)
				t.Logf("reference tokens relative error %.3g", r)
				if r > 1e-5 {
					t.Fatalf("reference tokens relative error %.3g > 1e-5", r)
				}
			}
		})
	}
}

// TestEditReferencePipeline is the exactness check for edits: final
// latents within 1e-4 relative error and images within 1/255 per channel of
// diffusers', and the output size the reference pipeline chose.
func TestEditReferencePipeline(t *testing.T) {
	e := openTiny(t)
	idx, refs := loadEditIndex(t)
	for _, c := range idx.Cases {
		t.Run(c.Name, func(t *testing.T) {
			req := editRequest(t, c, refs)
			var final []float32
			e.debugFinalLatents = func(x []float32) { final = append([]float32(nil), x...) }
			defer func() { e.debugFinalLatents = nil }()
			res, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			want := refF32(t, c.Arrays["final_latents"])
			if len(final) != len(want) {
				t.Fatalf("final latents: %d values, want %d", len(final), len(want))
			}
			r := relErr(final, want)
			wantPix := refU8(t, c.Arrays["image"])
			n := c.OutputWidth * c.OutputHeight * 3
			worst := 0
			for k, img := range res.Images {
				if img.Width != c.OutputWidth || img.Height != c.OutputHeight {
					t.Fatalf("image %d is %dx%d, want %dx%d", k, img.Width, img.Height, c.OutputWidth, c.OutputHeight)
				}
				worst = max(worst, pngDiff(t, img.Data, wantPix[k*n:(k+1)*n]))
			}
			t.Logf("final latents relative error %.3g, images max channel difference %d/255", r, worst)
			if r > 1e-4 {
				t.Fatalf("final latents relative error %.3g > 1e-4", r)
			}
			if worst > 1 {
				t.Fatalf("images: max channel difference %d > 1", worst)
			}
		})
	}
}
