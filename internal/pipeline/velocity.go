package pipeline

import (
	"context"
	"fmt"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// VelocityFunc is the model's CFG-combined velocity on one packed latent
// (1, h*w, PackedChannels) at noise level sigma, written into dst.
type VelocityFunc func(ctx context.Context, x []float32, sigma float32, dst []float32) error

// Velocity exposes the denoiser of one prompt on an h x w packed grid for
// offline tools (cmd/cnsgamma measures a model's CNS gamma matrix with it):
// the prompt and negative prompt are encoded once, and each call runs one
// (CFG-batched) transformer forward. It holds the engine until release is
// called; it takes one of the engine's generation slots meanwhile.
func (e *Engine) Velocity(ctx context.Context, prompt, negative string, guidance float64, h, w int) (_ VelocityFunc, release func(), err error) {
	req := engine.Request{Prompt: prompt, NegativePrompt: negative, GuidanceScale: guidance,
		Width: engine.SizeMultiple * w, Height: engine.SizeMultiple * h, Steps: 1, NumImages: 1,
		OutputFormat: engine.FormatPNG}
	if err := req.Check(); err != nil {
		return nil, nil, err
	}
	giveBack, err := e.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	r := &run{e: e, req: req, h: h, w: w, seqLen: h * w, batch: 1, cfg: e.usesCFG(&req)}
	pos, neg, err := r.encodePrompts(ctx)
	if err != nil {
		giveBack()
		return nil, nil, err
	}
	dit, err := r.newDiTCall(pos, neg)
	if err != nil {
		giveBack()
		return nil, nil, err
	}
	fn := func(ctx context.Context, x []float32, sigma float32, dst []float32) error {
		if n := h * w * sampler.PackedChannels; len(x) != n || len(dst) != n {
			return fmt.Errorf("velocity: want %d values, got x %d dst %d", n, len(x), len(dst))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return dit.predict(x, dst, sigma)
	}
	return fn, func() { dit.destroy(); giveBack() }, nil
}
