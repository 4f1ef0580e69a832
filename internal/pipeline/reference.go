package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Reference images condition an edit as extra image tokens after the
// target's, in every row of every transformer call (both CFG branches,
// every image of the batch), never noised or updated; the velocity is read
// from the target tokens only, and the schedule's mu counts the target
// tokens only. docs/editing.md has the whole path.

// refTimeStep separates the references on the time axis of the position
// ids: reference k (0-based) has T = refTimeStep*(k+1), the target T = 0
// (diffusers' _prepare_image_ids with scale 10).
const refTimeStep = 10

// DefaultReferenceCacheBytes is the default budget of the reference-latent
// cache: 128 references at the 1024² pixel budget (4096 tokens of 128
// float32 each).
const DefaultReferenceCacheBytes = 256 << 20

// referenceSet is what a request's references add to each transformer row.
type referenceSet struct {
	latents []*refLatent // in request order
	tokens  int          // total token count
	layout  string       // the grids in order ("6x4,8x8"); "" without references
}

// newReferenceSet orders cached latents into a request's set.
func newReferenceSet(latents []*refLatent) *referenceSet {
	s := &referenceSet{latents: latents}
	grids := make([]string, len(latents))
	for i, l := range latents {
		s.tokens += l.h * l.w
		grids[i] = strconv.Itoa(l.h) + "x" + strconv.Itoa(l.w)
	}
	s.layout = strings.Join(grids, ",")
	return s
}

// len is the set's token count (0 for a nil set: no references).
func (s *referenceSet) len() int {
	if s == nil {
		return 0
	}
	return s.tokens
}

// key is what rows sharing one transformer call must agree on: the call
// has one img_ids tensor, so the same grids in the same order.
func (s *referenceSet) key() string {
	if s == nil {
		return ""
	}
	return s.layout
}

// ids returns the position ids of the reference tokens, (len, 4) int64:
// [10(k+1), row, col, 0] for reference k, in token order.
func (s *referenceSet) ids() []int64 {
	if s == nil {
		return nil
	}
	out := make([]int64, 0, 4*s.tokens)
	for k, l := range s.latents {
		out = append(out, sampler.ImageIDs(int64(refTimeStep*(k+1)), l.h, l.w)...)
	}
	return out
}

// write stores the reference tokens at element offset off of t.
func (s *referenceSet) write(t *floatTensor, off int) {
	if s == nil {
		return
	}
	for _, l := range s.latents {
		t.write(off, l.tokens)
		off += len(l.tokens)
	}
}

