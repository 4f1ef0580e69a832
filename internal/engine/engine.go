// Package engine is the contract between the serving layers (HTTP API, queue
// workers, CLI) and the image-generation pipeline.
//
// It holds plain request/result types and the Engine interface only, so that
// the API and queue can be tested against a fake engine and the ONNX Runtime
// pipeline can be swapped for another implementation without touching them.
package engine

import (
	"context"
	"errors"
	"time"
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

// Output formats an engine must be able to encode.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
	FormatWebP = "webp"
)

// Acceleration levels (fal's AccelerationEnum).
const (
	AccelerationNone    = "none"
	AccelerationRegular = "regular"
	AccelerationHigh    = "high"
)

// CNS gamma sources (fal's CNSGammaSourceEnum).
const (
	GammaSourceMatrix        = "matrix"
	GammaSourceApproximation = "approximation"
)

// CNSParams are the Colored Noise Sampling knobs of the endpoint. CNS is
// active only when Enable is true and SChurn > 0.
type CNSParams struct {
	Enable            bool
	SChurn            float64
	GammaSource       string
	PowerGamma        float64
	GammaDivider      float64
	AlphaTiltStart    float64
	AlphaTiltEnd      float64
	AlphaUseFnorm     bool
	AlphaExpInterp    bool
	AlphaExpSharpness float64
	NumFreqBins       int
	EnergyScale       float64
}

// Active reports whether CNS changes the sampler at all.
func (c CNSParams) Active() bool { return c.Enable && c.SChurn > 0 }

// Request is a fully resolved generation request: every default applied,
// every value validated, the seed chosen.
type Request struct {
	Prompt         string
	NegativePrompt string
	GuidanceScale  float64
	Steps          int
	Width, Height  int
	NumImages      int
	// Seed of the first image; image k uses Seed+k so that each image of a
	// batch can be reproduced alone.
	Seed                int64
	Acceleration        string
	EnableSafetyChecker bool
	OutputFormat        string
	CNS                 CNSParams
	// PreviewEvery asks for a cheap latent preview in the progress callback
	// every N steps (0: no previews).
	PreviewEvery int
	// LoRAs are applied to the transformer, in order (none: the base model).
	LoRAs []LoRA
	// InitialNoise, when set, replaces the seeded initial latent noise. It
	// is laid out (NumImages, 128, Height/16, Width/16), float32. Used by
	// reference tests; never set from the HTTP API.
	InitialNoise []float32
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
	// Size limits the engine accepts (pixels, inclusive).
	MinSide, MaxSide, MaxPixels int
}

// Engine generates images. Implementations must be safe for concurrent use;
// they may serialise work internally.
type Engine interface {
	Generate(ctx context.Context, req Request, progress ProgressFunc) (*Result, error)
	Info() Info
	Close() error
}
