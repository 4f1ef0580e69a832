package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// variants are the tiny models of the other klein checkpoints and their
// reference directories under testdata/reference.
var variants = []string{"4b-distilled", "9b-base", "9b-distilled"}

// TestReferenceVariants holds each tiny variant to the diffusers reference
// cases of its checkpoint, with the noise they used: final latents within
// 1e-4 relative, images within 1/255. The distilled cases include one that
// asks for guidance 4, which a distilled checkpoint ignores (one
// transformer call per step, no CFG).
func TestReferenceVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(referenceDir, v, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			var idx refIndex
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			e := openTinyWith(t, func(c *Config) { c.ModelDir = filepath.Join("../../models", "tiny-"+v) })
			if want := v != "9b-base" && v != "4b-base"; e.man.Distilled() != want {
				t.Fatalf("manifest says distilled=%v", e.man.Distilled())
			}
			for _, c := range idx.Cases {
				for name, a := range c.Arrays {
					a.File = filepath.Join(v, a.File)
					c.Arrays[name] = a
				}
				res, final := runReference(t, e, c, engine.FormatPNG)
				if r := relErr(final, refF32(t, c.Arrays["final_latents"])); r > 1e-4 {
					t.Errorf("%s: final latents relative error %.3g > 1e-4", c.Name, r)
				} else {
					t.Logf("%s: final latents relative error %.2g", c.Name, r)
				}
				want := refU8(t, c.Arrays["image"])
				per := len(want) / len(res.Images)
				for k, img := range res.Images {
					if worst := pngDiff(t, img.Data, want[k*per:(k+1)*per]); worst > 1 {
						t.Errorf("%s: image %d differs by %d/255", c.Name, k, worst)
					}
				}
			}
		})
	}
}

// TestSharedSessions opens the 4B Base and the 4B distilled tiny models in
// one process through one SessionPool: the graphs whose files are
// byte-identical (the text encoder, the VAE, the safety checker) are
// loaded once, and both engines still generate.
func TestSharedSessions(t *testing.T) {
	pool := NewSessionPool()
	base := openTinyWith(t, func(c *Config) { c.Sessions = pool })
	afterBase := pool.Len()
	distilled := openTinyWith(t, func(c *Config) {
		c.Sessions, c.ModelDir = pool, filepath.Join("../../models", "tiny-4b-distilled")
	})
	if base.text != distilled.text {
		t.Fatal("the 4B text encoder was loaded twice")
	}
	if base.dit == distilled.dit {
		t.Fatal("two checkpoints share a transformer session")
	}
	unique := map[string]bool{}
	for _, m := range []*Manifest{base.man, distilled.man} {
		for _, name := range []string{GraphTextEncoder, GraphTransformer, GraphVAEDecoder, GraphVAEEncoder, GraphSafetyChecker} {
			unique[m.Files[m.Graphs[name].File].SHA256] = true
		}
	}
	if pool.Len() != len(unique) || pool.Len() >= 2*afterBase {
		t.Fatalf("%d sessions for %d distinct graph files (one model: %d)", pool.Len(), len(unique), afterBase)
	}
	t.Logf("two models, %d sessions (%d without sharing); shared: %d of %d model bytes",
		pool.Len(), 2*afterBase, ModelBytes(base.man)+ModelBytes(distilled.man)-ModelBytes(base.man, distilled.man),
		ModelBytes(base.man)+ModelBytes(distilled.man))
	for _, e := range []*Engine{base, distilled} {
		req := tinyRequest()
		if _, err := e.Generate(context.Background(), req, nil); err != nil {
			t.Fatal(err)
		}
	}
}
