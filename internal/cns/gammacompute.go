package cns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// VelocityFunc returns a model's velocity for one sample at noise level
// sigma: x and dst are packed latents (1, h·w, 128) float32. For the base
// model it is the CFG-combined velocity at the production guidance scale,
// bound to one prompt.
type VelocityFunc func(ctx context.Context, x []float32, sigma float32, dst []float32) error

// GammaSample is one deterministic trajectory measured by
// ComputeGammaMatrix.
type GammaSample struct {
	Height, Width int   // packed latent grid (image pixels / 16)
	Seed          int64 // the run starts from sampler.InitialNoise(Seed)
	Velocity      VelocityFunc
}

// GammaOptions configure ComputeGammaMatrix.
type GammaOptions struct {
	Steps int // N, also the number of matrix rows
	Bands int // F; 0 means 32
	// LatentBF16 runs the Euler loop as a bf16 pipeline does.
	LatentBF16 bool
	// Metadata is copied into the result; Steps, Samples, Resolutions,
	// Width, Height and Mu are filled in from the runs.
	Metadata GammaMetadata
	// Progress, when set, is called after each finished sample.
	Progress func(done, total int)
}

// ComputeGammaMatrix measures a model-specific γ matrix (docs/cns.md §9)
// from the given samples; see GammaAccumulator for the method.
func ComputeGammaMatrix(ctx context.Context, samples []GammaSample, opt GammaOptions) (*GammaMatrix, error) {
	acc, err := NewGammaAccumulator(opt.Steps, opt.Bands, opt.LatentBF16)
	if err != nil {
		return nil, err
	}
	for k, smp := range samples {
		if err := acc.Add(ctx, smp); err != nil {
			return nil, fmt.Errorf("cns: gamma sample %d: %w", k, err)
		}
		if opt.Progress != nil {
			opt.Progress(k+1, len(samples))
		}
	}
	return acc.Matrix(opt.Metadata)
}

// GammaAccumulator measures a model-specific γ matrix one sample at a time
// (docs/cns.md §9). For every sample it runs the deterministic N-step
// Euler sampler on the sample's own empirical-μ schedule and, at each step
// i, takes the clean estimate x̂0_i = x_i − σ_i·v_i. On the unpacked VAE grid
// (32, 2h, 2w) it computes per FFT coefficient
//
//	prog = clamp(1 − |X̂0_i − X_N|² / (|X_N|² + ε), 0, 1),  ε = 1e-8·mean|X_N|²
//
// against the final latent x_N, averages over channels and then over the
// members of each radial band (bands empty on that grid are skipped).
// Matrix averages over samples and min–max normalises every band over the
// N rows. Row i is step progress i/(N−1), so a sampler with N steps reads
// row i verbatim.
//
// Results are deterministic for given samples. Memory per Add is N latents
// (78 MB at 1024×768, N = 50).
type GammaAccumulator struct {
	steps, bands int
	bf16         bool
	sum          []float64 // N×F: Σ over samples of the band progress
	hits         []int     // per band: samples in which it was non-empty
	samples      int
	first        *GammaSample
	rowSigmas    []float64
	resolutions  []string
}

// NewGammaAccumulator starts an empty measurement of steps rows by bands
// bands (0 means 32).
func NewGammaAccumulator(steps, bands int, latentBF16 bool) (*GammaAccumulator, error) {
	if steps < 2 {
		return nil, fmt.Errorf("cns: gamma matrix needs at least 2 steps, got %d", steps)
	}
	if bands == 0 {
		bands = 32
	}
	if bands < 2 || bands > maxBands {
		return nil, fmt.Errorf("cns: gamma matrix needs 2 to %d bands, got %d", maxBands, bands)
	}
	return &GammaAccumulator{steps: steps, bands: bands, bf16: latentBF16,
		sum: make([]float64, steps*bands), hits: make([]int, bands)}, nil
}

// Samples returns the number of samples added.
func (a *GammaAccumulator) Samples() int { return a.samples }

// Add runs one sample's trajectory and accumulates its band progress. A
// failed Add leaves the accumulator unchanged.
func (a *GammaAccumulator) Add(ctx context.Context, smp GammaSample) error {
	if smp.Height < 1 || smp.Width < 1 || smp.Velocity == nil {
		return errors.New("need a positive grid and a velocity function")
	}
	sig, err := sampler.Sigmas(smp.Height*smp.Width, a.steps)
	if err != nil {
		return err
	}
	bm, err := RadialBands(2*smp.Height, 2*smp.Width, a.bands)
	if err != nil {
		return err
	}
	part := make([]float64, len(a.sum))
	if err := measureSample(ctx, smp, sig, bm, a.bf16, part); err != nil {
		return err
	}
	for k, v := range part {
		a.sum[k] += v
	}
	for b, c := range bm.Counts {
		if c > 0 {
			a.hits[b]++
		}
	}
	if a.samples == 0 {
		first := smp
		a.first = &first
		a.rowSigmas = make([]float64, a.steps)
		for i := range a.rowSigmas {
			a.rowSigmas[i] = float64(sig[i])
		}
	}
	res := fmt.Sprintf("%dx%d", smp.Width*sampler.Downscale, smp.Height*sampler.Downscale)
	if !slices.Contains(a.resolutions, res) {
		a.resolutions = append(a.resolutions, res)
	}
	a.samples++
	return nil
}

