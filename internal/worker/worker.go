// Package worker runs queued generation jobs: it decodes a job's payload,
// runs the engine, stores the images (or inlines them for sync_mode), builds
// the fal output and publishes step progress and previews for streams. It
// is the queue's Processor in every process that generates (-role all or
// worker) and knows nothing of HTTP.
package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// ErrNotReady is returned while no engine is installed.
var ErrNotReady = errors.New("model is not loaded yet")

// Publisher delivers a job's live events (step progress, previews) to
// whoever streams that job, in this process or another.
type Publisher interface {
	Publish(ctx context.Context, id string, event []byte)
}

// ImageLoader reads an edit's reference images (imageinput.Loader: data:
// URIs, this server's files, guarded http(s) fetches).
type ImageLoader interface {
	LoadAll(ctx context.Context, refs []string) ([]*imageinput.Image, error)
}

// Options configures a Worker.
type Options struct {
	// Catalog is the set of endpoints jobs may name (default: the 4B Base's).
	Catalog *wire.Catalog
	Storage storage.Store
	Metrics *metrics.Metrics
	Events  Publisher
	Images  ImageLoader
	Logger  zerolog.Logger
}

// Worker processes jobs on the engines of the catalog's models.
type Worker struct {
	opts    Options
	engines atomic.Pointer[map[string]engine.Engine] // by wire.Model ID; replaced whole
	mu      sync.Mutex                               // serialises SetEngine
}

// New builds a Worker; it processes a model's jobs once SetEngine installs
// that model's engine.
func New(opts Options) *Worker {
	if opts.Catalog == nil {
		opts.Catalog = wire.DefaultCatalog()
	}
	return &Worker{opts: opts}
}

// SetEngine installs the loaded engine of one model (a wire.Model ID).
func (w *Worker) SetEngine(model string, e engine.Engine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[string]engine.Engine{}
	if cur := w.engines.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	next[model] = e
	w.engines.Store(&next)
	info := e.Info()
	w.opts.Metrics.SetModelInfo(info.Model, info.Variant, info.Provider, info.Precision)
}

// Engine returns a model's engine, or nil while it loads.
func (w *Worker) Engine(model string) engine.Engine {
	if cur := w.engines.Load(); cur != nil {
		return (*cur)[model]
	}
	return nil
}

// Ready reports whether every model of the catalog has its engine.
func (w *Worker) Ready() bool {
	for _, m := range w.opts.Catalog.Models() {
		if w.Engine(m.ID) == nil {
			return false
		}
	}
	return true
}

// Infos describes the loaded engines, by model.
func (w *Worker) Infos() map[string]engine.Info {
	out := map[string]engine.Info{}
	if cur := w.engines.Load(); cur != nil {
		for k, e := range *cur {
			out[k] = e.Info()
		}
	}
	return out
}

