package cns

import (
	"math"
	"math/cmplx"
	"testing"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// activeParams returns the defaults with CNS switched on.
func activeParams() Params {
	p := DefaultParams()
	p.Enable = true
	return p
}

// approxFlat is a flat filter: approximation γ with zero tilt, so ξ = e·w.
func approxFlat() Params {
	p := activeParams()
	p.GammaSource = GammaSourceApproximation
	p.AlphaTiltStart, p.AlphaTiltEnd = 0, 0
	return p
}

// toySigmas is the toy schedule of docs/cns.md §10, property 3.
var toySigmas = []float32{1, 0.75, 0.5, 0.25, 0}

func mustSampler(t testing.TB, cfg Config) *Sampler {
	t.Helper()
	s, err := NewSampler(cfg)
	if err != nil {
		t.Fatalf("NewSampler: %v", err)
	}
	return s
}

func mustSigmas(t testing.TB, seq, n int) []float32 {
	t.Helper()
	s, err := sampler.Sigmas(seq, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// whitePacked returns e·w of step i for the given seeds in packed layout:
// the white fields the sampler draws, scattered with Pack∘Patchify.
func whitePacked(t testing.TB, seeds []int64, h, w, step int, e float32) []float32 {
	t.Helper()
	S := h * w
	out := make([]float32, len(seeds)*S*sampler.PackedChannels)
	field := make([]float32, sampler.VAEChannels*4*S)
	patched := make([]float32, len(field))
	for b, seed := range seeds {
		sampler.NormalStream{Key: sampler.SeedKey(seed), Stream: sampler.StreamCNS, Sub: uint32(step)}.Fill(field)
		for k := range field {
			field[k] *= e
		}
		if err := sampler.Patchify(patched, field, 1, sampler.VAEChannels, h, w); err != nil {
			t.Fatal(err)
		}
		if err := sampler.Pack(out[b*S*128:(b+1)*S*128], patched, 1, sampler.PackedChannels, h, w); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// unpackedPlanes converts one packed sample (S, 128) to its 32 VAE planes
// (32, 2h, 2w).
func unpackedPlanes(t testing.TB, packed []float32, h, w int) []float32 {
	t.Helper()
	chw := make([]float32, len(packed))
	if err := sampler.Unpack(chw, packed, 1, sampler.PackedChannels, h, w); err != nil {
		t.Fatal(err)
	}
	planes := make([]float32, len(packed))
	if err := sampler.Unpatchify(planes, chw, 1, sampler.VAEChannels, h, w); err != nil {
		t.Fatal(err)
	}
	return planes
}

// naiveDFT2 is the textbook O(n²) 2-D DFT (inverse with sign +1, no
// normalisation), an independent reference for the gonum-based path.
func naiveDFT2(in []complex128, H, W int, inverse bool) []complex128 {
	sign := -1.0
	if inverse {
		sign = 1
	}
	out := make([]complex128, H*W)
	for ky := 0; ky < H; ky++ {
		for kx := 0; kx < W; kx++ {
			var acc complex128
			for y := 0; y < H; y++ {
				for x := 0; x < W; x++ {
					ph := sign * 2 * math.Pi * (float64(ky*y)/float64(H) + float64(kx*x)/float64(W))
					acc += in[y*W+x] * cmplx.Exp(complex(0, ph))
				}
			}
			out[ky*W+kx] = acc
		}
	}
	return out
}

// pointMass is the toy model v(x, σ) = (x − x0*)/σ, whose clean estimate is
// exactly x0*.
func pointMass(x0 []float32) func(x, v []float32, sigma float32) {
	return func(x, v []float32, sigma float32) {
		for k := range x {
			v[k] = (x[k] - x0[k]) / sigma
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for k := range a {
		m = math.Max(m, math.Abs(float64(a[k])-float64(b[k])))
	}
	return m
}

func allFinite(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}
