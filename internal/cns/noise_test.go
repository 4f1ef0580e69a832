package cns

import (
	"math"
	"math/cmplx"
	"slices"
	"testing"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

func noiseOf(t testing.TB, prm Params, sig []float32, h, w int, seeds []int64, step int) ([]float32, bool) {
	t.Helper()
	s := mustSampler(t, Config{Params: prm, Sigmas: sig, Height: h, Width: w, Seeds: seeds, Workers: 2})
	dst := make([]float32, len(seeds)*h*w*128)
	white, err := s.Noise(step, dst)
	if err != nil {
		t.Fatal(err)
	}
	return dst, white
}

// Property 7 (docs/cns.md §10): the filtered field is real, and the
// production path (two real planes packed into one complex FFT) equals a
// one-plane reference computed with a naive DFT, for even, odd and mixed grid
// sizes.
func TestColoringIsRealAndMatchesReference(t *testing.T) {
	prm := activeParams()
	for _, g := range [][2]int{{6, 8}, {5, 7}, {4, 9}, {9, 4}, {1, 6}, {7, 1}} {
		H, W := g[0], g[1]
		bm, err := RadialBands(H, W, 8)
		if err != nil {
			t.Fatal(err)
		}
		gamma, amp := make([]float64, 8), make([]float64, 8)
		BuiltinGamma().Gamma(3, 20, gamma)
		Amplitudes(amp, gamma, TiltAlpha(3.0/19, prm), prm)
		gain := make([]float64, H*W)
		for k, b := range bm.Band {
			gain[k] = amp[b] / float64(H*W)
		}
		a, b := make([]float64, H*W), make([]float64, H*W)
		for k := range a {
			a[k] = math.Sin(float64(k)*1.3) + 0.5
			b[k] = math.Cos(float64(k)*0.7) - 0.25
		}
		// Reference: each plane alone through the naive DFT.
		ref := func(plane []float64) ([]float64, float64) {
			in := make([]complex128, H*W)
			for k, v := range plane {
				in[k] = complex(v, 0)
			}
			f := naiveDFT2(in, H, W, false)
			for k := range f {
				f[k] *= complex(gain[k], 0)
			}
			out := naiveDFT2(f, H, W, true)
			re := make([]float64, H*W)
			var maxRe, maxIm float64
			for k, z := range out {
				re[k] = real(z)
				maxRe = math.Max(maxRe, math.Abs(real(z)))
				maxIm = math.Max(maxIm, math.Abs(imag(z)))
			}
			return re, maxIm / maxRe
		}
		ra, imA := ref(a)
		rb, imB := ref(b)
		if imA > 1e-5 || imB > 1e-5 {
			t.Errorf("%dx%d: max|Im|/max|Re| = %.3g, %.3g", H, W, imA, imB)
		}
		buf := make([]complex128, H*W)
		gainT := make([]float64, H*W)
		for k := range buf {
			buf[k] = complex(a[k], b[k])
			gainT[(k%W)*H+k/W] = gain[k]
		}
		newPlaneFFT(H, W).filter(buf, gainT)
		for k, z := range buf {
			if math.Abs(real(z)-ra[k]) > 1e-5 || math.Abs(imag(z)-rb[k]) > 1e-5 {
				t.Fatalf("%dx%d [%d]: pair path (%v, %v), reference (%v, %v)", H, W, k, real(z), imag(z), ra[k], rb[k])
			}
		}
		// forward() is the DFT.
		f := make([]complex128, H*W)
		for k := range f {
			f[k] = complex(a[k], b[k])
		}
		want := naiveDFT2(f, H, W, false)
		newPlaneFFT(H, W).forward(f)
		for k := range f {
			if cmplx.Abs(f[k]-want[k]) > 1e-9 {
				t.Fatalf("%dx%d forward [%d]: %v, DFT %v", H, W, k, f[k], want[k])
			}
		}
	}
}

// Property 8 (docs/cns.md §10): every element of ξ has variance e² (analytic
// Z), checked within 2 % over 2^20 elements for several filters.
func TestNoiseVariance(t *testing.T) {
	const h, w = 16, 16 // unpacked 32×32
	seeds := make([]int64, 32)
	for b := range seeds {
		seeds[b] = int64(7 * b)
	}
	sig := mustSigmas(t, 3072, 11) // p_i = i/10
	flat := approxFlat()
	blue := flat
	blue.AlphaTiltStart, blue.AlphaTiltEnd = 2, 2
	red := flat
	red.AlphaTiltStart, red.AlphaTiltEnd = -2, -2
	def := activeParams()
	defE := def
	defE.EnergyScale = 1.3
	cases := []struct {
		name string
		prm  Params
		step int
	}{
		{"flat", flat, 5}, {"blue", blue, 5}, {"red", red, 5},
		{"default p=0.1", def, 1}, {"default p=0.9", def, 9}, {"default e=1.3 p=0.5", defE, 5},
	}
	for _, c := range cases {
		xi, white := noiseOf(t, c.prm, sig, h, w, seeds, c.step)
		if white {
			t.Fatalf("%s: unexpected white fallback", c.name)
		}
		var sum float64
		for _, v := range xi {
			sum += float64(v) * float64(v)
		}
		e2 := c.prm.EnergyScale * c.prm.EnergyScale
		if got := sum / float64(len(xi)); math.Abs(got/e2-1) > 0.02 {
			t.Errorf("%s: variance %.4f, want e² = %.4f", c.name, got, e2)
		}
	}
}

// bandPower measures mean |FFT(ξ)(k)|²/(HW) per band over all planes of
// the packed noise.
func bandPower(t testing.TB, xi []float32, seeds, h, w int, bm *BandMap) []float64 {
	t.Helper()
	H, W := 2*h, 2*w
	S := h * w * 128
	power := make([]float64, bm.F)
	fft := newPlaneFFT(H, W)
	buf := make([]complex128, H*W)
	for b := 0; b < seeds; b++ {
		planes := unpackedPlanes(t, xi[b*S:(b+1)*S], h, w)
		for c := 0; c < 32; c++ {
			for k := range buf {
				buf[k] = complex(float64(planes[c*H*W+k]), 0)
			}
			fft.forward(buf)
			for k, z := range buf {
				power[bm.Band[k]] += real(z)*real(z) + imag(z)*imag(z)
			}
		}
	}
	for band := range power {
		power[band] /= float64(bm.Counts[band] * seeds * 32 * H * W)
	}
	return power
}

// Property 9 (docs/cns.md §10): per-band power of ξ is e²·A_b²/Z² within 5 %;
// a positive tilt raises and a negative tilt lowers the high/low band power
// ratio; with approximation and α = 0 every band has power e².
func TestNoiseBandSpectrum(t *testing.T) {
	const h, w, F = 8, 8, 8 // unpacked 16×16: band 7 has a single coefficient
	seeds := make([]int64, 256)
	for b := range seeds {
		seeds[b] = int64(100 + b)
	}
	sig := mustSigmas(t, 3072, 11)
	bm, err := RadialBands(2*h, 2*w, F)
	if err != nil {
		t.Fatal(err)
	}
	ratio := func(prm Params, step int) float64 {
		prm.NumFreqBins = F
		xi, _ := noiseOf(t, prm, sig, h, w, seeds, step)
		got := bandPower(t, xi, len(seeds), h, w, bm)
		// Expected from the amplitudes the sampler uses.
		s := mustSampler(t, Config{Params: prm, Sigmas: sig, Height: h, Width: w, Seeds: seeds[:1]})
		s.prepare(step)
		z := NormalizationZ(bm, s.amp)
		e2 := prm.EnergyScale * prm.EnergyScale
		for band := range got {
			want := e2 * s.amp[band] * s.amp[band] / (z * z)
			if math.Abs(got[band]/want-1) > 0.05 {
				t.Errorf("α=(%v,%v) step %d band %d: power %.4f, want %.4f", prm.AlphaTiltStart, prm.AlphaTiltEnd, step, band, got[band], want)
			}
		}
		return got[F-2] / got[0]
	}
	flat := approxFlat()
	rFlat := ratio(flat, 5)
	blue := flat
	blue.AlphaTiltStart, blue.AlphaTiltEnd = 1.5, 1.5
	red := flat
	red.AlphaTiltStart, red.AlphaTiltEnd = -1.5, -1.5
	rBlue, rRed := ratio(blue, 5), ratio(red, 5)
	if !(rRed < rFlat && rFlat < rBlue) {
		t.Errorf("high/low power ratios red %.3f, flat %.3f, blue %.3f not ordered", rRed, rFlat, rBlue)
	}
	ratio(activeParams(), 2) // the default matrix filter
}

// Property 10 (docs/cns.md §10): cancellations.
func TestNoiseCancellations(t *testing.T) {
	const h, w = 4, 6
	seeds := []int64{11, 12}
	sig := mustSigmas(t, 3072, 20)
	const step = 7
	// approximation: the divider is a common factor.
	base := activeParams()
	base.GammaSource = GammaSourceApproximation
	ref, _ := noiseOf(t, base, sig, h, w, seeds, step)
	for _, d := range []float64{1, 3, 50} {
		p := base
		p.GammaDivider = d
		got, _ := noiseOf(t, p, sig, h, w, seeds, step)
		if m := maxAbsDiff(got, ref); m > 1e-6 {
			t.Errorf("approximation, d=%v: differs by %.3g", d, m)
		}
	}
	// approximation with zero tilt: power_gamma (and d) cancel too. With an
	// fnorm tilt α ≠ 0, power_gamma scales the effective tilt exp(pw·α·f)
	// and does change the noise, so "independent of power_gamma" holds only
	// for a flat tilt.
	flat := approxFlat()
	refFlat, _ := noiseOf(t, flat, sig, h, w, seeds, step)
	for _, pw := range []float64{0.1, 3} {
		p := flat
		p.PowerGamma, p.GammaDivider = pw, 20
		got, _ := noiseOf(t, p, sig, h, w, seeds, step)
		if m := maxAbsDiff(got, refFlat); m > 1e-6 {
			t.Errorf("approximation α=0, pw=%v: differs by %.3g", pw, m)
		}
		p = base
		p.PowerGamma = pw
		got, _ = noiseOf(t, p, sig, h, w, seeds, step)
		if maxAbsDiff(got, ref) < 1e-3 {
			t.Errorf("approximation α≠0, pw=%v: expected the tilt to change with pw", pw)
		}
	}
	// Flat tilt (fnorm off) with 1+α > 0: α cancels, in both γ sources.
	for _, src := range []GammaSource{GammaSourceMatrix, GammaSourceApproximation} {
		p := activeParams()
		p.GammaSource, p.AlphaUseFnorm = src, false
		r, _ := noiseOf(t, p, sig, h, w, seeds, step)
		for _, a := range [][2]float64{{-0.5, -0.5}, {1.5, 1.5}, {0.9, -0.9}} {
			p.AlphaTiltStart, p.AlphaTiltEnd = a[0], a[1]
			got, _ := noiseOf(t, p, sig, h, w, seeds, step)
			if m := maxAbsDiff(got, r); m > 1e-6 {
				t.Errorf("%s, fnorm off, α=%v: differs by %.3g", src, a, m)
			}
		}
	}
	// approximation + flat tilt: ξ = e·w exactly.
	p := base
	p.AlphaUseFnorm = false
	got, white := noiseOf(t, p, sig, h, w, seeds, step)
	if white || !slices.Equal(got, whitePacked(t, seeds, h, w, step, float32(p.EnergyScale))) {
		t.Error("approximation with a flat tilt must give exactly e·w")
	}
}

// Property 11 (docs/cns.md §10): fallbacks to white noise, and no NaN/Inf at
// range corners.
func TestNoiseFallbacksAndCorners(t *testing.T) {
	const h, w = 2, 3
	seeds := []int64{4}
	sig := mustSigmas(t, 3072, 10)
	// Flat tilt with α = −1.5: every amplitude is 0.
	p := activeParams()
	p.AlphaUseFnorm = false
	p.AlphaTiltStart, p.AlphaTiltEnd = -1.5, -1.5
	s := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: seeds})
	xi := make([]float32, h*w*128)
	white, err := s.Noise(3, xi)
	if err != nil || !white || !slices.Equal(xi, whitePacked(t, seeds, h, w, 3, float32(p.EnergyScale))) {
		t.Errorf("α=-1.5 flat: white=%v err=%v, want e·w", white, err)
	}
	if got := s.WhiteFallbackSteps(); !slices.Equal(got, []int{3}) {
		t.Errorf("fallback steps %v", got)
	}
	// d = 0.1 with γ ≥ 0.1 in every band: all residuals are negative.
	p = activeParams()
	p.GammaDivider = 0.1
	for _, src := range []GammaSource{GammaSourceApproximation, GammaSourceMatrix} {
		p.GammaSource = src
		got, white := noiseOf(t, p, sig, h, w, seeds, 6) // γ_fit(p=2/3) > 0.1, 1−σ_6 > 0.1
		if !white || !slices.Equal(got, whitePacked(t, seeds, h, w, 6, float32(p.EnergyScale))) {
			t.Errorf("%s d=0.1: white=%v, want e·w", src, white)
		}
	}
	// Range corners: a full run stays finite.
	x0 := sinPattern(h * w * 128)
	for mask := 0; mask < 1<<8; mask++ {
		pick := func(bit int, lo, hi float64) float64 {
			if mask>>bit&1 == 1 {
				return hi
			}
			return lo
		}
		p := activeParams()
		p.AlphaTiltStart = pick(0, -2, 2)
		p.AlphaTiltEnd = pick(1, -2, 2)
		p.PowerGamma = pick(2, 0.1, 3)
		p.GammaDivider = pick(3, 0.1, 50)
		p.NumFreqBins = int(pick(4, 8, 128))
		p.AlphaExpSharpness = pick(5, 0.1, 10)
		p.EnergyScale = pick(6, 0.5, 1.5)
		p.SChurn = pick(7, 0.01, 2)
		for _, src := range []GammaSource{GammaSourceApproximation, GammaSourceMatrix} {
			for _, fnorm := range []bool{true, false} {
				p.GammaSource, p.AlphaUseFnorm = src, fnorm
				s := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: seeds})
				out := runLoop(t, s, seeds, h, w, pointMass(x0), nil)
				if !allFinite(out) {
					t.Fatalf("non-finite output at %+v", p)
				}
			}
		}
	}
}