// resolveReferences checks a request's reference images and gives a zero
// output width or height the first reference's processed one. It runs
// before engine.Request.Check, which then checks the size like any other;
// a size taken from a reference is checked here too, so that its error
// can say where the size came from.
func resolveReferences(req *engine.Request) error {
	if len(req.References) == 0 {
		return nil
	}
	var errs []error
	if len(req.References) > imageprep.MaxReferences {
		errs = append(errs, fmt.Errorf("references: at most %d images, got %d", imageprep.MaxReferences, len(req.References)))
	}
	for i, ref := range req.References {
		if ref.Width < 1 || ref.Height < 1 || len(ref.Pix) != 3*ref.Width*ref.Height {
			errs = append(errs, fmt.Errorf("references[%d]: %d bytes for %dx%d RGB pixels", i, len(ref.Pix), ref.Width, ref.Height))
		} else if err := imageprep.CheckReference(ref.Width, ref.Height); err != nil {
			errs = append(errs, fmt.Errorf("references[%d]: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", engine.ErrInvalidRequest, err)
	}
	if req.Width != 0 && req.Height != 0 {
		return nil
	}
	pw, ph := imageprep.ProcessedSize(req.References[0].Width, req.References[0].Height)
	if req.Width == 0 {
		req.Width = pw
	}
	if req.Height == 0 {
		req.Height = ph
	}
	if req.Width > engine.MaxSide || req.Height > engine.MaxSide || req.Width*req.Height > engine.MaxPixels {
		return fmt.Errorf("%w: the output size taken from references[0] (%dx%d) exceeds %d px per side or %d pixels; give an output size",
			engine.ErrInvalidRequest, req.Width, req.Height, engine.MaxSide, engine.MaxPixels)
	}
	return nil
}

// referenceSet returns the latents of a request's references, from the
// cache or encoded now; clock accumulates the VAE encoder's Run time.
func (e *Engine) referenceSet(ctx context.Context, refs []engine.ReferenceImage, clock *time.Duration) (*referenceSet, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	latents := make([]*refLatent, len(refs))
	for i, ref := range refs {
		l, err := e.refCache.get(ctx, referenceKey(ref), func() (*refLatent, error) {
			return e.encodeReference(ctx, ref, clock)
		})
		if err != nil {
			return nil, fmt.Errorf("references[%d]: %w", i, err)
		}
		latents[i] = l
	}
	return newReferenceSet(latents), nil
}

// referenceKey identifies a reference by its size and pixels.
func referenceKey(ref engine.ReferenceImage) refKey {
	h := sha256.New()
	var size [16]byte
	binary.LittleEndian.PutUint64(size[:8], uint64(ref.Width))
	binary.LittleEndian.PutUint64(size[8:], uint64(ref.Height))
	h.Write(size[:])
	h.Write(ref.Pix)
	var k refKey
	h.Sum(k[:0])
	return k
}

// encodeReference prepares one reference (imageprep) and runs the VAE
// encoder on it: mean latent, patchified and BN-normalised by the graph,
// then packed into tokens.
func (e *Engine) encodeReference(ctx context.Context, ref engine.ReferenceImage, clock *time.Duration) (*refLatent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img, err := imageprep.PrepareReference(imageprep.RGB{Pix: ref.Pix, Width: ref.Width, Height: ref.Height})
	if err != nil {
		return nil, err
	}
	W, H := img.Width, img.Height
	h, w := H/sampler.Downscale, W/sampler.Downscale
	planes := make([]float32, 3*W*H)
	if err := imageprep.Normalize(planes, img); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, err := newFloatTensor(e.vaeEnc.floatT, 1, 3, int64(H), int64(W))
	if err != nil {
		return nil, err
	}
	out, err := newFloatTensor(e.vaeEnc.floatT, 1, sampler.PackedChannels, int64(h), int64(w))
	if err != nil {
		_ = in.Destroy()
		return nil, err
	}
	defer destroyAll(in, out)
	in.write(0, planes)
	call, err := e.vaeEnc.bind(clock, map[string]ort.Value{"image": in.value()}, map[string]ort.Value{"latents": out.value()})
	if err != nil {
		return nil, err
	}
	// Each encoding may be the request's last (the others can be cache
	// hits), so each one returns what it grew (memory.go).
	call.final = true
	if err := call.run(); err != nil {
		return nil, err
	}
	chw := make([]float32, out.len())
	out.read(0, chw)
	l := &refLatent{h: h, w: w, tokens: make([]float32, len(chw))}
	if err := sampler.Pack(l.tokens, chw, 1, sampler.PackedChannels, h, w); err != nil {
		return nil, err
	}
	return l, nil
}

// ReferenceCacheStats describes the reference-latent cache: lookups served
// from it, VAE encodings run (misses), and what it holds.
type ReferenceCacheStats struct {
	Hits, Encodes int64
	Entries       int
	Bytes         int64
}

// ReferenceCacheStats returns the cache's counters so far (for metrics).
func (e *Engine) ReferenceCacheStats() ReferenceCacheStats {
	s, n, used := e.refCache.snapshot()
	return ReferenceCacheStats{Hits: s.Hits, Encodes: s.Encodes, Entries: n, Bytes: used}
}
