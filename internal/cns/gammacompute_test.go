package cns

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
)

// expectedGaussianGamma is the exact discrete answer for the Gaussian toy
// model: every coefficient of band b evolves as a scalar multiple a_i of
// its initial noise under the Euler loop, x̂0_i = G_i·a_i and X_N = a_N, so
// the raw progress is 1 − (G_i·a_i − a_N)²/a_N² for every member and every
// sample. Then min–max per band.
func expectedGaussianGamma(sig []float32, power []float64) [][]float64 {
	n := len(sig) - 1
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, len(power))
	}
	for b, p := range power {
		a := make([]float64, n+1)
		g := make([]float64, n)
		a[0] = 1
		for i := 0; i < n; i++ {
			s := float64(sig[i])
			g[i] = WienerGain(s, p)
			a[i+1] = a[i] * (1 + (float64(sig[i+1])-s)*(1-g[i])/s)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := 0; i < n; i++ {
			d := g[i]*a[i] - a[n]
			v := math.Min(1, math.Max(0, 1-d*d/(a[n]*a[n])))
			out[i][b] = v
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		for i := 0; i < n; i++ {
			out[i][b] = (out[i][b] - lo) / (hi - lo)
		}
	}
	return out
}

func TestComputeGammaMatrixGaussianModel(t *testing.T) {
	const h, w, F, N = 6, 8, 8, 20
	power := make([]float64, F)
	for b := range power {
		power[b] = math.Pow(10, 2-4*float64(b)/(F-1)) // 100 at DC down to 0.01
	}
	model, err := NewGaussianModel(h, w, power)
	if err != nil {
		t.Fatal(err)
	}
	samples := []GammaSample{
		{Height: h, Width: w, Seed: 1, Velocity: model.Velocity},
		{Height: h, Width: w, Seed: 2, Velocity: model.Velocity},
	}
	done := 0
	m, err := ComputeGammaMatrix(context.Background(), samples, GammaOptions{Steps: N, Bands: F,
		Metadata: GammaMetadata{Model: "toy-gaussian", GuidanceScale: 1, Tool: "test"},
		Progress: func(d, total int) { done = d }})
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != N || m.Bands != F || done != 2 {
		t.Fatalf("shape %dx%d, progress %d", m.Rows, m.Bands, done)
	}
	sig := mustSigmas(t, h*w, N)
	want := expectedGaussianGamma(sig, power)
	for i := 0; i < N; i++ {
		for b := 0; b < F; b++ {
			if got := m.Values[i*F+b]; math.Abs(got-want[i][b]) > 1e-4 {
				t.Errorf("row %d band %d: γ %.6f, exact %.6f", i, b, got, want[i][b])
			}
		}
	}
	// The staircase: high-power (low) bands reach γ = 0.5 no later than
	// low-power (high) bands.
	prev := -1
	for b := 0; b < F; b++ {
		i := 0
		for i < N && m.Values[i*F+b] < 0.5 {
			i++
		}
		if i < prev {
			t.Errorf("band %d reaches γ=0.5 at step %d, before band %d (step %d)", b, i, b-1, prev)
		}
		prev = i
	}
	if m.Metadata.Steps != N || m.Metadata.Samples != 2 || m.Metadata.Width != 128 || m.Metadata.Height != 96 ||
		len(m.Metadata.Resolutions) != 1 || m.Metadata.Resolutions[0] != "128x96" || m.Metadata.Model != "toy-gaussian" {
		t.Errorf("metadata %+v", m.Metadata)
	}
	// The matrix feeds the sampler: written, loaded and looked up verbatim.
	path := filepath.Join(t.TempDir(), GammaFileName)
	if err := WriteGammaFile(path, m); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadGammaFile(path)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float64, F)
	loaded.Gamma(7, N, row)
	for b := range row {
		if row[b] != m.Values[7*F+b] {
			t.Fatalf("loaded row 7 band %d: %v vs %v", b, row[b], m.Values[7*F+b])
		}
	}
}