// Property 16 (docs/cns.md §10): determinism and batch independence.
func TestNoiseDeterminism(t *testing.T) {
	const h, w = 3, 4
	sig := mustSigmas(t, 3072, 10)
	p := activeParams()
	a, _ := noiseOf(t, p, sig, h, w, []int64{1, 2, 3}, 4)
	b, _ := noiseOf(t, p, sig, h, w, []int64{1, 2, 3}, 4)
	if !slices.Equal(a, b) {
		t.Error("same seeds, different noise")
	}
	c, _ := noiseOf(t, p, sig, h, w, []int64{1, 2, 4}, 4)
	S := h * w * 128
	if !slices.Equal(a[:2*S], c[:2*S]) || slices.Equal(a[2*S:], c[2*S:]) {
		t.Error("changing seed 3 must change sample 2 only")
	}
	// Image b of a batch equals the single-image run with seed b, and the
	// worker count does not matter.
	single := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: []int64{2}, Workers: 1})
	one := make([]float32, S)
	if _, err := single.Noise(4, one); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one, a[S:2*S]) {
		t.Error("batch sample 1 differs from the single run with its seed")
	}
	// Whole runs too.
	x0 := sinPattern(3 * S)
	batch := runLoop(t, mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: []int64{1, 2, 3}, Workers: 3}), []int64{1, 2, 3}, h, w, pointMass(x0), nil)
	alone := runLoop(t, mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: []int64{3}}), []int64{3}, h, w, pointMass(x0[2*S:]), nil)
	if !slices.Equal(batch[2*S:], alone) {
		t.Error("batch run sample 2 differs from the single run")
	}
	// Different steps draw different fields.
	d, _ := noiseOf(t, p, sig, h, w, []int64{1, 2, 3}, 5)
	if slices.Equal(a, d) {
		t.Error("steps 4 and 5 drew the same noise")
	}
	// The white draw of a step does not depend on F, α, d, pw or c: with a
	// flat filter ξ_i = e·w_i for all of them.
	want := whitePacked(t, []int64{9}, h, w, 4, float32(0.98))
	for _, mod := range []func(*Params){
		func(p *Params) {},
		func(p *Params) { p.NumFreqBins = 100 },
		func(p *Params) { p.GammaDivider = 7 },
		func(p *Params) { p.PowerGamma = 2.5 },
		func(p *Params) { p.SChurn = 1.7 },
		func(p *Params) { p.AlphaUseFnorm = false; p.AlphaTiltStart = 1 },
	} {
		q := approxFlat()
		mod(&q)
		got, _ := noiseOf(t, q, sig, h, w, []int64{9}, 4)
		if !slices.Equal(got, want) {
			t.Errorf("flat-filter noise changed with parameters %+v", q)
		}
	}
}

