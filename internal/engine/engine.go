// Package engine is the contract between the serving layers (HTTP API, queue
// worker, CLI) and the image-generation pipeline, and the owner of the
// request vocabulary: output formats, acceleration levels, the model's
// physical limits, and the request and result types.
//
// Protocol policy (fal's ranges and defaults) lives in internal/wire and is
// built from the constants here; the CNS sampler's own parameters are owned
// by internal/cns. The pipeline implements Engine; the API and the worker
// are tested against fakes of it.
package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/imagecodec"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/lora"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Sentinel errors shared by every Engine implementation. Callers map them to
// protocol status codes with errors.Is.
var (
	// ErrCanceled is returned when the request's context was canceled
	// (client went away, queue cancel) before the images were finished.
	ErrCanceled = errors.New("generation canceled")
	// ErrInvalidRequest wraps a request the engine cannot run (for example a
	// size the loaded model does not support). It is a client error.
	ErrInvalidRequest = errors.New("invalid generation request")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("engine closed")
)

// InputError is an invalid request that names the input it is about, as a
// path of field names and list indexes (["loras", 0, "path"]), in the
// request vocabulary of the protocols. It is an ErrInvalidRequest.
type InputError struct {
	Loc []any
	Err error
}

func (e *InputError) Error() string {
	var b strings.Builder
	for i, l := range e.Loc {
		switch l := l.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", l)
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, l)
		}
	}
	return b.String() + ": " + e.Err.Error()
}

// Unwrap makes an InputError an ErrInvalidRequest and exposes its cause.
func (e *InputError) Unwrap() []error { return []error{ErrInvalidRequest, e.Err} }

// OutputFormat is the file format of generated images.
type OutputFormat string

// Output formats.
const (
	FormatJPEG OutputFormat = "jpeg"
	FormatPNG  OutputFormat = "png"
	FormatWebP OutputFormat = "webp"
)

// OutputFormats lists every output format, in the endpoint's order.
func OutputFormats() []OutputFormat { return []OutputFormat{FormatJPEG, FormatPNG, FormatWebP} }

// Codec returns the encoder of a format.
func (f OutputFormat) Codec() (imagecodec.Codec, error) {
	switch f {
	case FormatJPEG:
		return imagecodec.JPEG(), nil
	case FormatPNG:
		return imagecodec.PNG(), nil
	case FormatWebP:
		return imagecodec.WebP(), nil
	}
	return imagecodec.Codec{}, fmt.Errorf("unknown output format %q", string(f))
}

// Acceleration trades a bounded amount of fidelity for speed by skipping
// transformer calls (see internal/pipeline/accel.go).
type Acceleration string

// Acceleration levels.
const (
	AccelerationNone    Acceleration = "none"
	AccelerationRegular Acceleration = "regular"
	AccelerationHigh    Acceleration = "high"
)

// Accelerations lists every level, in the endpoint's order.
func Accelerations() []Acceleration {
	return []Acceleration{AccelerationNone, AccelerationRegular, AccelerationHigh}
}

// Physical limits of the model and of one request. Protocols may be
// stricter (internal/wire), never looser.
const (
	// SizeMultiple: widths and heights are multiples of the pixel size of
	// one latent token (the VAE's 8x times the 2x2 patch).
	SizeMultiple = sampler.Downscale
	// MinSide and MaxSide bound each side, in pixels.
	MinSide = SizeMultiple
	MaxSide = 2048
	// MaxPixels bounds width*height.
	MaxPixels = MaxSide * MaxSide
	// MaxImages bounds one request's batch.
	MaxImages = 4
	// MaxSteps bounds the denoising loop.
	MaxSteps = 1000
	// MaxReferences bounds an edit's reference images.
	MaxReferences = imageprep.MaxReferences
	// MaxLoRAs bounds the LoRAs of one request; a LoRA's scale is in
	// [MinLoRAScale, MaxLoRAScale], DefaultLoRAScale when not given.
	MaxLoRAs         = lora.MaxPerRequest
	MinLoRAScale     = lora.MinScale
	MaxLoRAScale     = lora.MaxScale
	DefaultLoRAScale = lora.DefaultScale
)

// Request is a fully resolved generation request: every default applied,
// every value validated, the seed chosen.
type Request struct {
	Prompt         string
	NegativePrompt string
	GuidanceScale  float64
	Steps          int
	Width, Height  int
	NumImages      int
	// Seed of the request. The initial noise of the whole batch is drawn
	// from it (sampler.BatchNoise); per-image streams use ImageSeed.
	Seed                int64
	Acceleration        Acceleration
	EnableSafetyChecker bool
	OutputFormat        OutputFormat
	CNS                 cns.Params
	// PreviewEvery asks for a cheap latent preview in the progress callback
	// every N steps (0: no previews).
	PreviewEvery int
	// LoRAs are applied to the transformer, in order (none: the base model).
	LoRAs []LoRA
	// InitialNoise, when set, replaces the seeded initial latent noise. It
	// is laid out (NumImages, 128, Height/16, Width/16), float32. Used by
	// reference tests; never set from the HTTP API.
	InitialNoise []float32
	// References are the images an edit conditions on, in order (none for
	// text-to-image). A zero Width or Height takes the first reference's
	// processed width or height (imageprep.ProcessedSize), as diffusers'
	// Flux2KleinPipeline does when no output size is given.
	References []ReferenceImage
}

