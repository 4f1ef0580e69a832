package pipeline

import (
	"math"
	"slices"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// A request's peak memory is estimated from the manifest's dimensions and
// the request's size alone (no session, so a -role api process can admit
// from model.json). Each graph call is a separate peak: the text encoder,
// one transformer call (every step is the same), one VAE decoder call (the
// whole image or one tile) and the safety classifier; they never overlap
// within a request, because the engine shrinks each graph's arena after its
// last call of the request (memory.go). docs/memory.md has the
// measurements behind the coefficients below.
const (
	// attentionFactor counts the live copies of one decomposed attention's
	// score tensor [rows, heads, tokens, tokens] at the call's peak: the
	// scores and their softmax, plus what ONNX Runtime's arena adds.
	// Measured 2.2-2.3x on the tiny model and 2.3x (besides the width term)
	// on the mid-width export of docs/memory.md.
	attentionFactor = 2.4
	// activationFactor counts the width-sized activations live per row and
	// token, in elements of (model width + MLP width): 9.8 at most on the
	// mid-width export; the tiny model's are too small to show.
	activationFactor = 10
	// vaeAttentionFactor is attentionFactor for the VAE decoder's mid-block
	// attention (one head over the latent pixels): 2.0-2.1x measured.
	vaeAttentionFactor = 2.3
	// vaeActivationFactor counts full-resolution activations of the
	// decoder's widest full-resolution channel count, per output pixel: the
	// mid-width export needed 2.0 where they were half of its peak.
	vaeActivationFactor = 3
	// requestOverhead is what a request costs besides its graphs' tensors:
	// the Go heap's growth, the C heap's per-thread arenas, ONNX Runtime's
	// per-call bookkeeping. No call measured more than 24 MiB above its
	// estimate (a small decoder call of the mid-width export).
	requestOverhead = 64 << 20
	// deviceOverhead is the allowance on CUDA for cuDNN workspaces and the
	// arena's granularity. Not measured (no GPU was available).
	deviceOverhead = 1 << 30
	// defaultVAETile is the VAE's own tile, in latent tokens, when the
	// manifest has no sample_size: diffusers' 1024 pixels for this VAE.
	defaultVAETile = 1024 / sampler.Downscale
)

// MemoryEstimate is a request's estimated memory, in bytes, above the idle
// process.
type MemoryEstimate struct {
	// Peaks of the graph calls, each alone (VAEEncoder: the largest
	// reference image's, 0 without references).
	TextEncoder, VAEEncoder, Transformer, VAEDecoder, Safety int64
	// Host is the pipeline's own buffers (latents, input and output
	// tensors, pixels, encoded images), all counted as live at once.
	Host int64
	// Overhead is the fixed allowance per request.
	Overhead int64
	// DecodeTile is the side, in latent tokens (16 pixels), of the square
	// tiles the VAE decoder runs on; 0 decodes each image whole.
	DecodeTile int
	// Peak is what the request is charged against the memory budget: the
	// largest graph peak plus, on CPU, the host buffers and the overhead
	// (on CUDA the budget is device memory, which the host buffers are
	// not in).
	Peak int64
}

// requestShape is what memory depends on in a request.
type requestShape struct {
	width, height, images int
	cfg                   bool
	// refTokens are the reference images' tokens, which every transformer
	// row carries after its target tokens; refGrid is the largest
	// reference's latent grid (its VAE encoder call).
	refTokens int
	refGrid   [2]int
}

func shapeOf(req *engine.Request) requestShape {
	s := requestShape{width: req.Width, height: req.Height, images: req.NumImages, cfg: req.UsesCFG()}
	for _, ref := range req.References {
		w, h := imageprep.ProcessedSize(ref.Width, ref.Height)
		gh, gw := h/sampler.Downscale, w/sampler.Downscale
		s.refTokens += gh * gw
		if gh*gw > s.refGrid[0]*s.refGrid[1] {
			s.refGrid = [2]int{gh, gw}
		}
	}
	return s
}

// rows is the transformer call's batch: conditional and unconditional rows
// with CFG.
func (s requestShape) rows() int {
	if s.cfg {
		return 2 * s.images
	}
	return s.images
}

// memoryModel is what the estimate reads from a manifest.
type memoryModel struct {
	gpu            bool
	distilled      bool // one transformer row per image whatever the guidance
	textLen, joint int  // prompt tokens, transformer text width

	ditHeads, ditWidth, ditMLP int
	ditFloat                   int64
	ditFused                   bool // attention without a materialised score tensor on CUDA

	teHeads, teHidden, teInter int
	teFloat                    int64

	vaeFull  int // channels of the decoder's widest full-resolution stage
	vaeFloat int64
	vaeTile  int // the VAE's own tile (its sample_size), in latent tokens

	scTokens, scHeads, scHidden, scInter, scSize int
	scFloat                                      int64
}

func newMemoryModel(m *Manifest, provider string) memoryModel {
	a := &m.Architecture
	t, te, vae, sc := a.Transformer, a.TextEncoder, a.VAE, a.SafetyChecker.Vision
	mm := memoryModel{
		gpu:       onGPU(provider),
		distilled: m.Distilled(),
		textLen:   m.Text.MaxLength,
		joint:     m.Text.JointAttentionDim,
		ditHeads:  t.NumAttentionHeads, ditWidth: t.NumAttentionHeads * t.AttentionHeadDim,
		ditFloat: floatBytes(m.Graphs[GraphTransformer].Precision),
		ditFused: m.Graphs[GraphTransformer].Attention == "fused",
		teHeads:  te.NumAttentionHeads, teHidden: te.HiddenSize, teInter: te.IntermediateSize,
		teFloat:  floatBytes(m.Graphs[GraphTextEncoder].Precision),
		vaeFloat: floatBytes(m.Graphs[GraphVAEDecoder].Precision),
		scHeads:  sc.NumAttentionHeads, scHidden: sc.HiddenSize, scInter: sc.IntermediateSize,
		scSize:  m.Safety.InputSize,
		scFloat: floatBytes(m.Graphs[GraphSafetyChecker].Precision),
	}
	mm.ditMLP = int(math.Ceil(t.MLPRatio * float64(mm.ditWidth)))
	// The decoder runs its channel list reversed; its last up block (the
	// first entry) works at full resolution after the previous block's
	// upsampler, which runs there at the second entry's width.
	for i, c := range vae.BlockOutChannels {
		if i < 2 {
			mm.vaeFull = max(mm.vaeFull, c)
		}
	}
	mm.vaeTile = defaultVAETile
	if vae.SampleSize >= sampler.Downscale {
		mm.vaeTile = vae.SampleSize / sampler.Downscale
	}
	if sc.PatchSize > 0 && mm.scSize > 0 {
		side := mm.scSize / sc.PatchSize
		mm.scTokens = side*side + 1 // patches and the class token
	}
	return mm
}

// floatBytes is the element size of a graph precision (fp32 when unknown).
func floatBytes(precision string) int64 {
	switch precision {
	case "fp16", "bf16", "float16", "bfloat16":
		return 2
	}
	return 4
}

// attention is the estimated peak of attention over rows*heads score
// matrices of tokens x tokens elements of f bytes.
func attention(factor float64, rows, heads, tokens int, f int64) int64 {
	return int64(factor * float64(rows) * float64(heads) * float64(tokens) * float64(tokens) * float64(f))
}

// activations is the estimated live width-proportional activations.
func activations(factor float64, rows, tokens, width int, f int64) int64 {
	return int64(factor * float64(rows) * float64(tokens) * float64(width) * float64(f))
}

// textPeak is one text-encoder call on prompts prompts.
func (m *memoryModel) textPeak(prompts int) int64 {
	L := m.textLen
	return attention(attentionFactor, prompts, m.teHeads, L, m.teFloat) +
		activations(activationFactor, prompts, L, m.teHidden+m.teInter, m.teFloat) +
		int64(prompts*L*m.joint)*m.teFloat
}

// ditPeak is one transformer call of rows rows on seq image tokens.
func (m *memoryModel) ditPeak(rows, seq int) int64 {
	T := seq + m.textLen
	peak := activations(activationFactor, rows, T, m.ditWidth+m.ditMLP, m.ditFloat)
	if !(m.gpu && m.ditFused) {
		peak += attention(attentionFactor, rows, m.ditHeads, T, m.ditFloat)
	}
	return peak
}

// vaePeak is one decoder call on an h x w grid of latent tokens: its
// mid-block attention runs over the (2h x 2w) VAE latent pixels.
func (m *memoryModel) vaePeak(h, w int) int64 {
	n := 4 * h * w
	pixels := h * w * sampler.Downscale * sampler.Downscale
	return attention(vaeAttentionFactor, 1, 1, n, m.vaeFloat) +
		activations(vaeActivationFactor, 1, pixels, m.vaeFull, m.vaeFloat)
}

// safetyPeak is one safety-classifier call on images images.
func (m *memoryModel) safetyPeak(images int) int64 {
	in := int64(images * 3 * m.scSize * m.scSize * 4)
	return in + attention(attentionFactor, images, m.scHeads, m.scTokens, m.scFloat) +
		activations(activationFactor, images, m.scTokens, m.scHidden+m.scInter, m.scFloat)
}

// hostBytes is the pipeline's own memory for a request decoded in tiles of
// side tile (0: whole), all counted as live at once.
func (m *memoryModel) hostBytes(s requestShape, tile int) int64 {
	h, w := s.height/sampler.Downscale, s.width/sampler.Downscale
	S, B, R := int64(h*w), int64(s.images), int64(s.rows())
	C := int64(sampler.PackedChannels)
	L, J := int64(m.textLen), int64(m.joint)
	px := int64(s.width * s.height)
	n := 4 * B * S * C * 4                        // noise, latents, velocity, preview estimate
	n += 3*R*S*C*m.ditFloat + R*L*J*m.ditFloat    // transformer input, output, scratch; text rows
	n += 2 * L * J * 4                            // the request's prompt embeddings
	n += S*C*(4+m.vaeFloat) + 3*px*(4+m.vaeFloat) // decoder input and output, image planes
	n += 2 * B * 3 * px                           // RGB pixels and encoded files
	if tile > 0 {
		// Two rows of decoded tiles (diffusers' blending reads the row
		// above).
		side := int64(tile * sampler.Downscale)
		perRow := int64(tilesAlong(w, tile))
		n += 2 * perRow * 3 * side * side * 4
	}
	return n
}

// decodeTiles lists the decoder's options from best to smallest: whole
// images (exactly the reference's decode; with no budget to say whether
// they fit, only when both sides fit the VAE's own tile), then square tiles
// of the VAE's tile side, 3/4 and 1/2 of it (multiples of 4 latent tokens,
// so blend and stride are whole tokens). Tiles differ from the whole decode,
// the more the smaller (docs/memory.md), so they are used only when needed
// and never below half the VAE's tile.
func (m *memoryModel) decodeTiles(h, w int, budgeted bool) []int {
	var opts []int
	if budgeted || (h <= m.vaeTile && w <= m.vaeTile) {
		opts = append(opts, 0)
	}
	for _, num := range []int{4, 3, 2} {
		t := m.vaeTile * num / 4 / 4 * 4
		if t >= 4 && !slices.Contains(opts, t) {
			opts = append(opts, t)
		}
	}
	return opts
}

// estimate is a request's memory with the first decoder option that fits
// budget (0: no budget); with none fitting, the smallest option (and
// Admission refuses the request).
func (m *memoryModel) estimate(s requestShape, budget int64) MemoryEstimate {
	if m.distilled {
		s.cfg = false
	}
	h, w := s.height/sampler.Downscale, s.width/sampler.Downscale
	prompts := 1
	if s.cfg {
		prompts = 2
	}
	base := MemoryEstimate{
		TextEncoder: m.textPeak(prompts),
		Transformer: m.ditPeak(s.rows(), h*w+s.refTokens),
		// The encoder of a reference is charged like a decoder call on its
		// grid: the same mid-block attention over its VAE latent pixels.
		VAEEncoder: m.vaePeak(s.refGrid[0], s.refGrid[1]),
		Safety:     m.safetyPeak(s.images),
		Overhead:   requestOverhead,
	}
	if m.gpu {
		base.Overhead = deviceOverhead
	}
	var est MemoryEstimate
	for _, tile := range m.decodeTiles(h, w, budget > 0) {
		est = base
		est.DecodeTile = tile
		if tile == 0 {
			est.VAEDecoder = m.vaePeak(h, w)
		} else {
			est.VAEDecoder = m.vaePeak(min(tile, h), min(tile, w))
		}
		est.Host = m.hostBytes(s, tile)
		est.Peak = est.Overhead + max(est.TextEncoder, est.VAEEncoder, est.Transformer, est.VAEDecoder, est.Safety)
		if !m.gpu {
			est.Peak += est.Host
		}
		if budget <= 0 || est.Peak <= budget {
			break
		}
	}
	return est
}
