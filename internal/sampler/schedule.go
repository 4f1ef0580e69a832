package sampler

import (
	"fmt"
	"math"
)

// Coefficients of diffusers' compute_empirical_mu (pipeline_flux2_klein.py),
// identical in BFL's get_schedule.
const (
	muA1 = 8.73809524e-05
	muB1 = 1.89833333
	muA2 = 0.00016927
	muB2 = 0.45666666
	// muLargeSeqLen: above this many image tokens mu no longer depends on
	// the step count (the reference has this branch; it causes a jump).
	muLargeSeqLen = 4300
)

// EmpiricalMu returns the resolution- and step-dependent shift of FLUX.2's
// schedule, computed in float64 exactly as diffusers' compute_empirical_mu.
// imageSeqLen counts the noisy image tokens only (h*w), never reference
// tokens.
func EmpiricalMu(imageSeqLen, steps int) float64 {
	s := float64(imageSeqLen)
	// Explicit float64 conversions stop the compiler from fusing a*s+b into
	// an FMA, which would change the last bit compared with CPython.
	m200 := float64(muA2*s) + muB2
	if imageSeqLen > muLargeSeqLen {
		return m200
	}
	m10 := float64(muA1*s) + muB1
	a := (m200 - m10) / 190.0
	b := m200 - float64(200.0*a)
	return float64(a*float64(steps)) + b
}

// Sigmas returns the N+1 noise levels of an N-step schedule (last value 0)
// for an image of imageSeqLen tokens, bit-identical to diffusers:
//
//	t = np.linspace(1, 1/N, N)                 (float64)
//	t = t.astype(np.float32)                   (set_timesteps casts first)
//	sigma = exp(mu) / (exp(mu) + (1/t - 1))    (numpy float32 arithmetic)
//	append 0
//
// steps must be at least 1.
func Sigmas(imageSeqLen, steps int) ([]float32, error) {
	if steps < 1 {
		return nil, fmt.Errorf("sampler: steps must be >= 1, got %d", steps)
	}
	if imageSeqLen < 1 {
		return nil, fmt.Errorf("sampler: image sequence length must be >= 1, got %d", imageSeqLen)
	}
	mu := EmpiricalMu(imageSeqLen, steps)
	out := make([]float32, steps+1)
	ShiftedSigmas(out[:steps], linspaceFloat32(steps), mu)
	out[steps] = 0
	return out, nil
}

// linspaceFloat32 replicates np.linspace(1.0, 1/n, n).astype(np.float32):
// numpy computes arange(n)*step + start in float64 and pins the last element
// to stop.
func linspaceFloat32(n int) []float32 {
	t := make([]float32, n)
	start := 1.0
	stop := 1.0 / float64(n)
	if n == 1 {
		t[0] = float32(start)
		return t
	}
	step := (stop - start) / float64(n-1)
	for i := range t {
		t[i] = float32(float64(float64(i)*step) + start)
	}
	t[n-1] = float32(stop)
	return t
}

// ShiftedSigmas applies the exponential time shift of
// FlowMatchEulerDiscreteScheduler (_time_shift_exponential with sigma=1) to
// the float32 grid t, in numpy float32 arithmetic: Python's math.exp(mu) is a
// weak scalar and is rounded to float32 before the array operations.
func ShiftedSigmas(dst, t []float32, mu float64) {
	e := float32(math.Exp(mu))
	for i, ti := range t {
		dst[i] = e / (e + (1/ti - 1))
	}
}

// TransformerTimestep returns the value fed to the transformer graph's
// timestep input for noise level sigma, replicating diffusers on the CPU
// (torch CPU divides by a scalar with a true division):
//
//	fp32 pipeline: timestep = float32(sigma*1000); input = timestep/1000
//	bf16 pipeline: timestep = bf16(float32(sigma*1000));
//	               input = bf16(timestep/1000)   (divided in float32)
//
// The graph multiplies by 1000 itself, as Flux2Transformer2DModel does.
func TransformerTimestep(sigma float32, bf16 bool) float32 {
	t := sigma * 1000
	if bf16 {
		return RoundBF16(RoundBF16(t) / 1000)
	}
	return t / 1000
}

// TransformerTimestepCUDA is TransformerTimestep as torch computes it on a
// CUDA device, where dividing by a Python scalar is a multiplication by the
// float32 reciprocal (0.001f). In fp32 this differs from the CPU value by
// one ulp for about two thirds of the schedule values; in bf16 the two are
// identical for every representable timestep.
func TransformerTimestepCUDA(sigma float32, bf16 bool) float32 {
	const inv1000 = float32(1.0 / 1000.0)
	t := sigma * 1000
	if bf16 {
		return RoundBF16(RoundBF16(t) * inv1000)
	}
	return t * inv1000
}