// Process is the queue's Processor: it runs one job and returns the fal
// output to store as the job's result.
func (w *Worker) Process(ctx context.Context, job *queue.Job, logf queue.LogFunc) (json.RawMessage, error) {
	p, err := DecodePayload(job.Payload, w.opts.Catalog)
	if err != nil {
		return nil, err
	}
	ep, _ := w.opts.Catalog.Lookup(p.Input.Endpoint)
	eng := w.Engine(ep.Model)
	if eng == nil {
		return nil, ErrNotReady
	}
	req := p.Input.Request()
	req.PreviewEvery = p.PreviewEvery
	m := w.opts.Metrics
	m.ObserveQueueWait(job.StartedAt.Sub(job.SubmittedAt))
	if len(p.Input.ImageURLs) > 0 {
		if req.References, err = LoadReferences(ctx, w.opts.Images, p.Input.ImageURLs); err != nil {
			m.FinishRequest(metrics.OutcomeError)
			return nil, err
		}
		logf(wire.LogLevelInfo, fmt.Sprintf("Loaded %d reference image(s)", len(req.References)))
	}
	size := fmt.Sprintf("%dx%d", req.Width, req.Height)
	if req.Width == 0 || req.Height == 0 {
		size = "the first reference's size"
	}
	logf(wire.LogLevelInfo, fmt.Sprintf("Generating %d image(s) of %s with %d steps, guidance %g, seed %d",
		req.NumImages, size, req.Steps, req.GuidanceScale, req.Seed))

	res, err := eng.Generate(ctx, req, func(pr engine.Progress) {
		m.ObserveStep(pr.StepTime)
		logf(wire.LogLevelInfo, fmt.Sprintf("Step %d/%d", pr.Step, pr.TotalSteps))
		w.publish(ctx, job.ID, pr)
	})
	if err != nil {
		if errors.Is(err, engine.ErrCanceled) || ctx.Err() != nil {
			m.FinishRequest(metrics.OutcomeCanceled)
		} else {
			m.FinishRequest(metrics.OutcomeError)
			// The client sees a fixed message; the cause is here.
			w.opts.Logger.Error().Err(err).Str("request_id", job.ID).Msg("generation failed")
		}
		return nil, fmt.Errorf("generate: %w", err)
	}
	if res == nil || len(res.Images) != req.NumImages {
		m.FinishRequest(metrics.OutcomeError)
		return nil, fmt.Errorf("generate: engine returned %s for %d requested image(s)", describeResult(res), req.NumImages)
	}
	out, err := w.buildOutput(ctx, p.Input, res)
	if err != nil {
		m.FinishRequest(metrics.OutcomeError)
		w.opts.Logger.Error().Err(err).Str("request_id", job.ID).Msg("storing the output failed")
		return nil, err
	}
	flagged := 0
	for _, nsfw := range out.HasNSFWConcepts {
		if nsfw {
			flagged++
		}
	}
	m.ObserveInference(res.Timings.Total)
	m.AddImages(len(out.Images), flagged)
	m.FinishRequest(metrics.OutcomeOK)
	logf(wire.LogLevelInfo, fmt.Sprintf("Generated %d image(s) in %.2fs", len(out.Images), res.Timings.Total.Seconds()))
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return raw, nil
}

// publish sends one step's progress event. The engine may reuse the
// preview's buffer after the callback returns; the event is encoded before.
func (w *Worker) publish(ctx context.Context, id string, pr engine.Progress) {
	if w.opts.Events == nil {
		return
	}
	raw, err := json.Marshal(ProgressEvent(pr))
	if err != nil {
		w.opts.Logger.Error().Err(err).Msg("encode progress event")
		return
	}
	w.opts.Events.Publish(ctx, id, raw)
}

// ProgressEvent is a stream's partial event for one step: output-shaped, so
// that consumers reading images[0] on every event work, with the step
// counters alongside; images only on preview steps.
func ProgressEvent(p engine.Progress) wire.StreamProgress {
	ev := wire.StreamProgress{
		Step:              p.Step,
		NumInferenceSteps: p.TotalSteps,
		Message:           fmt.Sprintf("Step %d/%d", p.Step, p.TotalSteps),
		Partial:           true,
	}
	if p.TotalSteps > 0 {
		ev.Progress = float64(p.Step) / float64(p.TotalSteps)
	}
	if img := p.Preview; img != nil && len(img.Data) > 0 {
		ct := img.ContentType
		if ct == "" {
			ct = "image/jpeg"
		}
		ev.Images = []wire.Image{{URL: dataURI(ct, img.Data), ContentType: ct, Width: img.Width, Height: img.Height}}
	}
	return ev
}

