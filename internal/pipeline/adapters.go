package pipeline

import (
	"fmt"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// schedule returns the N+1 sigmas of the reference schedule.
func schedule(seqLen, steps int) []float32 {
	s, err := sampler.Sigmas(seqLen, steps)
	if err != nil { // checkRequest has ruled out steps < 1 and empty grids
		panic(fmt.Sprintf("pipeline: schedule: %v", err))
	}
	return s
}

// transformerTimestep is the value fed to the graph's timestep input.
func transformerTimestep(sigma float32, bf16 bool) float32 {
	return sampler.TransformerTimestep(sigma, bf16)
}

// combineCFG writes neg + g*(pos-neg) into dst (dst may alias pos), in
// the arithmetic of the reference pipeline's dtype.
func combineCFG(dst, neg, pos []float32, g float64, bf16 bool) {
	cfg := sampler.CFG
	if bf16 {
		cfg = sampler.CFGBF16
	}
	if err := cfg(dst, pos, neg, g); err != nil {
		panic(fmt.Sprintf("pipeline: %v", err)) // buffers are sized together in denoise
	}
}

// stepper advances the latents by one step: plain Euler, or CNS when the
// request enables it.
type stepper struct {
	s sampler.Stepper
}

func newStepper(e *Engine, req engine.Request, h, w int, sigmas []float32) (*stepper, error) {
	if req.CNS.Active() {
		s, err := newCNSStepper(e, req, h, w, sigmas)
		if err != nil {
			return nil, err
		}
		return &stepper{s: s}, nil
	}
	return &stepper{s: sampler.EulerStepper{Sigmas: sigmas, BF16: e.latentBF16()}}, nil
}

func (s *stepper) step(i int, x, v []float32) error { return s.s.Step(i, x, v) }

// latentBF16 reports whether latents live in bfloat16 between steps, as the
// reference bf16 pipeline keeps them: only for a bf16 transformer graph.
func (e *Engine) latentBF16() bool { return e.dit.floatT == "bfloat16" }
