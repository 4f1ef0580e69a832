package pipeline

import (
	"fmt"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// schedule returns the N+1 sigmas of the reference schedule.
func schedule(seqLen, steps int) []float32 {
	s, err := sampler.Sigmas(seqLen, steps)
	if err != nil { // Request.Check has ruled out steps < 1 and empty grids
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
// request enables it. With CNS the colored noise of step i does not depend
// on the latents, so it is synthesised on its own goroutine while the
// transformer runs (startNoise), taking the FFT work off the critical path
// on a GPU host; step joins it.
type stepper struct {
	s       sampler.Stepper
	cns     *cns.Sampler // nil without CNS
	xi      []float32    // noise of the step in flight
	pending chan error   // non-nil while a noise goroutine runs
}

func newStepper(e *Engine, req engine.Request, h, w int, sigmas []float32) (*stepper, error) {
	if req.CNS.Active() {
		s, err := newCNSStepper(e, req, h, w, sigmas)
		if err != nil {
			return nil, err
		}
		return &stepper{s: s, cns: s, xi: make([]float32, req.NumImages*h*w*sampler.PackedChannels)}, nil
	}
	return &stepper{s: sampler.EulerStepper{Sigmas: sigmas, BF16: e.latentBF16()}}, nil
}

// startNoise begins synthesising step i's noise, when the step injects any.
func (s *stepper) startNoise(i int) {
	if s.cns == nil || !s.cns.Injects(i) {
		return
	}
	s.pending = make(chan error, 1)
	go func() {
		_, err := s.cns.Noise(i, s.xi)
		s.pending <- err
	}()
}

// wait joins a noise goroutine still in flight (after an error or cancel).
func (s *stepper) wait() error {
	if s.pending == nil {
		return nil
	}
	err := <-s.pending
	s.pending = nil
	return err
}

func (s *stepper) step(i int, x, v []float32) error {
	if s.pending != nil {
		if err := s.wait(); err != nil {
			return err
		}
		return s.cns.StepWithNoise(i, x, v, s.xi)
	}
	return s.s.Step(i, x, v)
}

// latentBF16 reports whether latents live in bfloat16 between steps, as the
// reference bf16 pipeline keeps them: only for a bf16 transformer graph.
func (e *Engine) latentBF16() bool { return e.dit.floatT == "bfloat16" }
