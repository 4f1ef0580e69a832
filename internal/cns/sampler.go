package cns

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Config describes one request's CNS sampler.
type Config struct {
	Params Params
	// Sigmas is the N+1 schedule (σ_0 = 1 ... σ_N = 0) the pipeline runs.
	Sigmas []float32
	// Height and Width are the packed latent grid h×w (image pixels / 16).
	Height, Width int
	// Seeds holds one seed per batch sample; sample b's CNS noise depends on
	// Seeds[b] only, so image b of a batch equals a single run with Seeds[b].
	Seeds []int64
	// Gamma is the "matrix" γ source (see ModelGamma); nil means the
	// built-in fit. Ignored for gamma_source "approximation".
	Gamma GammaTable
	// Bands optionally shares band maps between requests.
	Bands *BandCache
	// LatentBF16 rounds the stepped latent to bfloat16, as a bf16 pipeline
	// keeps it; the CNS arithmetic itself is always float32.
	LatentBF16 bool
	// Workers is the number of goroutines Noise may use (≤ 1: the calling
	// goroutine only). They are started and joined inside each call.
	Workers int
}

// Sampler is the CNS stepper of one request. It implements
// sampler.Stepper on the packed token layout the pipeline uses:
//
//	x, v, ξ: float32 (B, S, 128), S = h·w tokens, token = row·w + col,
//	channel = c·4 + pi·2 + pj of VAE channel c at (2·row+pi, 2·col+pj)
//
// When CNS is inactive (Enable false or s_churn = 0) and on the last step
// (σ_N = 0), Step is exactly the baseline Euler step (sampler.Euler, or
// sampler.EulerBF16 with LatentBF16) and draws no random numbers.
//
// A Sampler allocates all its buffers in NewSampler; Step and Noise do not
// allocate. It is not safe for concurrent use, with one exception: Noise
// writing into a caller-owned buffer may run while StepWithNoise applies
// an earlier step, so noise synthesis can overlap the model's forward pass.
type Sampler struct {
	prm      Params
	active   bool
	sigmas   []float32
	h, w     int
	H, W     int // unpacked grid 2h×2w
	seeds    []int64
	table    GammaTable
	bands    *BandMap
	bf16     bool
	euler    sampler.EulerStepper
	keep     []float32 // per step
	fresh    []float32 // per step
	gamma    []float64 // F, scratch
	amp      []float64 // F, scratch
	gainT    []float64 // W×H (transposed), scratch
	xi       []float32 // B·S·128, noise of the current step
	workers  []*noiseWorker
	fellBack []bool // per step: the filter had no energy, white noise used
	draws    int    // white fields drawn (for tests: inactive steps draw none)
	// zeroNoise forces ξ = 0 (test hook for the telescoping property).
	zeroNoise bool
}

// noiseWorker owns the scratch of one goroutine of Noise.
type noiseWorker struct {
	fft   *planeFFT
	buf   []complex128 // H·W
	white []float32    // 2·H·W: a pair of channel planes
}

// ErrInactive is returned by Noise when CNS is off.
var ErrInactive = errors.New("cns: sampler is inactive")

