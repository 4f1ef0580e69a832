package sampler

import "fmt"

// UsesCFG reports whether classifier-free guidance runs (two model forwards
// per step) for a guidance scale: diffusers' do_classifier_free_guidance is
// guidance_scale > 1 (for the non-distilled base model).
func UsesCFG(guidanceScale float64) bool { return guidanceScale > 1 }

// CFG writes neg + g*(pos-neg) into dst in float32, as torch evaluates
// `neg_noise_pred + guidance_scale * (noise_pred - neg_noise_pred)` on
// float32 tensors: the Python float scale is rounded to float32 first and
// every operation rounds to float32. dst may alias pos or neg.
func CFG(dst, pos, neg []float32, guidanceScale float64) error {
	if err := sameLen3(len(dst), len(pos), len(neg)); err != nil {
		return fmt.Errorf("sampler: CFG: %w", err)
	}
	g := float32(guidanceScale)
	for i := range dst {
		n := neg[i]
		dst[i] = n + float32(g*(pos[i]-n))
	}
	return nil
}

// CFGBF16 is CFG for bfloat16 predictions (the reference bf16 pipeline):
// each of the three operations is computed in float32 and rounded to
// bfloat16. Inputs must already hold bfloat16 values.
func CFGBF16(dst, pos, neg []float32, guidanceScale float64) error {
	if err := sameLen3(len(dst), len(pos), len(neg)); err != nil {
		return fmt.Errorf("sampler: CFGBF16: %w", err)
	}
	g := float32(guidanceScale)
	for i := range dst {
		n := neg[i]
		d := RoundBF16(pos[i] - n)
		dst[i] = RoundBF16(n + RoundBF16(g*d))
	}
	return nil
}

// Euler advances x in place by one flow-matching Euler step from sigma to
// sigmaNext: x += dt*v with dt = sigmaNext - sigma computed in float32, the
// float32 semantics of FlowMatchEulerDiscreteScheduler.step
// (`sample.to(float32) + dt * model_output`, product rounded before the sum).
func Euler(x, v []float32, sigma, sigmaNext float32) error {
	if len(x) != len(v) {
		return fmt.Errorf("sampler: Euler: latent has %d values, velocity %d", len(x), len(v))
	}
	dt := sigmaNext - sigma
	for i, vi := range v {
		x[i] += float32(dt * vi)
	}
	return nil
}

// EulerBF16 is Euler for a bfloat16 pipeline: torch multiplies the float32
// 0-dim dt by the bf16 model output in bf16 (dt itself is cast to bf16
// first), adds the product to the float32-upcast sample and casts the result
// back to bf16. x and v must hold bfloat16 values; x stays bf16-valued.
func EulerBF16(x, v []float32, sigma, sigmaNext float32) error {
	if len(x) != len(v) {
		return fmt.Errorf("sampler: EulerBF16: latent has %d values, velocity %d", len(x), len(v))
	}
	dt := RoundBF16(sigmaNext - sigma)
	for i, vi := range v {
		x[i] = RoundBF16(x[i] + RoundBF16(dt*vi))
	}
	return nil
}

// Stepper advances the packed latent x (B, S, 128) from sigmas[i] to
// sigmas[i+1] given the (CFG-combined) velocity v of the same layout. The
// pipeline owns the loop and calls Step once per step; implementations keep
// their schedule and must not allocate per call.
type Stepper interface {
	Step(i int, x, v []float32) error
}

// EulerStepper is the baseline deterministic sampler.
type EulerStepper struct {
	Sigmas []float32 // N+1 noise levels, last 0
	BF16   bool      // emulate the bf16 reference (latents hold bf16 values)
}

// Step implements Stepper.
func (e EulerStepper) Step(i int, x, v []float32) error {
	if i < 0 || i+1 >= len(e.Sigmas) {
		return fmt.Errorf("sampler: step %d out of range for %d sigmas", i, len(e.Sigmas))
	}
	if e.BF16 {
		return EulerBF16(x, v, e.Sigmas[i], e.Sigmas[i+1])
	}
	return Euler(x, v, e.Sigmas[i], e.Sigmas[i+1])
}

func sameLen3(a, b, c int) error {
	if a != b || a != c {
		return fmt.Errorf("buffer lengths differ: dst %d, pos %d, neg %d", a, b, c)
	}
	return nil
}
