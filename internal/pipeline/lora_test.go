package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/lora"
)

// loraStore serves the reference LoRA files, plus any extra files given,
// from a temporary LoRA directory.
func loraStore(t testing.TB, extra map[string][]byte) *lora.Store {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(loraReferenceDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			b, err := os.ReadFile(filepath.Join(loraReferenceDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			extra[e.Name()] = b
		}
	}
	for name, b := range extra {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := lora.NewStore(lora.StoreConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLoRARequestErrors(t *testing.T) {
	base := engine.Request{Prompt: "a cat", GuidanceScale: 4, Steps: 2, Width: 64, Height: 64, NumImages: 1,
		OutputFormat: engine.FormatPNG}
	with := func(l ...engine.LoRA) engine.Request { r := base; r.LoRAs = l; return r }

	plain := openTiny(t)
	_, err := plain.Generate(context.Background(), with(engine.LoRA{Path: "bfl_r4", Scale: 1}), nil)
	if !errors.Is(err, engine.ErrInvalidRequest) || !strings.Contains(err.Error(), "not enabled") {
		t.Fatalf("engine without a LoRA loader: %v", err)
	}

	// A LoKr file, written the way ai-toolkit writes one for FLUX.2.
	lokr := []byte(`{"diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`)
	lokrFile := append(append([]byte{byte(len(lokr)), 0, 0, 0, 0, 0, 0, 0}, lokr...), 0, 0, 0, 0)
	e := openTinyWith(t, func(c *Config) { c.LoRA = loraStore(t, map[string][]byte{"lokr.safetensors": lokrFile}) })
	ok := engine.LoRA{Path: "bfl_r4", Scale: 1}
	for _, tc := range []struct {
		name string
		req  engine.Request
		says []string
	}{
		{"four LoRAs", with(ok, ok, ok, ok), []string{"at most 3"}},
		{"scale out of range", with(engine.LoRA{Path: "bfl_r4", Scale: 9}), []string{"loras[0].scale"}},
		{"empty path", with(ok, engine.LoRA{Scale: 1}), []string{"loras[1].path"}},
		{"missing file", with(engine.LoRA{Path: "nope", Scale: 1}), []string{"loras[0].path", "no LoRA named"}},
		{"LoKr file", with(ok, engine.LoRA{Path: "lokr", Scale: 1}),
			[]string{"loras[1]", "LoKr", "diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1"}},
		{"escape", with(engine.LoRA{Path: "../../etc/passwd", Scale: 1}), []string{"loras[0].path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Generate(context.Background(), tc.req, nil)
			if !errors.Is(err, engine.ErrInvalidRequest) {
				t.Fatalf("got %v, want ErrInvalidRequest", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	var ke *lora.KeyError
	_, err = e.Generate(context.Background(), with(engine.LoRA{Path: "lokr", Scale: 1}), nil)
	if !errors.As(err, &ke) || !errors.Is(err, lora.ErrUnsupported) {
		t.Fatalf("LoKr: %v is not a *lora.KeyError wrapping ErrUnsupported", err)
	}
}

// TestLoRASetsShareCallsOnlyWhenIdentical runs four same-size requests at
// once: two with LoRA set X (different seeds), one with set Y and one
// without LoRA. X's two loops share transformer calls; every image equals
// the one its request gives alone, which it could not if a call mixed sets.
func TestLoRASetsShareCallsOnlyWhenIdentical(t *testing.T) {
	e := openTinyWith(t, func(c *Config) { c.MaxConcurrent = 4; c.LoRA = loraStore(t, map[string][]byte{}) })
	x := []engine.LoRA{{Path: "bfl_r4", Scale: 0.9}, {Path: "fal_r8", Scale: 0.5}}
	y := []engine.LoRA{{Path: "bfl_r4", Scale: 0.9}} // a subset of X: still another set
	reqs := []engine.Request{
		{Prompt: "a lighthouse at dusk", GuidanceScale: 4, Steps: 6, LoRAs: x, Seed: 1},
		{Prompt: "a red fox", GuidanceScale: 1, Steps: 6, LoRAs: y, Seed: 2},
		{Prompt: "a lighthouse at dusk", GuidanceScale: 4, Steps: 6, LoRAs: x, Seed: 3},
		{Prompt: "a lighthouse at dusk", GuidanceScale: 4, Steps: 6, Seed: 4},
	}
	for i := range reqs {
		reqs[i].Width, reqs[i].Height, reqs[i].NumImages, reqs[i].OutputFormat = 128, 96, 1, engine.FormatPNG
	}
	solo := generateAlone(t, e, reqs)
	before := e.BatchCounts()
	results, errs := generateTogether(e, reqs, nil)
	after := e.BatchCounts()
	t.Logf("%d transformer calls, %d shared", after.Calls-before.Calls, after.Shared-before.Shared)
	if after.Shared == before.Shared {
		t.Fatal("the two requests of set X shared no call")
	}
	requireSameAsAlone(t, results, errs, solo)
	if d := maxPixelDiff(t, solo[0].Images[0].Data, solo[3].Images[0].Data); d == 0 {
		t.Error("the LoRAs did not change the image")
	}
}

// TestLoRASwitchKeepsTheSession: consecutive requests with different LoRAs
// (and none) run on the one transformer session the engine opened, each
// file is converted once, and each set's inputs are built once while they
// fit the budget.
func TestLoRASwitchKeepsTheSession(t *testing.T) {
	e := openTinyWith(t, func(c *Config) { c.LoRA = loraStore(t, map[string][]byte{}) })
	sess := e.dit.sess
	for _, l := range [][]engine.LoRA{{{Path: "bfl_r4", Scale: 1}}, {{Path: "kohya_r6", Scale: 1}}, nil,
		{{Path: "bfl_r4", Scale: 0.5}}, {{Path: "kohya_r6", Scale: 1}, {Path: "bfl_r4", Scale: 1}}} {
		req := engine.Request{Prompt: "a cat", GuidanceScale: 4, Steps: 2, Width: 64, Height: 64, NumImages: 1,
			OutputFormat: engine.FormatPNG, LoRAs: l}
		if _, err := e.Generate(context.Background(), req, nil); err != nil {
			t.Fatal(err)
		}
		if e.dit.sess != sess {
			t.Fatal("the transformer session was replaced")
		}
	}
	if n := e.lora.adapters.Len(); n != 2 {
		t.Fatalf("%d converted adapters kept, want the 2 files", n)
	}
	if e.lora.built.len() != 4 || e.lora.built.builds != 4 {
		t.Fatalf("%d LoRA sets kept, %d built; want the 4 sets, each built once", e.lora.built.len(), e.lora.built.builds)
	}
	again := engine.Request{Prompt: "a cat", GuidanceScale: 4, Steps: 2, Width: 64, Height: 64, NumImages: 1,
		OutputFormat: engine.FormatPNG, LoRAs: []engine.LoRA{{Path: "kohya_r6", Scale: 1}}}
	if _, err := e.Generate(context.Background(), again, nil); err != nil {
		t.Fatal(err)
	}
	if e.lora.built.builds != 4 {
		t.Fatal("a kept set was built again")
	}
	if len(e.batcher.groups) != 0 {
		t.Fatalf("%d groups left (their LoRA inputs with them)", len(e.batcher.groups))
	}
}

// TestBuiltSetsKeepWhatIsInUse: over its budget, the LoRA input cache drops
// least recently used sets that no call uses, never one in use, and gives
// the same inputs to every group of one set.
func TestBuiltSetsKeepWhatIsInUse(t *testing.T) {
	e := openTiny(t)
	st := lora.Stack(e.lora.targets, nil)
	one, err := newLoRATensors(e.dit.floatT, e.lora.targets, st, true, true)
	if err != nil {
		t.Fatal(err)
	}
	size := one.bytes()
	_ = one.destroy()
	b := newBuiltSets(2 * size) // room for two sets
	defer b.destroy()
	build := func() (*loraTensors, error) { return newLoRATensors(e.dit.floatT, e.lora.targets, st, true, true) }
	a1, _ := b.acquire("a", build)
	if a2, _ := b.acquire("a", build); a2 != a1 || b.builds != 1 {
		t.Fatal("a second group of set a got other inputs")
	}
	if _, err := b.acquire("b", build); err != nil {
		t.Fatal(err)
	}
	if _, err := b.acquire("c", build); err != nil { // over budget, but a, b and c are all in use
		t.Fatal(err)
	}
	if b.len() != 3 {
		t.Fatalf("%d sets kept, want 3 (all in use)", b.len())
	}
	b.release("b") // b is unused and least recent after a: dropped
	if b.len() != 2 || b.byKey["b"] != nil {
		t.Fatalf("after releasing b: %d sets, b kept %v", b.len(), b.byKey["b"] != nil)
	}
	b.release("a")
	b.release("a") // a unused now, within budget: kept
	if b.len() != 2 || b.byKey["a"] == nil {
		t.Fatal("a was dropped within the budget")
	}
	if again, _ := b.acquire("a", build); again != a1 || b.builds != 3 {
		t.Fatal("a kept set was built again")
	}
}
