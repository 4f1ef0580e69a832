package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
)

// fakeEngine produces deterministic small images: a solid colour derived
// from the seed, encoded in the requested format (webp is stood in for by
// PNG bytes, which is enough for the API layer). Prompts containing "nsfw"
// are flagged. It can be held at its first step with hold, and made to fail.
type fakeEngine struct {
	info engine.Info
	// hold, when non-nil, blocks each Generate before its first step until
	// a value is received or the context ends.
	hold chan struct{}
	// entered, when non-nil, receives each request as Generate starts.
	entered chan engine.Request
	fail    error
	calls   atomic.Int32

	mu      sync.Mutex
	lastReq engine.Request
	ctxErrs []error
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{info: engine.Info{Model: "fake model", Variant: "fake", Provider: "cpu", Precision: "fp32"}}
}

func (f *fakeEngine) Info() engine.Info { return f.info }
func (f *fakeEngine) Close() error      { return nil }

func (f *fakeEngine) Generate(ctx context.Context, req engine.Request, progress engine.ProgressFunc) (*engine.Result, error) {
	f.calls.Add(1)
	if len(req.References) > 0 && (req.Width == 0 || req.Height == 0) {
		// An edit without a size takes the first reference's, as the
		// pipeline does.
		req.Width, req.Height = imageprep.ProcessedSize(req.References[0].Width, req.References[0].Height)
	}
	f.mu.Lock()
	f.lastReq = req
	f.mu.Unlock()
	if f.entered != nil {
		f.entered <- req
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			f.recordCtx(ctx.Err())
			return nil, fmt.Errorf("fake: %w", engine.ErrCanceled)
		}
	}
	if f.fail != nil {
		return nil, f.fail
	}
	for step := 1; step <= req.Steps; step++ {
		if err := ctx.Err(); err != nil {
			f.recordCtx(err)
			return nil, fmt.Errorf("fake: %w", engine.ErrCanceled)
		}
		p := engine.Progress{Step: step, TotalSteps: req.Steps, StepTime: time.Millisecond}
		if req.PreviewEvery > 0 && step%req.PreviewEvery == 0 {
			data, err := encode(solid(16, 16, req.Seed), engine.FormatJPEG)
			if err != nil {
				return nil, err
			}
			p.Preview = &engine.Image{Data: data, ContentType: "image/jpeg", Extension: "jpeg", Width: 16, Height: 16}
		}
		progress(p)
	}
	res := &engine.Result{Seed: req.Seed, Timings: engine.Timings{
		TextEncoding: 100 * time.Millisecond, Denoising: 1200 * time.Millisecond, Decoding: 150 * time.Millisecond,
		Safety: 25 * time.Millisecond, Encoding: 25 * time.Millisecond, Total: 1500 * time.Millisecond}}
	codec, err := req.OutputFormat.Codec()
	if err != nil {
		return nil, err
	}
	for k := 0; k < req.NumImages; k++ {
		data, err := encode(solid(req.Width, req.Height, req.ImageSeed(k)), req.OutputFormat)
		if err != nil {
			return nil, err
		}
		res.Images = append(res.Images, engine.Image{Data: data, ContentType: codec.ContentType, Extension: codec.Extension,
			Width: req.Width, Height: req.Height,
			NSFW: req.EnableSafetyChecker && strings.Contains(req.Prompt, "nsfw")})
	}
	return res, nil
}

func (f *fakeEngine) recordCtx(err error) {
	f.mu.Lock()
	f.ctxErrs = append(f.ctxErrs, err)
	f.mu.Unlock()
}

func (f *fakeEngine) canceledRuns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ctxErrs)
}

func (f *fakeEngine) last() engine.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq
}

func solid(w, h int, seed int64) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	c := color.RGBA{R: uint8(seed), G: uint8(seed >> 8), B: uint8(seed >> 16), A: 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

func encode(img image.Image, format engine.OutputFormat) ([]byte, error) {
	var b bytes.Buffer
	var err error
	switch format {
	case engine.FormatJPEG:
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	case engine.FormatPNG, engine.FormatWebP:
		err = png.Encode(&b, img)
	default:
		err = errors.New("fake: unknown format " + string(format))
	}
	return b.Bytes(), err
}