// NewSampler validates cfg and allocates the sampler. With CNS inactive only
// the schedule and shapes are checked (the other parameters are ignored).
func NewSampler(cfg Config) (*Sampler, error) {
	n := len(cfg.Sigmas) - 1
	if n < 1 {
		return nil, fmt.Errorf("cns: schedule needs at least 2 sigmas, got %d", len(cfg.Sigmas))
	}
	if cfg.Sigmas[0] <= 0 || cfg.Sigmas[0] > 1 || cfg.Sigmas[n] != 0 {
		return nil, fmt.Errorf("cns: schedule must start in (0, 1] and end at 0, got %v ... %v", cfg.Sigmas[0], cfg.Sigmas[n])
	}
	for i := 1; i <= n; i++ {
		if !(cfg.Sigmas[i] < cfg.Sigmas[i-1]) { // also rejects NaN
			return nil, fmt.Errorf("cns: schedule not strictly decreasing at %d: %v then %v", i, cfg.Sigmas[i-1], cfg.Sigmas[i])
		}
	}
	if cfg.Height < 1 || cfg.Width < 1 {
		return nil, fmt.Errorf("cns: latent grid %dx%d must be positive", cfg.Height, cfg.Width)
	}
	if len(cfg.Seeds) < 1 {
		return nil, errors.New("cns: need one seed per batch sample, got none")
	}
	s := &Sampler{
		prm: cfg.Params, active: cfg.Params.Active(), sigmas: cfg.Sigmas,
		h: cfg.Height, w: cfg.Width, H: 2 * cfg.Height, W: 2 * cfg.Width,
		seeds: cfg.Seeds, bf16: cfg.LatentBF16,
		euler: sampler.EulerStepper{Sigmas: cfg.Sigmas, BF16: cfg.LatentBF16},
	}
	if !s.active {
		return s, nil
	}
	if err := Validate(cfg.Params); err != nil {
		return nil, err
	}
	var err error
	if cfg.Bands != nil {
		s.bands, err = cfg.Bands.Get(s.H, s.W, cfg.Params.NumFreqBins)
	} else {
		s.bands, err = RadialBands(s.H, s.W, cfg.Params.NumFreqBins)
	}
	if err != nil {
		return nil, err
	}
	s.table = cfg.Gamma
	if s.table == nil {
		s.table = BuiltinGamma()
	}
	s.keep, s.fresh = make([]float32, n), make([]float32, n)
	for i := 0; i < n; i++ {
		k, f := StepCoefficients(cfg.Sigmas[i], cfg.Sigmas[i+1], cfg.Params.SChurn)
		s.keep[i], s.fresh[i] = float32(k), float32(f)
	}
	f := cfg.Params.NumFreqBins
	s.gamma, s.amp = make([]float64, f), make([]float64, f)
	s.gainT = make([]float64, s.H*s.W)
	s.xi = make([]float32, len(cfg.Seeds)*s.h*s.w*sampler.PackedChannels)
	s.fellBack = make([]bool, n)
	nw := min(max(cfg.Workers, 1), len(cfg.Seeds)*sampler.VAEChannels/2)
	for range nw {
		s.workers = append(s.workers, &noiseWorker{
			fft:   newPlaneFFT(s.H, s.W),
			buf:   make([]complex128, s.H*s.W),
			white: make([]float32, 2*s.H*s.W),
		})
	}
	return s, nil
}

// StepCoefficients returns the SDE-exact step's keep = (σ'/σ)^c and
// fresh = sqrt(max(0, 1 − keep²)) (docs/cns.md §7), in float64.
func StepCoefficients(sigma, sigmaNext float32, churn float64) (keep, fresh float64) {
	if sigma <= 0 {
		return 1, 0
	}
	keep = math.Pow(float64(sigmaNext)/float64(sigma), churn)
	return keep, math.Sqrt(math.Max(0, 1-keep*keep))
}

// Active reports whether CNS changes the sampler at all.
func (s *Sampler) Active() bool { return s.active }

// Steps returns N.
func (s *Sampler) Steps() int { return len(s.sigmas) - 1 }

// Injects reports whether step i adds fresh noise (CNS active and
// σ_{i+1} > 0, i.e. every step but the last).
func (s *Sampler) Injects(i int) bool {
	return s.active && i >= 0 && i+1 < len(s.sigmas) && s.sigmas[i+1] > 0
}

// Coefficients returns the float32 keep and fresh factors of step i (1, 0
// when the step does not inject).
func (s *Sampler) Coefficients(i int) (keep, fresh float32) {
	if !s.Injects(i) {
		return 1, 0
	}
	return s.keep[i], s.fresh[i]
}

