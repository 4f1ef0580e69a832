package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// Process is the queue's Processor: it runs one job on the engine, stores
// the images (or inlines them for sync_mode) and returns the fal output.
func (s *Server) Process(ctx context.Context, job *queue.Job, logf queue.LogFunc) (json.RawMessage, error) {
	eng := s.currentEngine()
	if eng == nil {
		return nil, errNotReady
	}
	var p jobPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		return nil, fmt.Errorf("decode job payload: %w", err)
	}
	req := engineRequest(p)
	s.metrics.ObserveQueueWait(job.StartedAt.Sub(job.SubmittedAt))
	logf(wire.LogLevelInfo, fmt.Sprintf("Generating %d image(s) of %dx%d with %d steps, guidance %g, seed %d",
		req.NumImages, req.Width, req.Height, req.Steps, req.GuidanceScale, req.Seed))

	res, err := eng.Generate(ctx, req, func(pr engine.Progress) {
		s.metrics.ObserveStep(pr.StepTime)
		logf(wire.LogLevelInfo, fmt.Sprintf("Step %d/%d", pr.Step, pr.TotalSteps))
		s.live.publish(job.ID, pr)
	})
	if err != nil {
		if errors.Is(err, engine.ErrCanceled) || ctx.Err() != nil {
			s.metrics.FinishRequest(metrics.OutcomeCanceled)
		} else {
			s.metrics.FinishRequest(metrics.OutcomeError)
		}
		return nil, fmt.Errorf("generate: %w", err)
	}
	if res == nil || len(res.Images) != req.NumImages {
		s.metrics.FinishRequest(metrics.OutcomeError)
		return nil, fmt.Errorf("generate: engine returned %s for %d requested image(s)", describeResult(res), req.NumImages)
	}
	out, err := s.buildOutput(ctx, p.Input, res)
	if err != nil {
		s.metrics.FinishRequest(metrics.OutcomeError)
		return nil, err
	}
	flagged := 0
	for _, nsfw := range out.HasNSFWConcepts {
		if nsfw {
			flagged++
		}
	}
	s.metrics.ObserveInference(res.Timings.Total)
	s.metrics.AddImages(len(out.Images), flagged)
	s.metrics.FinishRequest(metrics.OutcomeOK)
	logf(wire.LogLevelInfo, fmt.Sprintf("Generated %d image(s) in %.2fs", len(out.Images), res.Timings.Total.Seconds()))
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return raw, nil
}

// buildOutput turns an engine result into fal's output, storing each image
// (or, with sync_mode, inlining it as a data URI and storing nothing).
func (s *Server) buildOutput(ctx context.Context, in wire.Params, res *engine.Result) (*wire.Output, error) {
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
		w := wire.Image{ContentType: img.ContentType, FileSize: int64(len(img.Data)), Width: img.Width, Height: img.Height}
		if in.SyncMode {
			w.URL = dataURI(img.ContentType, img.Data)
			w.FileName = fmt.Sprintf("image_%d.%s", i, img.Extension)
		} else {
			f, err := s.store.Save(ctx, img.Data, img.ContentType, img.Extension)
			if err != nil {
				return nil, fmt.Errorf("store image %d: %w", i, err)
			}
			w.URL, w.FileName = f.URL, f.FileName
		}
		out.Images = append(out.Images, w)
		out.HasNSFWConcepts = append(out.HasNSFWConcepts, img.NSFW)
	}
	return out, nil
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

// liveHub forwards engine progress of running jobs to /stream handlers.
// It is in memory only: progress is not part of the durable state.
type liveHub struct {
	mu   sync.Mutex
	subs map[string]chan engine.Progress
}

// liveBuffer bounds queued progress events per stream; when a client reads
// too slowly, further events are dropped rather than blocking the engine.
const liveBuffer = 64

func (h *liveHub) subscribe(id string) (<-chan engine.Progress, func()) {
	ch := make(chan engine.Progress, liveBuffer)
	h.mu.Lock()
	h.subs[id] = ch
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

// publish never blocks: the engine calls it from its denoising loop.
func (h *liveHub) publish(id string, p engine.Progress) {
	h.mu.Lock()
	ch := h.subs[id]
	h.mu.Unlock()
	if ch == nil {
		return
	}
	if p.Preview != nil {
		// The engine may reuse its buffers after the callback returns.
		prev := *p.Preview
		prev.Data = bytes.Clone(p.Preview.Data)
		p.Preview = &prev
	}
	select {
	case ch <- p:
	default:
	}
}
