package pipeline

import (
	"context"
	"fmt"
	"math"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// run is one Generate call's state.
type run struct {
	e        *Engine
	req      engine.Request
	progress engine.ProgressFunc
	timings  engine.Timings

	h, w, seqLen int // packed latent grid and its token count
	batch        int // images
	cfg          bool
	refs         *referenceSet  // nil without reference images
	lora         *loraSet       // the request's LoRAs (nil: none)
	mem          MemoryEstimate // what admission charged; DecodeTile plans the decoder
	// ortTime is the time this run spent inside ONNX Runtime Run calls
	// (a shared transformer call counts whole for each run in it).
	ortTime time.Duration
}

func (r *run) generate(ctx context.Context) (*engine.Result, error) {
	start := time.Now()
	req := r.req
	r.h, r.w = req.LatentGrid()
	r.seqLen = r.h * r.w
	r.batch = req.NumImages
	r.cfg = req.UsesCFG()

	t := time.Now()
	pos, neg, err := r.encodePrompts(ctx)
	if err != nil {
		return nil, err
	}
	r.timings.TextEncoding = time.Since(t)

	t = time.Now()
	if r.refs, err = r.e.referenceSet(ctx, req.References, &r.ortTime); err != nil {
		return nil, err
	}
	r.timings.ReferenceEncoding = time.Since(t)

	t = time.Now()
	latents, err := r.denoise(ctx, pos, neg)
	if err != nil {
		return nil, err
	}
	r.timings.Denoising = time.Since(t)
	if r.e.debugFinalLatents != nil {
		r.e.debugFinalLatents(latents)
	}

	images := make([]engine.Image, r.batch)
	pixels := make([][]uint8, r.batch)
	t = time.Now()
	for k := 0; k < r.batch; k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tokens := r.seqLen * sampler.PackedChannels
		if pixels[k], err = r.decode(latents[k*tokens:(k+1)*tokens], k == r.batch-1); err != nil {
			return nil, err
		}
	}
	r.timings.Decoding = time.Since(t)

	t = time.Now()
	flags := make([]bool, r.batch)
	if req.EnableSafetyChecker {
		if flags, err = r.e.checkSafety(pixels, req.Width, req.Height, &r.ortTime); err != nil {
			return nil, err
		}
		for k, bad := range flags {
			if bad { // fal and diffusers return a black image in its place
				clear(pixels[k])
			}
		}
	}
	r.timings.Safety = time.Since(t)

	t = time.Now()
	codec, err := req.OutputFormat.Codec()
	if err != nil {
		return nil, err
	}
	for k := range images {
		data, err := codec.Encode(pixels[k], req.Width, req.Height)
		if err != nil {
			return nil, err
		}
		images[k] = engine.Image{Data: data, ContentType: codec.ContentType, Extension: codec.Extension,
			Width: req.Width, Height: req.Height, NSFW: flags[k]}
	}
	r.timings.Encoding = time.Since(t)
	r.timings.Total = time.Since(start)
	return &engine.Result{Images: images, Seed: req.Seed, Timings: r.timings}, nil
}

// encodePrompts returns the prompt embeddings and, with CFG, the negative
// prompt's; both [512*J] float32, shared by every image of the batch.
func (r *run) encodePrompts(ctx context.Context) (pos, neg []float32, err error) {
	prompts := []string{r.req.Prompt}
	if r.cfg {
		prompts = append(prompts, r.req.NegativePrompt)
	}
	embeds, err := r.e.embed(ctx, prompts, &r.ortTime)
	if err != nil {
		return nil, nil, err
	}
	if r.cfg {
		return embeds[0], embeds[1], nil
	}
	return embeds[0], nil, nil
}

// embed returns embeddings for prompts, running the text encoder once, in
// one batch, for those not cached; clock accumulates the Run time.
func (e *Engine) embed(ctx context.Context, prompts []string, clock *time.Duration) ([][]float32, error) {
	out := make([][]float32, len(prompts))
	var missing []string
	index := map[string][]int{}
	for i, p := range prompts {
		if v, ok := e.cache.get(p); ok {
			out[i] = v
			continue
		}
		if _, seen := index[p]; !seen {
			missing = append(missing, p)
		}
		index[p] = append(index[p], i)
	}
	if len(missing) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	L, J := e.man.Text.MaxLength, e.man.Text.JointAttentionDim
	b := int64(len(missing))
	ids, err := ort.NewEmptyTensor[int64](ort.NewShape(b, int64(L)))
	if err != nil {
		return nil, fmt.Errorf("text encoder input: %w", err)
	}
	mask, err := ort.NewEmptyTensor[int64](ort.NewShape(b, int64(L)))
	if err != nil {
		return nil, fmt.Errorf("text encoder input: %w", err)
	}
	embeds, err := newFloatTensor(e.text.floatT, b, int64(L), int64(J))
	if err != nil {
		return nil, err
	}
	defer destroyAll(ids, mask, embeds)
	for k, p := range missing {
		pid, pmask := e.tok.EncodePrompt(p)
		copy(ids.GetData()[k*L:(k+1)*L], pid)
		copy(mask.GetData()[k*L:(k+1)*L], pmask)
	}
	call, err := e.text.bind(clock, map[string]ort.Value{"input_ids": ids, "attention_mask": mask},
		map[string]ort.Value{"prompt_embeds": embeds.value()})
	if err != nil {
		return nil, err
	}
	call.final = true // one text-encoder call per request
	if err := call.run(); err != nil {
		return nil, err
	}
	for k, p := range missing {
		v := make([]float32, L*J)
		embeds.read(k*L*J, v)
		e.cache.put(p, v)
		for _, i := range index[p] {
			out[i] = v
		}
	}
	return out, nil
}

