package cns

import (
	"math"
	"testing"
)

func closeTo(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// Property 13 (docs/cns.md §10): tilt schedule.
func TestTiltSchedule(t *testing.T) {
	p := DefaultParams()
	expWant := []float64{.15, .029991, -.114767, -.289378, -.5}
	linWant := []float64{.15, -.0125, -.175, -.3375, -.5}
	for k, prog := range []float64{0, .25, .5, .75, 1} {
		p.AlphaExpInterp = true
		if a := TiltAlpha(prog, p); !closeTo(a, expWant[k], 1e-6) {
			t.Errorf("exp α(%v) = %.6f, spec %.6f", prog, a, expWant[k])
		}
		p.AlphaExpInterp = false
		if a := TiltAlpha(prog, p); !closeTo(a, linWant[k], 1e-12) {
			t.Errorf("linear α(%v) = %.6f, spec %.6f", prog, a, linWant[k])
		}
	}
	p.AlphaExpInterp = true
	if TiltAlpha(0, p) != p.AlphaTiltStart || !closeTo(TiltAlpha(1, p), p.AlphaTiltEnd, 1e-15) {
		t.Error("α endpoints")
	}
	for _, s := range []float64{0.1, 0.75, 3, 10} {
		prev := math.Inf(1)
		for k := 0; k <= 100; k++ {
			prog := float64(k) / 100
			e := TiltInterp(prog, true, s)
			if e > prog+1e-15 {
				t.Errorf("s=%v: E(%v) = %v > p", s, prog, e)
			}
			p.AlphaExpSharpness = s
			a := TiltAlpha(prog, p)
			if a > prev { // a0 > a1: α must fall monotonically
				t.Errorf("s=%v: α not monotone at p=%v", s, prog)
			}
			prev = a
		}
	}
	// Sharpness → 0 is the linear schedule.
	for _, prog := range []float64{0.1, 0.5, 0.9} {
		if e := TiltInterp(prog, true, 1e-7); e != prog {
			t.Errorf("s=1e-7: E(%v) = %v", prog, e)
		}
		if e := TiltInterp(prog, true, 1e-5); !closeTo(e, prog, 1e-5) {
			t.Errorf("s=1e-5: E(%v) = %v", prog, e)
		}
	}
}

// Property 15 (docs/cns.md §10): the reference amplitude vectors and Z.
func TestAmplitudeReferenceVectors(t *testing.T) {
	p := DefaultParams()
	alpha := TiltAlpha(0.5, p)
	gamma := make([]float64, 8)
	BuiltinGamma().Gamma(1, 3, gamma) // p = 1/2
	wantGamma := []float64{.969465, .766292, .624372, .575633, .560711, .556223, .554878, .554475}
	for b := range gamma {
		if !closeTo(gamma[b], wantGamma[b], 1e-6) {
			t.Errorf("γ_fit[%d] = %.6f, spec %.6f", b, gamma[b], wantGamma[b])
		}
	}
	amp := make([]float64, 8)
	Amplitudes(amp, gamma, alpha, p)
	wantA := []float64{.539890, .636919, .697416, .711545, .709653, .702997, .695002, .686685}
	for b := range amp {
		if !closeTo(amp[b], wantA[b], 1e-5) {
			t.Errorf("A[%d] = %.6f, spec %.6f", b, amp[b], wantA[b])
		}
	}
	bm, err := RadialBands(4, 6, 8)
	if err != nil {
		t.Fatal(err)
	}
	z := NormalizationZ(bm, amp)
	if !closeTo(z*z, 0.478840, 1e-6) || !closeTo(z, 0.691982, 1e-6) {
		t.Errorf("4x6 F=8: mean A² = %.6f (spec 0.478840), Z = %.6f (spec 0.691982)", z*z, z)
	}
	for b := range gamma {
		gamma[b] = 0.3
	}
	Amplitudes(amp, gamma, alpha, p)
	wantA = []float64{.866897, .856302, .845837, .835500, .825290, .815204, .805241, .795400}
	for b := range amp {
		if !closeTo(amp[b], wantA[b], 1e-5) {
			t.Errorf("approximation A[%d] = %.6f, spec %.6f", b, amp[b], wantA[b])
		}
	}
}

// Property 12 (docs/cns.md §10): the divider pushes the matrix filter toward
// the tilt-only filter, and band contrast falls monotonically with d.
func TestDividerLimit(t *testing.T) {
	p := DefaultParams()
	const F = 32
	gamma := make([]float64, F)
	BuiltinGamma().Gamma(10, 50, gamma)
	alpha := TiltAlpha(0.3, p)
	tiltOnly := make([]float64, F)
	for b := range tiltOnly {
		tiltOnly[b] = math.Pow(math.Exp(alpha*bandPosition(b, F)), p.PowerGamma)
	}
	amp := make([]float64, F)
	p.GammaDivider = 1e6
	Amplitudes(amp, gamma, alpha, p)
	for b := range amp {
		if !closeTo(amp[b]/amp[0], tiltOnly[b]/tiltOnly[0], 1e-6) {
			t.Errorf("d=1e6 band %d ratio %.8f, tilt-only %.8f", b, amp[b]/amp[0], tiltOnly[b]/tiltOnly[0])
		}
	}
	prev := math.Inf(1)
	for _, d := range []float64{1, 1.2, 1.73, 3, 10, 25, 50, 1e3, 1e6} {
		p.GammaDivider = d
		Amplitudes(amp, gamma, 0, p)
		lo, hi := math.Inf(1), 0.0
		for _, a := range amp {
			lo, hi = math.Min(lo, a), math.Max(hi, a)
		}
		contrast := hi / lo
		if !(contrast < prev) || contrast < 1 {
			t.Errorf("d=%v: contrast %v not below %v", d, contrast, prev)
		}
		prev = contrast
	}
}

// Property 9 (docs/cns.md §10), analytic part: the tilt direction. The
// high/low band power ratio rises monotonically with α.
func TestTiltDirectionMonotone(t *testing.T) {
	p := DefaultParams()
	const F = 16
	gamma := make([]float64, F)
	BuiltinGamma().Gamma(20, 50, gamma)
	amp := make([]float64, F)
	prev := 0.0
	for a := -2.0; a <= 2.0001; a += 0.25 {
		Amplitudes(amp, gamma, a, p)
		ratio := amp[F-1] * amp[F-1] / (amp[0] * amp[0])
		if !(ratio > prev) {
			t.Errorf("α=%v: high/low ratio %v not above %v", a, ratio, prev)
		}
		prev = ratio
	}
	// Under approximation γ the sign of α alone decides the direction.
	for b := range gamma {
		gamma[b] = 0.4
	}
	Amplitudes(amp, gamma, 0.5, p)
	if !(amp[F-1] > amp[0]) {
		t.Error("positive tilt should favour high frequencies")
	}
	Amplitudes(amp, gamma, -0.5, p)
	if !(amp[F-1] < amp[0]) {
		t.Error("negative tilt should favour low frequencies")
	}
	Amplitudes(amp, gamma, 0, p)
	for b := range amp {
		if amp[b] != amp[0] {
			t.Fatal("α=0 under approximation must be flat")
		}
	}
}