// WhiteFallbackSteps lists the steps whose filter had no energy (every
// band amplitude 0), where white noise was used instead; the pipeline may
// log them as a warning.
func (s *Sampler) WhiteFallbackSteps() []int {
	var out []int
	for i, f := range s.fellBack {
		if f {
			out = append(out, i)
		}
	}
	return out
}

func (s *Sampler) checkStep(i int, x, v []float32) error {
	if i < 0 || i+1 >= len(s.sigmas) {
		return fmt.Errorf("cns: step %d out of range [0, %d)", i, len(s.sigmas)-1)
	}
	if n := len(s.seeds) * s.h * s.w * sampler.PackedChannels; len(x) != n || len(v) != n {
		return fmt.Errorf("cns: step %d: latent %d and velocity %d values, want %d (B=%d, S=%d, 128)",
			i, len(x), len(v), n, len(s.seeds), s.h*s.w)
	}
	return nil
}

// Step implements sampler.Stepper: it advances x in place from σ_i to
// σ_{i+1} given the CFG-combined velocity v.
func (s *Sampler) Step(i int, x, v []float32) error {
	if err := s.checkStep(i, x, v); err != nil {
		return err
	}
	if !s.Injects(i) {
		return s.euler.Step(i, x, v)
	}
	if s.zeroNoise {
		clear(s.xi)
	} else if _, err := s.Noise(i, s.xi); err != nil {
		return err
	}
	return s.applyStep(i, x, v, s.xi)
}

// StepWithNoise is Step with the colored noise ξ of step i already computed
// by Noise (same packed layout). On steps that do not inject it is the
// Euler step and xi is ignored.
func (s *Sampler) StepWithNoise(i int, x, v, xi []float32) error {
	if err := s.checkStep(i, x, v); err != nil {
		return err
	}
	if !s.Injects(i) {
		return s.euler.Step(i, x, v)
	}
	if len(xi) != len(x) {
		return fmt.Errorf("cns: step %d: noise has %d values, want %d", i, len(xi), len(x))
	}
	return s.applyStep(i, x, v, xi)
}

// applyStep is the SDE-exact update of docs/cns.md §7 in float32:
//
//	x̂0 = x − σ·v,  ε̂ = x + (1−σ)·v
//	x' = (1−σ')·x̂0 + σ'·(keep·ε̂ + fresh·ξ)
//
// Products are rounded before each sum (no FMA), so results are identical
// on every platform.
func (s *Sampler) applyStep(i int, x, v, xi []float32) error {
	sig, next := s.sigmas[i], s.sigmas[i+1]
	oneMinusSig, oneMinusNext := 1-sig, 1-next
	keep, fresh := s.keep[i], s.fresh[i]
	for k, xv := range x {
		vv := v[k]
		x0 := xv - float32(sig*vv)
		eps := xv + float32(oneMinusSig*vv)
		mix := float32(keep*eps) + float32(fresh*xi[k])
		out := float32(oneMinusNext*x0) + float32(next*mix)
		if s.bf16 {
			out = sampler.RoundBF16(out)
		}
		x[k] = out
	}
	return nil
}

// noiseMode is how step i's noise is made from the white field.
type noiseMode int

const (
	modeColored noiseMode = iota // FFT filter
	modeFlat                     // filter constant over the grid: ξ = e·w
	modeWhite                    // no energy: white fallback ξ = e·w
)

// prepare computes γ, α, the band amplitudes, Z and the gain map of step i.
func (s *Sampler) prepare(i int) noiseMode {
	n := len(s.sigmas) - 1
	if s.prm.GammaSource == GammaSourceApproximation {
		approximationGamma(s.sigmas, i, s.gamma)
	} else {
		s.table.Gamma(i, n, s.gamma)
	}
	alpha := TiltAlpha(progress(i, n), s.prm)
	Amplitudes(s.amp, s.gamma, alpha, s.prm)
	z := NormalizationZ(s.bands, s.amp)
	switch {
	case !(z >= whiteBelowZ): // also NaN
		return modeWhite
	case isFlat(s.bands, s.amp):
		return modeFlat
	}
	scale := s.prm.EnergyScale / (z * float64(s.H*s.W))
	for k, b := range s.bands.Band {
		y, x := k/s.W, k%s.W
		s.gainT[x*s.H+y] = s.amp[b] * scale
	}
	return modeColored
}

