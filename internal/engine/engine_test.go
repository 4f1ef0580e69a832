package engine

import (
	"errors"
	"math"
	"testing"

	"github.com/kleinserve/kleinserve/internal/cns"
)

func validRequest() Request {
	return Request{Prompt: "x", GuidanceScale: 5, Steps: 4, Width: 64, Height: 48, NumImages: 2, Seed: 7,
		Acceleration: AccelerationNone, OutputFormat: FormatPNG, CNS: cns.DefaultParams()}
}

func TestCheck(t *testing.T) {
	if r := validRequest(); r.Check() != nil {
		t.Fatalf("valid request refused: %v", r.Check())
	}
	for name, mut := range map[string]func(*Request){
		"width not a multiple":    func(r *Request) { r.Width = 70 },
		"side below minimum":      func(r *Request) { r.Width = 0 },
		"side above maximum":      func(r *Request) { r.Width = MaxSide + SizeMultiple },
		"zero steps":              func(r *Request) { r.Steps = 0 },
		"too many steps":          func(r *Request) { r.Steps = MaxSteps + 1 },
		"no images":               func(r *Request) { r.NumImages = 0 },
		"too many images":         func(r *Request) { r.NumImages = MaxImages + 1 },
		"negative guidance":       func(r *Request) { r.GuidanceScale = -1 },
		"NaN guidance":            func(r *Request) { r.GuidanceScale = math.NaN() },
		"unknown format":          func(r *Request) { r.OutputFormat = "gif" },
		"short initial noise":     func(r *Request) { r.InitialNoise = make([]float32, 5) },
		"active CNS out of range": func(r *Request) { r.CNS.Enable, r.CNS.EnergyScale = true, 9 },
	} {
		r := validRequest()
		mut(&r)
		if err := r.Check(); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// Inactive CNS settings are not the sampler's business.
	r := validRequest()
	r.CNS.EnergyScale = 9
	if err := r.Check(); err != nil {
		t.Errorf("inactive CNS checked: %v", err)
	}
	r.InitialNoise = make([]float32, 2*128*3*4)
	if err := r.Check(); err != nil {
		t.Errorf("right-sized noise refused: %v", err)
	}
}

func TestImageSeedAndGrid(t *testing.T) {
	r := validRequest()
	if r.ImageSeed(0) != 7 || r.ImageSeed(3) != 10 {
		t.Fatal("image k must use seed+k")
	}
	if h, w := r.LatentGrid(); h != 3 || w != 4 {
		t.Fatalf("grid %dx%d", h, w)
	}
	if r.GuidanceScale = 1; r.UsesCFG() {
		t.Fatal("guidance 1 runs no CFG")
	}
}

func TestEveryFormatHasACodec(t *testing.T) {
	exts := map[string]bool{}
	for _, f := range OutputFormats() {
		c, err := f.Codec()
		if err != nil || c.ContentType == "" || exts[c.Extension] {
			t.Fatalf("%s: %+v %v", f, c, err)
		}
		exts[c.Extension] = true
	}
}