// buildOutput turns an engine result into fal's output, storing each image
// (or, with sync_mode, inlining it as a data URI and storing nothing).
func (w *Worker) buildOutput(ctx context.Context, in wire.Params, res *engine.Result) (*wire.Output, error) {
	out := &wire.Output{
		Images:          make([]wire.Image, 0, len(res.Images)),
		HasNSFWConcepts: make([]bool, 0, len(res.Images)),
		Seed:            res.Seed,
		Prompt:          in.Prompt,
		Timings: wire.Timings{
			Inference:    wire.Seconds(res.Timings.Total),
			TextEncoding: wire.Seconds(res.Timings.TextEncoding),
			Denoising:    wire.Seconds(res.Timings.Denoising),
			Decoding:     wire.Seconds(res.Timings.Decoding),
			SafetyCheck:  wire.Seconds(res.Timings.Safety),
			Encoding:     wire.Seconds(res.Timings.Encoding),
		},
	}
	for i, img := range res.Images {
		wi := wire.Image{ContentType: img.ContentType, FileSize: int64(len(img.Data)), Width: img.Width, Height: img.Height}
		if in.SyncMode {
			wi.URL = dataURI(img.ContentType, img.Data)
			wi.FileName = fmt.Sprintf("image_%d.%s", i, img.Extension)
		} else {
			f, err := w.opts.Storage.Save(ctx, img.Data, img.ContentType, img.Extension)
			if err != nil {
				return nil, fmt.Errorf("store image %d: %w", i, err)
			}
			wi.URL, wi.FileName = f.URL, f.FileName
		}
		out.Images = append(out.Images, wi)
		out.HasNSFWConcepts = append(out.HasNSFWConcepts, img.NSFW)
	}
	return out, nil
}

// LoadReferences loads an edit's images and checks them as the reference
// pipeline does. A bad one fails the request with fal's 422 naming
// image_urls[i] and the reason.
func LoadReferences(ctx context.Context, loader ImageLoader, urls []string) ([]engine.ReferenceImage, error) {
	if loader == nil {
		return nil, errors.New("worker: no image loader configured")
	}
	imgs, err := loader.LoadAll(ctx, urls)
	if err != nil {
		var ie *imageinput.Error
		if errors.As(err, &ie) {
			return nil, wire.NewValidationError([]any{"body", "image_urls", ie.Index}, ie.Reason(), imageErrorType(ie))
		}
		return nil, fmt.Errorf("load reference images: %w", err)
	}
	refs := make([]engine.ReferenceImage, len(imgs))
	for i, img := range imgs {
		if err := imageprep.CheckReference(img.Width, img.Height); err != nil {
			return nil, wire.NewValidationError([]any{"body", "image_urls", i},
				strings.TrimPrefix(err.Error(), imageprep.ErrReference.Error()+": "), "image_size")
		}
		refs[i] = engine.ReferenceImage{Pix: img.Pix, Width: img.Width, Height: img.Height}
	}
	return refs, nil
}

// imageErrorType is the 422 detail type of a failed reference image.
func imageErrorType(e *imageinput.Error) string {
	for _, k := range []struct {
		kind error
		typ  string
	}{
		{imageinput.ErrRefused, "url_refused"},
		{imageinput.ErrUnreachable, "image_unreachable"},
		{imageinput.ErrTimeout, "image_timeout"},
		{imageinput.ErrTooLarge, "image_too_large"},
		{imageinput.ErrTooManyPixels, "image_too_large"},
		{imageinput.ErrUnsupported, "image_unsupported"},
		{imageinput.ErrBadDataURI, "url_parsing"},
		{imageinput.ErrBadURL, "url_parsing"},
	} {
		if errors.Is(e, k.kind) {
			return k.typ
		}
	}
	return "image_invalid"
}

func describeResult(res *engine.Result) string {
	if res == nil {
		return "no result"
	}
	return fmt.Sprintf("%d image(s)", len(res.Images))
}

func dataURI(contentType string, data []byte) string {
	var b bytes.Buffer
	b.Grow(len(contentType) + 13 + base64.StdEncoding.EncodedLen(len(data)))
	b.WriteString("data:")
	b.WriteString(contentType)
	b.WriteString(";base64,")
	enc := base64.NewEncoder(base64.StdEncoding, &b)
	_, _ = enc.Write(data)
	_ = enc.Close()
	return b.String()
}