// Property 17 (docs/cns.md §10): the packed layout. With a flat filter the
// noise is the white VAE-grid field permuted by Pack∘Patchify, element for
// element.
func TestNoisePackedLayout(t *testing.T) {
	const h, w = 5, 3
	sig := mustSigmas(t, 3072, 6)
	got, _ := noiseOf(t, approxFlat(), sig, h, w, []int64{77}, 2)
	field := make([]float32, 32*2*h*2*w)
	sampler.NormalStream{Key: sampler.SeedKey(77), Stream: sampler.StreamCNS, Sub: 2}.Fill(field)
	for c := 0; c < 32; c++ {
		for y := 0; y < 2*h; y++ {
			for x := 0; x < 2*w; x++ {
				want := field[(c*2*h+y)*2*w+x] * float32(0.98)
				if g := got[sampler.PackedIndex(c, y, x, w)]; g != want {
					t.Fatalf("(%d,%d,%d): %v, want %v", c, y, x, g, want)
				}
			}
		}
	}
	// Colored noise round-trips through Unpack/Unpatchify to the VAE grid.
	col, _ := noiseOf(t, activeParams(), sig, h, w, []int64{77}, 2)
	planes := unpackedPlanes(t, col, h, w)
	back := make([]float32, len(planes))
	patched := make([]float32, len(planes))
	_ = sampler.Patchify(patched, planes, 1, 32, h, w)
	_ = sampler.Pack(back, patched, 1, 128, h, w)
	if !slices.Equal(back, col) {
		t.Error("Pack∘Patchify∘Unpatchify∘Unpack is not the identity")
	}
}