// ReferenceImage is a decoded reference image: 8-bit RGB, row-major, three
// bytes (R, G, B) per pixel, len(Pix) == 3*Width*Height. Decoding, EXIF
// orientation and colour conversion happen before the engine.
type ReferenceImage struct {
	Pix           []uint8
	Width, Height int
}

// ImageSeed is the seed of image k of the request in per-image noise streams
// (sampler.ImageSeed).
func (r *Request) ImageSeed(k int) int64 { return sampler.ImageSeed(r.Seed, k) }

// UsesCFG reports whether the request runs classifier-free guidance.
func (r *Request) UsesCFG() bool { return sampler.UsesCFG(r.GuidanceScale) }

// LatentGrid is the packed latent grid (rows, columns) of the output.
func (r *Request) LatentGrid() (h, w int) { return r.Height / SizeMultiple, r.Width / SizeMultiple }

// Check is the engine's guard of its own invariants: it rejects, wrapped in
// ErrInvalidRequest, what no engine can run. Protocol layers validate their
// input before; this catches callers that bypass them.
func (r *Request) Check() error {
	var errs []error
	if r.Width%SizeMultiple != 0 || r.Height%SizeMultiple != 0 {
		errs = append(errs, fmt.Errorf("width and height must be multiples of %d, got %dx%d", SizeMultiple, r.Width, r.Height))
	}
	if r.Width < MinSide || r.Height < MinSide || r.Width > MaxSide || r.Height > MaxSide {
		errs = append(errs, fmt.Errorf("width and height must be in [%d, %d], got %dx%d", MinSide, MaxSide, r.Width, r.Height))
	}
	if r.Width*r.Height > MaxPixels {
		errs = append(errs, fmt.Errorf("at most %d pixels, got %d", MaxPixels, r.Width*r.Height))
	}
	if r.Steps < 1 || r.Steps > MaxSteps {
		errs = append(errs, fmt.Errorf("steps must be in [1, %d], got %d", MaxSteps, r.Steps))
	}
	if r.NumImages < 1 || r.NumImages > MaxImages {
		errs = append(errs, fmt.Errorf("num_images must be in [1, %d], got %d", MaxImages, r.NumImages))
	}
	if !(r.GuidanceScale >= 0) { // also NaN
		errs = append(errs, fmt.Errorf("guidance_scale must be >= 0, got %g", r.GuidanceScale))
	}
	if _, err := r.OutputFormat.Codec(); err != nil {
		errs = append(errs, err)
	}
	if r.InitialNoise != nil {
		h, w := r.LatentGrid()
		if want := r.NumImages * sampler.PackedChannels * h * w; len(r.InitialNoise) != want {
			errs = append(errs, fmt.Errorf("initial noise has %d values, want %d", len(r.InitialNoise), want))
		}
	}
	if len(r.LoRAs) > MaxLoRAs {
		errs = append(errs, fmt.Errorf("loras: at most %d, got %d", MaxLoRAs, len(r.LoRAs)))
	}
	for i, l := range r.LoRAs {
		if strings.TrimSpace(l.Path) == "" {
			errs = append(errs, fmt.Errorf("loras[%d].path: empty", i))
		}
		if err := lora.CheckScale(l.Scale); err != nil {
			errs = append(errs, fmt.Errorf("loras[%d].scale: %w", i, err))
		}
	}
	// Inactive CNS settings are ignored by the sampler, so only active ones
	// must be runnable.
	if r.CNS.Active() {
		if err := cns.Validate(r.CNS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// LoRA is one adapter of a request: Path names the file (an http(s) URL,
// this server's /files/ URL, a data: URI or a name in the server's LoRA
// directory) and Scale multiplies its update (fal's loras[].scale).
type LoRA struct {
	Path  string
	Scale float64
}

// Image is one encoded output image.
type Image struct {
	Data        []byte
	ContentType string
	Extension   string // file extension without the dot: png, jpg, webp
	Width       int
	Height      int
	// NSFW is true when the safety checker flagged the image. The engine
	// has already replaced the pixels (black image) in that case.
	NSFW bool
}

// Timings are the wall-clock durations of each phase of one request.
type Timings struct {
	TextEncoding time.Duration
	Denoising    time.Duration
	Decoding     time.Duration
	Safety       time.Duration
	Encoding     time.Duration
	Total        time.Duration

	// ReferenceEncoding covers preparing and VAE-encoding the reference
	// images (near zero when their latents are cached).
	ReferenceEncoding time.Duration
}

// Result is what a finished generation returns.
type Result struct {
	Images  []Image
	Seed    int64
	Timings Timings
}

// Progress is reported once per finished denoising step.
type Progress struct {
	Step       int // 1-based number of finished steps
	TotalSteps int
	StepTime   time.Duration
	// Preview is a small JPEG approximation of the current image, present
	// only on steps selected by Request.PreviewEvery.
	Preview *Image
}

// ProgressFunc receives progress reports. It is called synchronously from
// the generation loop and must return quickly.
type ProgressFunc func(Progress)

// Info describes the loaded model, for logs, metrics and health checks.
type Info struct {
	Model     string // model name from the manifest
	Variant   string // e.g. "tiny", "klein-4b-base"
	Provider  string // cpu, cuda, tensorrt
	Precision string // fp32, fp16, bf16
}

// Engine generates images. Implementations must be safe for concurrent use;
// they may serialise work internally.
type Engine interface {
	Generate(ctx context.Context, req Request, progress ProgressFunc) (*Result, error)
	Info() Info
	Close() error
}