// denoise runs the sampler loop and returns the final packed latents,
// [batch, seqLen, PackedChannels] float32.
func (r *run) denoise(ctx context.Context, pos, neg []float32) ([]float32, error) {
	e, req := r.e, r.req
	B, S := r.batch, r.seqLen
	C := sampler.PackedChannels
	tokens := S * C
	dit, err := r.newDiTCall(pos, neg)
	if err != nil {
		return nil, err
	}
	defer dit.destroy()

	noise := req.InitialNoise
	if noise == nil {
		noise = make([]float32, B*tokens)
		if err := sampler.BatchNoise(e.cfg.Noise, noise, req.Seed, e.latentBF16(), B, r.h, r.w); err != nil {
			return nil, err
		}
	}
	x := make([]float32, B*tokens)
	if err := sampler.Pack(x, noise, B, C, r.h, r.w); err != nil {
		return nil, err
	}
	sigmas := schedule(S, req.Steps)
	v := make([]float32, B*tokens)
	stepper, err := newStepper(e, req, r.h, r.w, sigmas)
	if err != nil {
		return nil, err
	}
	defer stepper.wait()
	plan := computePlan(req.Acceleration, req.Steps)
	lastCall := -1
	for i, call := range plan {
		if call {
			lastCall = i
		}
	}
	for i := 0; i < req.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stepStart := time.Now()
		stepper.startNoise(i)
		if plan[i] {
			dit.final = i == lastCall
			if err := dit.predict(x, v, sigmas[i]); err != nil {
				return nil, err
			}
		} // else: v still holds the last computed velocity (acceleration)
		var preview *engine.Image
		if r.progress != nil && req.PreviewEvery > 0 && (i+1)%req.PreviewEvery == 0 && i+1 < req.Steps {
			// Preview the model's current estimate of the clean image,
			// x0 = x - sigma*v, not the noisy latent.
			x0 := make([]float32, tokens)
			for j := range x0 {
				x0[j] = x[j] - sigmas[i]*v[j]
			}
			preview = e.preview(x0, r.h, r.w)
		}
		if err := stepper.step(i, x, v); err != nil {
			return nil, err
		}
		if r.progress != nil {
			r.progress(engine.Progress{Step: i + 1, TotalSteps: req.Steps, StepTime: time.Since(stepStart), Preview: preview})
		}
	}
	return x, nil
}

// decode turns one image's packed latents into 8-bit RGB, rounding as
// diffusers does: round(clamp(x/2+0.5, 0, 1)*255), half to even. Large
// images are decoded in tiles (vaetile.go); final marks the request's last
// decoder call.
func (r *run) decode(packed []float32, final bool) ([]uint8, error) {
	chw := make([]float32, len(packed))
	if err := sampler.Unpack(chw, packed, 1, sampler.PackedChannels, r.h, r.w); err != nil {
		return nil, err
	}
	var planes []float32
	var err error
	if tile := r.mem.DecodeTile; tile > 0 && (tile < r.h || tile < r.w) {
		planes, err = r.decodeTiled(chw, r.h, r.w, tile, final)
	} else {
		planes, err = r.decodeLatents(chw, r.h, r.w, final)
	}
	if err != nil {
		return nil, err
	}
	return toRGB8(planes, r.w*sampler.Downscale, r.h*sampler.Downscale), nil
}

// decodeLatents runs the VAE decoder once on an h x w grid of unpacked
// latents [128, h, w] and returns the image planes [3, 16h, 16w].
func (r *run) decodeLatents(chw []float32, h, w int, final bool) ([]float32, error) {
	e := r.e
	C, H, W := sampler.PackedChannels, h*sampler.Downscale, w*sampler.Downscale
	lat, err := newFloatTensor(e.vae.floatT, 1, int64(C), int64(h), int64(w))
	if err != nil {
		return nil, err
	}
	img, err := newFloatTensor(e.vae.floatT, 1, 3, int64(H), int64(W))
	if err != nil {
		return nil, err
	}
	defer destroyAll(lat, img)
	lat.write(0, chw)
	call, err := e.vae.bind(&r.ortTime, map[string]ort.Value{"latents": lat.value()}, map[string]ort.Value{"image": img.value()})
	if err != nil {
		return nil, err
	}
	call.final = final
	if err := call.run(); err != nil {
		return nil, err
	}
	planes := make([]float32, 3*H*W)
	img.read(0, planes)
	return planes, nil
}

// toRGB8 converts CHW floats in [-1,1] to packed RGB bytes.
func toRGB8(planes []float32, w, h int) []uint8 {
	n := w * h
	out := make([]uint8, 3*n)
	for c := 0; c < 3; c++ {
		src := planes[c*n : (c+1)*n]
		for i, v := range src {
			u := v*0.5 + 0.5
			if u < 0 {
				u = 0
			} else if u > 1 {
				u = 1
			}
			out[3*i+c] = uint8(math.RoundToEven(float64(u * 255)))
		}
	}
	return out
}