// Matrix returns the min–max normalised matrix of the samples so far, with
// meta completed from the runs (Steps, Samples, Resolutions, and Width,
// Height and Mu of the first sample, whose schedule gives Sigmas).
func (a *GammaAccumulator) Matrix(meta GammaMetadata) (*GammaMatrix, error) {
	if a.samples == 0 {
		return nil, errors.New("cns: gamma matrix needs at least one sample")
	}
	n, bands := a.steps, a.bands
	meta.Steps, meta.Samples = n, a.samples
	meta.Resolutions = slices.Clone(a.resolutions)
	meta.Width, meta.Height = a.first.Width*sampler.Downscale, a.first.Height*sampler.Downscale
	meta.Mu = sampler.EmpiricalMu(a.first.Height*a.first.Width, n)
	m := &GammaMatrix{Rows: n, Bands: bands, Values: make([]float64, n*bands),
		Sigmas: slices.Clone(a.rowSigmas), Metadata: meta}
	for b := 0; b < bands; b++ {
		if a.hits[b] == 0 {
			return nil, fmt.Errorf("cns: band %d of %d is empty on every sample grid; use fewer bands or larger grids", b, bands)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := 0; i < n; i++ {
			v := a.sum[i*bands+b] / float64(a.hits[b])
			m.Values[i*bands+b] = v
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		if !(hi-lo > 1e-12) {
			return nil, fmt.Errorf("cns: band %d shows no progress over the schedule (%v..%v)", b, lo, hi)
		}
		for i := 0; i < n; i++ {
			m.Values[i*bands+b] = (m.Values[i*bands+b] - lo) / (hi - lo)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// measureSample runs one trajectory and adds its per-step band progress to
// sum (N×F).
func measureSample(ctx context.Context, smp GammaSample, sig []float32, bm *BandMap, bf16 bool, sum []float64) error {
	h, w := smp.Height, smp.Width
	size := h * w * sampler.PackedChannels
	n := len(sig) - 1
	chw := make([]float32, size)
	x := make([]float32, size)
	sampler.InitialNoise(smp.Seed, chw)
	if err := sampler.Pack(x, chw, 1, sampler.PackedChannels, h, w); err != nil {
		return err
	}
	if bf16 {
		sampler.RoundBF16Slice(x)
	}
	v := make([]float32, size)
	hats := make([]float32, n*size)
	stepper := sampler.EulerStepper{Sigmas: sig, BF16: bf16}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := smp.Velocity(ctx, x, sig[i], v); err != nil {
			return fmt.Errorf("velocity at step %d: %w", i, err)
		}
		hat := hats[i*size : (i+1)*size]
		s := sig[i]
		for k, xv := range x {
			hat[k] = xv - float32(s*v[k])
		}
		if err := stepper.Step(i, x, v); err != nil {
			return err
		}
	}
	// Spectra on the unpacked grid, two channels per complex FFT.
	H, W := 2*h, 2*w
	hw := H * W
	planes := func(dst, packed []float32) error {
		if err := sampler.Unpack(chw, packed, 1, sampler.PackedChannels, h, w); err != nil {
			return err
		}
		return sampler.Unpatchify(dst, chw, 1, sampler.VAEChannels, h, w)
	}
	fft := newPlaneFFT(H, W)
	buf := make([]complex128, hw)
	power := func(pl []float32, pw []float64) {
		for c := 0; c < sampler.VAEChannels; c += 2 {
			pairPower(fft, buf, pl[c*hw:(c+1)*hw], pl[(c+1)*hw:(c+2)*hw], pw[c*hw:(c+1)*hw], pw[(c+1)*hw:(c+2)*hw])
		}
	}
	final, d := make([]float32, size), make([]float32, size)
	if err := planes(final, x); err != nil {
		return err
	}
	finalPow := make([]float64, sampler.VAEChannels*hw)
	power(final, finalPow)
	var mean float64
	for _, p := range finalPow {
		mean += p
	}
	eps := 1e-8 * mean / float64(len(finalPow))
	diffPow := make([]float64, len(finalPow))
	perCoef := make([]float64, hw)
	perBand := make([]float64, bm.F)
	bands := bm.F
	for i := 0; i < n; i++ {
		if err := planes(d, hats[i*size:(i+1)*size]); err != nil {
			return err
		}
		for k := range d {
			d[k] -= final[k]
		}
		power(d, diffPow)
		clear(perCoef)
		for c := 0; c < sampler.VAEChannels; c++ {
			for k := 0; k < hw; k++ {
				p := 1 - diffPow[c*hw+k]/(finalPow[c*hw+k]+eps)
				perCoef[k] += math.Min(1, math.Max(0, p))
			}
		}
		clear(perBand)
		for k, b := range bm.Band {
			perBand[b] += perCoef[k] / sampler.VAEChannels
		}
		for b, cnt := range bm.Counts {
			if cnt > 0 {
				sum[i*bands+b] += perBand[b] / float64(cnt)
			}
		}
	}
	return nil
}

// pairPower writes |FFT(a)(k)|² into pa and |FFT(b)(k)|² into pb for two
// real H×W planes, with one complex FFT of a + i·b: the spectra separate as
// A(k) = (Z(k) + conj Z(−k))/2 and B(k) = (Z(k) − conj Z(−k))/(2i).
func pairPower(fft *planeFFT, buf []complex128, a, b []float32, pa, pb []float64) {
	H, W := fft.h, fft.w
	for k := range buf {
		buf[k] = complex(float64(a[k]), float64(b[k]))
	}
	fft.forward(buf)
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			k := y*W + x
			z, zc := buf[k], buf[((H-y)%H)*W+(W-x)%W]
			ar, ai := (real(z)+real(zc))/2, (imag(z)-imag(zc))/2
			br, bi := (imag(z)+imag(zc))/2, (real(zc)-real(z))/2
			pa[k] = ar*ar + ai*ai
			pb[k] = br*br + bi*bi
		}
	}
}