// What γ the model-based measurement converges to for the Gaussian toy
// model: along the probability-flow ODE the progress against the final
// sample is 1 − (1 − √W)², W = P(1−σ)²/(P(1−σ)² + σ²) the Wiener gain —
// not W itself (W is the expected progress against the *true* x0, the
// dataset-based γ of docs/cns.md §9). With a dense schedule the exact discrete
// answer (checked against ComputeGammaMatrix above) is within 0.03 of it
// and far from W.
func TestGaussianGammaLimit(t *testing.T) {
	power := []float64{100, 1, 0.01}
	sig := mustSigmas(t, 48, 200)
	g := expectedGaussianGamma(sig, power)
	var toODE, toWiener float64
	for i := range g {
		s := float64(sig[i])
		for b, p := range power {
			wg := p * (1 - s) * (1 - s) / (p*(1-s)*(1-s) + s*s)
			ode := 1 - (1-math.Sqrt(wg))*(1-math.Sqrt(wg))
			toODE = math.Max(toODE, math.Abs(g[i][b]-ode))
			toWiener = math.Max(toWiener, math.Abs(g[i][b]-wg))
		}
	}
	if toODE > 0.03 || toWiener < 0.3 {
		t.Errorf("max distance to 1-(1-√W)²: %.3f (want ≤ 0.03), to W: %.3f (want ≥ 0.3)", toODE, toWiener)
	}
}

func TestPairPowerSeparatesPlanes(t *testing.T) {
	for _, g := range [][2]int{{4, 6}, {5, 3}, {1, 7}} {
		H, W := g[0], g[1]
		a, b := make([]float32, H*W), make([]float32, H*W)
		for k := range a {
			a[k] = float32(math.Sin(float64(k)*1.1) + 0.3)
			b[k] = float32(math.Cos(float64(k*k)*0.13) - 0.7)
		}
		pa, pb := make([]float64, H*W), make([]float64, H*W)
		pairPower(newPlaneFFT(H, W), make([]complex128, H*W), a, b, pa, pb)
		for _, c := range []struct {
			plane []float32
			got   []float64
		}{{a, pa}, {b, pb}} {
			in := make([]complex128, H*W)
			for k, v := range c.plane {
				in[k] = complex(float64(v), 0)
			}
			want := naiveDFT2(in, H, W, false)
			for k := range want {
				p := real(want[k])*real(want[k]) + imag(want[k])*imag(want[k])
				if math.Abs(c.got[k]-p) > 1e-9*(1+p) {
					t.Fatalf("%dx%d [%d]: power %v, DFT %v", H, W, k, c.got[k], p)
				}
			}
		}
	}
}

func TestComputeGammaMatrixErrors(t *testing.T) {
	model, err := NewGaussianModel(2, 2, []float64{4, 1, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01})
	if err != nil {
		t.Fatal(err)
	}
	ok := GammaSample{Height: 2, Width: 2, Seed: 1, Velocity: model.Velocity}
	ctx := context.Background()
	if _, err := NewGaussianModel(2, 2, []float64{1, 0}); err == nil {
		t.Error("zero power: want error")
	}
	acc, err := NewGammaAccumulator(4, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acc.Matrix(GammaMetadata{}); err == nil {
		t.Error("Matrix before any sample: want error")
	}
	if _, err := ComputeGammaMatrix(ctx, nil, GammaOptions{Steps: 10}); err == nil {
		t.Error("no samples: want error")
	}
	if _, err := ComputeGammaMatrix(ctx, []GammaSample{ok}, GammaOptions{Steps: 1}); err == nil {
		t.Error("1 step: want error")
	}
	if _, err := ComputeGammaMatrix(ctx, []GammaSample{{Height: 2, Width: 2}}, GammaOptions{Steps: 4}); err == nil {
		t.Error("missing velocity: want error")
	}
	// 4×4 grid with 32 bands leaves bands empty.
	if _, err := ComputeGammaMatrix(ctx, []GammaSample{ok}, GammaOptions{Steps: 4, Bands: 32}); err == nil {
		t.Error("empty bands: want error")
	}
	boom := errors.New("model failed")
	bad := GammaSample{Height: 2, Width: 2, Velocity: func(context.Context, []float32, float32, []float32) error { return boom }}
	if _, err := ComputeGammaMatrix(ctx, []GammaSample{bad}, GammaOptions{Steps: 4, Bands: 2}); !errors.Is(err, boom) {
		t.Errorf("velocity error not wrapped: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ComputeGammaMatrix(cctx, []GammaSample{ok}, GammaOptions{Steps: 4, Bands: 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
}
