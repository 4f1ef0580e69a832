// Package wire holds the fal.ai wire types of the fal-ai/flux-2/klein/4b/base
// endpoint and its queue protocol: the input and its validation, the output,
// queue status bodies, log entries, webhook and upload bodies, streaming
// events and error envelopes.
//
// Its policy (ranges, defaults, enum values) is built from the engine's
// vocabulary (internal/engine) and the CNS sampler's (internal/cns), and
// Params.Request is the one mapping from the protocol to an engine request.
package wire

import "time"

// Image is one output file (fal's ImageFile).
type Image struct {
	URL         string `json:"url"`
	ContentType string `json:"content_type,omitempty"`
	FileName    string `json:"file_name,omitempty"`
	FileSize    int64  `json:"file_size,omitempty"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
}

// Timings are per-phase durations in seconds. Inference is the whole
// generation, as fal reports it; the other fields break it down.
type Timings struct {
	Inference    float64 `json:"inference"`
	TextEncoding float64 `json:"text_encoding"`
	Denoising    float64 `json:"denoising"`
	Decoding     float64 `json:"decoding"`
	SafetyCheck  float64 `json:"safety_check"`
	Encoding     float64 `json:"encoding"`
}

// Output is the endpoint's result (fal's Flux2Output).
type Output struct {
	Images          []Image `json:"images"`
	Timings         Timings `json:"timings"`
	Seed            int64   `json:"seed"`
	HasNSFWConcepts []bool  `json:"has_nsfw_concepts"`
	Prompt          string  `json:"prompt"`
}

// Seconds converts a duration to the float seconds fal uses on the wire.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// StreamProgress is a partial event of POST /{id}/stream (docs/fal-protocol.md §6):
// output-shaped so that consumers reading images[0] on every event work, with
// the step counters alongside. Images is present only on preview steps.
type StreamProgress struct {
	Images            []Image `json:"images,omitempty"`
	Step              int     `json:"step"`
	NumInferenceSteps int     `json:"num_inference_steps"`
	Progress          float64 `json:"progress"`
	Message           string  `json:"message"`
	Partial           bool    `json:"partial"`
}

// StreamError is the last event of a stream that failed after it started.
type StreamError struct {
	Error     string `json:"error"`
	ErrorType string `json:"error_type,omitempty"`
	Detail    any    `json:"detail,omitempty"`
}