// Noise writes the colored noise ξ of step i for every sample into dst
// (packed layout, B·S·128 values) and reports whether it fell back to white
// noise. Sample b's white field is the Philox stream keyed by Seeds[b] with
// stream tag "CNS" and sub-stream i, drawn in C order over (32, 2h, 2w).
func (s *Sampler) Noise(i int, dst []float32) (white bool, err error) {
	if !s.active {
		return false, ErrInactive
	}
	if i < 0 || i+1 >= len(s.sigmas) {
		return false, fmt.Errorf("cns: noise step %d out of range [0, %d)", i, len(s.sigmas)-1)
	}
	if len(dst) != len(s.xi) {
		return false, fmt.Errorf("cns: noise buffer has %d values, want %d", len(dst), len(s.xi))
	}
	mode := s.prepare(i)
	s.fellBack[i] = mode == modeWhite
	jobs := len(s.seeds) * sampler.VAEChannels / 2
	s.draws += len(s.seeds)
	if len(s.workers) == 1 {
		for j := 0; j < jobs; j++ {
			s.noiseJob(s.workers[0], mode, i, j, dst)
		}
		return mode == modeWhite, nil
	}
	var wg sync.WaitGroup
	for k, wk := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := k; j < jobs; j += len(s.workers) {
				s.noiseJob(wk, mode, i, j, dst)
			}
		}()
	}
	wg.Wait()
	return mode == modeWhite, nil
}

// noiseJob makes channels 2p and 2p+1 of sample b (job j = b·16 + p) and
// scatters them into the packed layout.
func (s *Sampler) noiseJob(wk *noiseWorker, mode noiseMode, step, j int, dst []float32) {
	const pairs = sampler.VAEChannels / 2
	b, c := j/pairs, 2*(j%pairs)
	hw := s.H * s.W
	stream := sampler.NormalStream{Key: sampler.SeedKey(s.seeds[b]), Stream: sampler.StreamCNS, Sub: uint32(step)}
	stream.FillAt(wk.white, uint64(c*hw))
	out := dst[b*s.h*s.w*sampler.PackedChannels : (b+1)*s.h*s.w*sampler.PackedChannels]
	e := float32(s.prm.EnergyScale)
	if mode != modeColored {
		for q := 0; q < 2; q++ {
			s.scatter(out, c+q, wk.white[q*hw:(q+1)*hw], e)
		}
		return
	}
	// Two real planes as one complex plane: the gain is real and symmetric
	// under k → −k, so the real and imaginary parts are filtered separately.
	for k := range wk.buf {
		wk.buf[k] = complex(float64(wk.white[k]), float64(wk.white[hw+k]))
	}
	wk.fft.filter(wk.buf, s.gainT)
	for k, z := range wk.buf {
		wk.white[k] = float32(real(z))
		wk.white[hw+k] = float32(imag(z))
	}
	for q := 0; q < 2; q++ {
		s.scatter(out, c+q, wk.white[q*hw:(q+1)*hw], 1)
	}
}

// scatter writes VAE-grid plane c (2h×2w), times scale, into one sample's
// packed tokens.
func (s *Sampler) scatter(out []float32, c int, plane []float32, scale float32) {
	for y := 0; y < s.H; y++ {
		row := plane[y*s.W : (y+1)*s.W]
		for x, v := range row {
			out[sampler.PackedIndex(c, y, x, s.w)] = v * scale
		}
	}
}
