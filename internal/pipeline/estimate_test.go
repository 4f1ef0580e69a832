package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
)

func tinyManifest(t testing.TB) *Manifest {
	t.Helper()
	m, err := LoadManifest(tinyModelDir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// klein4BManifest is the 4B model's manifest as far as the estimate reads
// it (scripts/export_onnx.py's real configurations, bf16 export: the VAE
// and the safety checker stay fp32).
func klein4BManifest() *Manifest {
	m := &Manifest{Text: TextSpec{MaxLength: 512, JointAttentionDim: 7680}, Safety: SafetySpec{InputSize: 224}}
	a := &m.Architecture
	a.Transformer.NumAttentionHeads, a.Transformer.AttentionHeadDim, a.Transformer.MLPRatio = 24, 128, 3
	a.TextEncoder.NumAttentionHeads, a.TextEncoder.HiddenSize, a.TextEncoder.IntermediateSize = 32, 2560, 9728
	a.VAE.BlockOutChannels, a.VAE.SampleSize = []int{128, 256, 512, 512}, 1024
	v := &a.SafetyChecker.Vision
	v.HiddenSize, v.IntermediateSize, v.NumAttentionHeads, v.ImageSize, v.PatchSize = 1024, 4096, 16, 224, 14
	m.Graphs = map[string]Graph{
		GraphTextEncoder: {Precision: "bf16"}, GraphTransformer: {Precision: "bf16"},
		GraphVAEDecoder: {Precision: "fp32"}, GraphSafetyChecker: {Precision: "fp32"},
	}
	return m
}

func sized(w, h, images int, guidance float64) *engine.Request {
	return &engine.Request{Width: w, Height: h, NumImages: images, GuidanceScale: guidance}
}

// The estimate grows with every dimension of the request, and with CFG.
func TestEstimateMonotonic(t *testing.T) {
	for name, m := range map[string]*Manifest{"tiny": tinyManifest(t), "4B": klein4BManifest()} {
		for _, provider := range []string{ProviderCPU, ProviderCUDA} {
			a := NewAdmission(m, AdmissionConfig{Provider: provider})
			peak := func(r *engine.Request) int64 { return a.Estimate(r).Peak }
			for w := 64; w <= 2048; w += 112 {
				for _, h := range []int{64, 512, 1024} {
					base := peak(sized(w, h, 1, 5))
					if wider := peak(sized(w+16, h, 1, 5)); wider < base {
						t.Errorf("%s %s: %dx%d estimates %d, %dx%d less (%d)", name, provider, w, h, base, w+16, h, wider)
					}
					if more := peak(sized(w, h, 2, 5)); more < base {
						t.Errorf("%s %s: %dx%d: 2 images below 1", name, provider, w, h)
					}
					if noCFG := peak(sized(w, h, 1, 0)); noCFG > base {
						t.Errorf("%s %s: %dx%d: without CFG above with", name, provider, w, h)
					}
				}
			}
		}
	}
}

// The decoder runs whole while that fits, then on the largest tile that
// fits; without a budget, tiles start above the VAE's own tile (1024 px).
func TestDecodePlan(t *testing.T) {
	m := newMemoryModel(tinyManifest(t), ProviderCPU)
	s := requestShape{width: 1024, height: 768, images: 1, cfg: true}
	if got := m.estimate(s, 0).DecodeTile; got != 0 {
		t.Errorf("1024x768 without a budget: tile %d, want whole", got)
	}
	big := requestShape{width: 1536, height: 1536, images: 1, cfg: true}
	if got := m.estimate(big, 0).DecodeTile; got != 64 {
		t.Errorf("1536x1536 without a budget: tile %d, want 64 (1024 px)", got)
	}
	whole := m.estimate(s, 1<<40)
	if whole.DecodeTile != 0 {
		t.Fatalf("1024x768 under a huge budget: tile %d", whole.DecodeTile)
	}
	for _, budget := range []int64{whole.Peak - 1, whole.Peak / 2, whole.Peak / 4} {
		e := m.estimate(s, budget)
		if e.DecodeTile == 0 {
			t.Errorf("budget %d below the whole decode's %d: decoded whole", budget, whole.Peak)
		}
		if e.Peak > budget && e.DecodeTile != 32 {
			t.Errorf("budget %d: tile %d does not fit (%d) yet is not the smallest", budget, e.DecodeTile, e.Peak)
		}
		if bigger := m.estimate(s, e.Peak); bigger.DecodeTile != e.DecodeTile {
			t.Errorf("estimate is not stable at its own peak: tile %d then %d", e.DecodeTile, bigger.DecodeTile)
		}
	}
	if got := m.decodeTiles(100, 100, true); len(got) != 4 || got[0] != 0 || got[3] != 32 {
		t.Errorf("options %v", got)
	}
}

// A request that cannot fit is refused naming image_size with the largest
// size of its aspect ratio that fits, which is then admitted; one that fits
// with fewer images is refused naming num_images.
func TestAdmissionRefusal(t *testing.T) {
	m := tinyManifest(t)
	probe := NewAdmission(m, AdmissionConfig{})
	budget := probe.Estimate(sized(1024, 768, 1, 5)).Peak
	a := NewAdmission(m, AdmissionConfig{Budget: budget, MinSide: 64})

	_, err := a.Check(sized(1536, 1536, 1, 5))
	var ae *AdmissionError
	if !errors.As(err, &ae) || ae.Field != FieldImageSize {
		t.Fatalf("1536x1536: %v", err)
	}
	if ae.FitWidth != ae.FitHeight || ae.FitWidth < 64 || ae.FitWidth >= 1536 {
		t.Fatalf("suggested %dx%d", ae.FitWidth, ae.FitHeight)
	}
	if _, err := a.Check(sized(ae.FitWidth, ae.FitHeight, 1, 5)); err != nil {
		t.Errorf("the suggested %dx%d is refused: %v", ae.FitWidth, ae.FitHeight, err)
	}
	if _, err := a.Check(sized(ae.FitWidth+16, ae.FitHeight+16, 1, 5)); err == nil {
		t.Errorf("%dx%d is admitted: the suggestion is not the largest", ae.FitWidth+16, ae.FitHeight+16)
	}
	for _, want := range []string{"1536x1536 needs an estimated", "memory budget", "the largest size of this aspect ratio that fits"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// 512x512 fits several times over; four of them do not.
	one := probe.Estimate(sized(512, 512, 1, 5)).Peak
	two := probe.Estimate(sized(512, 512, 2, 5)).Peak
	b := NewAdmission(m, AdmissionConfig{Budget: (two + probe.Estimate(sized(512, 512, 3, 5)).Peak) / 2})
	_, err = b.Check(sized(512, 512, 4, 5))
	if !errors.As(err, &ae) || ae.Field != FieldNumImages || ae.FitImages != 2 {
		t.Fatalf("4 x 512x512 under a budget for 2 (one: %d, two: %d): %v", one, two, err)
	}
	if !strings.Contains(err.Error(), "at most 2 images of this size fit") {
		t.Errorf("message %q", err)
	}

	// A budget below the smallest request: nothing fits.
	c := NewAdmission(m, AdmissionConfig{Budget: 1 << 20, MinSide: 64})
	if _, err := c.Check(sized(512, 512, 1, 5)); !errors.As(err, &ae) || ae.FitWidth != 0 ||
		!strings.Contains(err.Error(), "no size of this aspect ratio fits") {
		t.Errorf("1 MiB budget: %v", err)
	}
	// No budget: every size the model's limits allow.
	if _, err := NewAdmission(m, AdmissionConfig{}).Check(sized(2048, 2048, 4, 5)); err != nil {
		t.Errorf("no budget: %v", err)
	}
}

// Reservations share the budget: a full budget refuses until released.
func TestAdmissionReserve(t *testing.T) {
	a := NewAdmission(tinyManifest(t), AdmissionConfig{Budget: 1000})
	release, err := a.reserve(context.Background(), 800)
	if err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.reserve(gone, 300); !errors.Is(err, engine.ErrCanceled) {
		t.Fatalf("reserve past the budget with an ended context: %v", err)
	}
	release()
	again, err := a.reserve(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	again()
	// More than the budget is clamped (Check refuses such requests first).
	all, err := a.reserve(context.Background(), 5000)
	if err != nil {
		t.Fatal(err)
	}
	all()
}

// The default budget: 90% of the machine's memory minus the weights, and
// on CPU minus the prompt cache and the process's reserve.
func TestBudgetFrom(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		total, model, cache int64
		gpu                 bool
		want                int64
	}{
		{8 * gib, 7 << 20, 256 << 20, false, 8*gib*9/10 - 7<<20 - 256<<20 - processReserve},
		{80 * gib, 8 * gib, 256 << 20, true, 80*gib*9/10 - 8*gib},
		{1 * gib, 2 * gib, 0, false, 0},
	} {
		if got := budgetFrom(tc.total, tc.model, tc.cache, tc.gpu); got != tc.want {
			t.Errorf("budgetFrom(%d, %d, %d, %v) = %d, want %d", tc.total, tc.model, tc.cache, tc.gpu, got, tc.want)
		}
	}
	d, err := DeriveBudget(BudgetConfig{Provider: ProviderCPU, ModelBytes: ModelBytes(tinyManifest(t)), PromptCacheBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if d.Bytes <= 0 || d.Bytes >= d.Total || (d.Source != "RAM" && d.Source != "cgroup limit") {
		t.Errorf("derived %+v", d)
	}
	t.Logf("this machine: %s", d)
}

func TestModelBytes(t *testing.T) {
	m := tinyManifest(t)
	var want int64
	for _, f := range []string{"text_encoder.onnx", "transformer.onnx", "vae_decoder.onnx", "safety_checker.onnx"} {
		want += m.Files[f].Bytes
	}
	if got := ModelBytes(m); got != want || got == 0 {
		t.Errorf("ModelBytes = %d, want %d", got, want)
	}
}

// The 4B model's figures for docs/memory.md.
func TestEstimate4B(t *testing.T) {
	for _, provider := range []string{ProviderCUDA, ProviderCPU} {
		a := NewAdmission(klein4BManifest(), AdmissionConfig{Provider: provider})
		for _, r := range []*engine.Request{sized(1024, 768, 1, 5), sized(1024, 1024, 1, 5), sized(1024, 1024, 4, 5),
			sized(2048, 2048, 1, 5), sized(2048, 2048, 4, 5)} {
			e := a.Estimate(r)
			t.Logf("%s %dx%d x%d: text %.2f, transformer %.2f, VAE %.2f (tile %d), host %.2f, peak %.2f GiB", provider,
				r.Width, r.Height, r.NumImages, gib(e.TextEncoder), gib(e.Transformer), gib(e.VAEDecoder), e.DecodeTile,
				gib(e.Host), gib(e.Peak))
		}
	}
}

func gib(n int64) float64 { return float64(n) / (1 << 30) }
