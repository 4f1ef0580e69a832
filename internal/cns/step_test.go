package cns

import (
	"math"
	"slices"
	"testing"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// runLoop runs the whole schedule with velocity model vel from the initial
// noise of the seeds, calling observe(i, x) before step i and after the
// last one (i = N).
func runLoop(t testing.TB, s *Sampler, seeds []int64, h, w int, vel func(x, v []float32, sigma float32), observe func(i int, x []float32)) []float32 {
	t.Helper()
	S := h * w * sampler.PackedChannels
	x := make([]float32, len(seeds)*S)
	chw := make([]float32, S)
	for b, seed := range seeds {
		sampler.InitialNoise(seed, chw)
		if err := sampler.Pack(x[b*S:(b+1)*S], chw, 1, sampler.PackedChannels, h, w); err != nil {
			t.Fatal(err)
		}
	}
	v := make([]float32, len(x))
	n := s.Steps()
	for i := 0; i < n; i++ {
		if observe != nil {
			observe(i, x)
		}
		vel(x, v, s.sigmas[i])
		if err := s.Step(i, x, v); err != nil {
			t.Fatal(err)
		}
	}
	if observe != nil {
		observe(n, x)
	}
	return x
}

func sinPattern(n int) []float32 {
	x := make([]float32, n)
	for k := range x {
		x[k] = float32(math.Sin(float64(k) * 0.37))
	}
	return x
}

// Property 1 (docs/cns.md §10): CNS off (enable false or s_churn 0) is
// bit-identical to the baseline Euler loop, draws nothing, and leaves the
// initial latent alone.
func TestInactiveIsBaselineEuler(t *testing.T) {
	const h, w = 3, 5
	seeds := []int64{42, 43}
	sig := mustSigmas(t, h*w, 12)
	x0 := sinPattern(len(seeds) * h * w * 128)
	before := make([]float32, h*w*128)
	sampler.InitialNoise(42, before)
	for _, bf16 := range []bool{false, true} {
		// Baseline: sampler.EulerStepper in the same loop.
		base := mustSampler(t, Config{Params: DefaultParams(), Sigmas: sig, Height: h, Width: w, Seeds: seeds, LatentBF16: bf16})
		base.euler = sampler.EulerStepper{Sigmas: sig, BF16: bf16}
		want := runLoopWith(t, base.euler, sig, seeds, h, w, pointMass(x0), bf16)
		for _, prm := range []Params{
			func() Params { p := activeParams(); p.Enable = false; return p }(),
			func() Params { p := activeParams(); p.SChurn = 0; return p }(),
		} {
			s := mustSampler(t, Config{Params: prm, Sigmas: sig, Height: h, Width: w, Seeds: seeds, LatentBF16: bf16})
			if s.Active() {
				t.Fatal("sampler should be inactive")
			}
			got := runLoopWith(t, s, sig, seeds, h, w, pointMass(x0), bf16)
			if !slices.Equal(got, want) {
				t.Errorf("bf16=%v enable=%v churn=%v: output differs from Euler", bf16, prm.Enable, prm.SChurn)
			}
			if s.draws != 0 {
				t.Errorf("inactive sampler drew %d white fields", s.draws)
			}
		}
	}
	// An active run does not touch the initial-noise stream.
	s := mustSampler(t, Config{Params: activeParams(), Sigmas: sig, Height: h, Width: w, Seeds: seeds})
	runLoop(t, s, seeds, h, w, pointMass(x0), nil)
	after := make([]float32, h*w*128)
	sampler.InitialNoise(42, after)
	if !slices.Equal(before, after) {
		t.Error("initial noise changed")
	}
	if s.draws != 2*(12-1) {
		t.Errorf("active run drew %d fields, want one per sample per injecting step (%d)", s.draws, 2*11)
	}
}

// runLoopWith runs a Stepper from the bf16-or-not initial noise.
func runLoopWith(t testing.TB, st sampler.Stepper, sig []float32, seeds []int64, h, w int, vel func(x, v []float32, sigma float32), bf16 bool) []float32 {
	t.Helper()
	S := h * w * 128
	x := make([]float32, len(seeds)*S)
	chw := make([]float32, S)
	for b, seed := range seeds {
		sampler.InitialNoise(seed, chw)
		_ = sampler.Pack(x[b*S:(b+1)*S], chw, 1, 128, h, w)
	}
	if bf16 {
		sampler.RoundBF16Slice(x)
	}
	v := make([]float32, len(x))
	for i := 0; i+1 < len(sig); i++ {
		vel(x, v, sig[i])
		if bf16 {
			sampler.RoundBF16Slice(v)
		}
		if err := st.Step(i, x, v); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

// Property 2 (docs/cns.md §10): the last step (σ_N = 0) is the deterministic
// Euler step to x − σ·v for every churn.
func TestFinalStepIsDeterministic(t *testing.T) {
	const h, w = 2, 3
	for _, c := range []float64{0.5, 1, 2} {
		p := activeParams()
		p.SChurn = c
		s := mustSampler(t, Config{Params: p, Sigmas: toySigmas, Height: h, Width: w, Seeds: []int64{9}})
		x := sinPattern(h * w * 128)
		v := make([]float32, len(x))
		for k := range v {
			v[k] = float32(math.Cos(float64(k)))
		}
		want := slices.Clone(x)
		_ = sampler.Euler(want, v, toySigmas[3], 0)
		draws := s.draws
		if err := s.Step(3, x, v); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(x, want) || s.draws != draws || s.Injects(3) {
			t.Errorf("c=%v: last step is not the plain Euler step", c)
		}
	}
}

// Property 3 (docs/cns.md §10): keep and fresh on the toy schedule [1, .75,
// .5, .25, 0].
func TestStepCoefficientsToySchedule(t *testing.T) {
	want := map[float64][][2]float64{
		0.5: {{.866025, .5}, {.816497, .57735}, {.707107, .707107}},
		1:   {{.75, .661438}, {.666667, .745356}, {.5, .866025}},
		2:   {{.5625, .826797}, {.444444, .895806}, {.25, .968246}},
	}
	for c, rows := range want {
		p := activeParams()
		p.SChurn = c
		s := mustSampler(t, Config{Params: p, Sigmas: toySigmas, Height: 1, Width: 1, Seeds: []int64{0}})
		for i, r := range rows {
			k, f := StepCoefficients(toySigmas[i], toySigmas[i+1], c)
			if !closeTo(k, r[0], 1e-6) || !closeTo(f, r[1], 1e-6) {
				t.Errorf("c=%v step %d: (%.6f, %.6f), spec (%v, %v)", c, i, k, f, r[0], r[1])
			}
			if k32, f32 := s.Coefficients(i); k32 != float32(k) || f32 != float32(f) {
				t.Errorf("c=%v step %d: sampler uses (%v, %v)", c, i, k32, f32)
			}
			if !closeTo(k*k+f*f, 1, 1e-15) {
				t.Errorf("keep² + fresh² = %v", k*k+f*f)
			}
		}
		if k, f := s.Coefficients(3); k != 1 || f != 0 {
			t.Errorf("last step coefficients (%v, %v)", k, f)
		}
	}
}

// Property 4 (docs/cns.md §10): with the point-mass model the noise part of
// x_i keeps variance σ_i²·q_i, q_0 = 1, q_{i+1} = keep²·q_i + e²·(1 − keep²)
// (q ≡ 1 for e = 1), within 3 % over 131072 elements at every step.
func TestMarginalVarianceHeld(t *testing.T) {
	const h, w = 8, 8
	seeds := make([]int64, 16)
	for b := range seeds {
		seeds[b] = int64(1000 + b)
	}
	sig := mustSigmas(t, 3072, 50)
	x0 := sinPattern(len(seeds) * h * w * 128)
	type setup struct {
		name string
		prm  Params
	}
	var setups []setup
	for _, c := range []float64{0.5, 1, 2} {
		p := approxFlat()
		p.SChurn, p.EnergyScale = c, 1
		setups = append(setups, setup{"flat e=1", p})
	}
	pe := approxFlat()
	pe.SChurn, pe.EnergyScale = 1, 0.7
	setups = append(setups, setup{"flat e=0.7", pe})
	pd := activeParams() // default colored filter, e = 0.98
	pd.SChurn = 1
	setups = append(setups, setup{"default colored", pd})
	for _, su := range setups {
		s := mustSampler(t, Config{Params: su.prm, Sigmas: sig, Height: h, Width: w, Seeds: seeds, Workers: 2})
		q := 1.0
		e2 := su.prm.EnergyScale * su.prm.EnergyScale
		runLoop(t, s, seeds, h, w, pointMass(x0), func(i int, x []float32) {
			if i == len(sig)-1 {
				return // σ_N = 0: x is x0* exactly
			}
			var sum float64
			for k, xv := range x {
				m := float64(xv) - (1-float64(sig[i]))*float64(x0[k])
				sum += m * m
			}
			ratio := sum / float64(len(x)) / (float64(sig[i]) * float64(sig[i]) * q)
			if math.Abs(ratio-1) > 0.03 {
				t.Errorf("%s c=%v step %d: Var/(σ²q) = %.4f", su.name, su.prm.SChurn, i, ratio)
			}
			if i < len(sig)-2 {
				k, _ := StepCoefficients(sig[i], sig[i+1], su.prm.SChurn)
				q = k*k*q + e2*(1-k*k)
			}
		})
	}
}

// Property 5 (docs/cns.md §10): with ξ forced to 0 and the point-mass model,
// x_k − (1−σ_k)·x0* = σ_k·(σ_k/σ_0)^c·ε_0. The tolerance 1e-6 is scaled by
// the element's magnitude (1 + |ε_0|): float32 rounding accumulates over the
// 50 steps of the klein schedule.
func TestTelescoping(t *testing.T) {
	const h, w = 4, 4
	seeds := []int64{5}
	x0 := sinPattern(h * w * 128)
	eps0 := make([]float32, h*w*128)
	chw := make([]float32, len(eps0))
	sampler.InitialNoise(5, chw)
	_ = sampler.Pack(eps0, chw, 1, 128, h, w)
	for _, sig := range [][]float32{toySigmas, mustSigmas(t, 3072, 50)} {
		for _, c := range []float64{0.5, 1, 2} {
			p := activeParams()
			p.SChurn = c
			s := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: seeds})
			s.zeroNoise = true
			var worst float64
			runLoop(t, s, seeds, h, w, pointMass(x0), func(i int, x []float32) {
				factor := float64(sig[i]) * math.Pow(float64(sig[i])/float64(sig[0]), c)
				for k, xv := range x {
					m := float64(xv) - (1-float64(sig[i]))*float64(x0[k])
					e := math.Abs(m-factor*float64(eps0[k])) / (1 + math.Abs(float64(eps0[k])))
					worst = math.Max(worst, e)
				}
			})
			if worst > 1e-6 {
				t.Errorf("N=%d c=%v: telescoping error %.3g", len(sig)-1, c, worst)
			}
			if s.draws != 0 {
				t.Errorf("zero-noise hook drew %d fields", s.draws)
			}
		}
	}
}

// Property 18 (docs/cns.md §10): bf16 latents. The CNS arithmetic runs in
// float32 and only the stepped latent is rounded, so the bf16 result is the
// rounded float32 result and every value is bf16-representable.
func TestBF16Latents(t *testing.T) {
	const h, w = 3, 4
	sig := mustSigmas(t, 3072, 8)
	p := activeParams()
	p.SChurn = 1
	x := sinPattern(h * w * 128)
	sampler.RoundBF16Slice(x)
	v := make([]float32, len(x))
	for k := range v {
		v[k] = sampler.RoundBF16(float32(math.Cos(float64(k) * 0.1)))
	}
	s32 := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: []int64{3}})
	s16 := mustSampler(t, Config{Params: p, Sigmas: sig, Height: h, Width: w, Seeds: []int64{3}, LatentBF16: true})
	for i := 0; i < 8; i++ {
		a, b := slices.Clone(x), slices.Clone(x)
		if err := s32.Step(i, a, v); err != nil {
			t.Fatal(err)
		}
		if err := s16.Step(i, b, v); err != nil {
			t.Fatal(err)
		}
		for k := range a {
			if b[k] != sampler.RoundBF16(a[k]) && s32.Injects(i) {
				t.Fatalf("step %d [%d]: bf16 %v, rounded float32 %v", i, k, b[k], sampler.RoundBF16(a[k]))
			}
			if sampler.RoundBF16(b[k]) != b[k] {
				t.Fatalf("step %d [%d]: %v is not a bf16 value", i, k, b[k])
			}
		}
		if !s32.Injects(i) { // the last step is EulerBF16, the bf16 baseline
			want := slices.Clone(x)
			_ = sampler.EulerBF16(want, v, sig[i], sig[i+1])
			if !slices.Equal(b, want) {
				t.Errorf("bf16 last step is not EulerBF16")
			}
		}
	}
}

// Step and Noise do not allocate (single worker; with several workers the
// goroutines of a Noise call cost a few small allocations).
func TestStepDoesNotAllocate(t *testing.T) {
	const h, w = 6, 8
	s := mustSampler(t, Config{Params: activeParams(), Sigmas: mustSigmas(t, h*w, 10), Height: h, Width: w, Seeds: []int64{1, 2}})
	x, v := sinPattern(2*h*w*128), sinPattern(2*h*w*128)
	i := 0
	if a := testing.AllocsPerRun(20, func() {
		if err := s.Step(i%10, x, v); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Errorf("Step allocates %v times per call", a)
	}
}
