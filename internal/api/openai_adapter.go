package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/kleinserve/kleinserve/internal/openai"
	"github.com/kleinserve/kleinserve/internal/playground"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// mountOpenAI serves OpenAI's Images API under /v1 on the same queue,
// keys and metrics as fal's routes, and the playground at "/". Both are
// outside fal's auth group: the OpenAI handler authorizes itself,
// answering in OpenAI's error envelope, and the page and its config are
// public (the page sends the key the user gives it).
func (s *Server) mountOpenAI(r chi.Router) {
	var models openai.Models
	for _, m := range s.opts.Catalog.Models() {
		models = append(models, m.ID)
	}
	r.Handle("/v1/*", openai.NewHandler(openaiBackend{s}, openai.Options{
		MaxBodyBytes: s.opts.MaxBodyBytes, KeepAlive: s.opts.KeepAlive, Logger: s.log, Models: models,
	}))
	page := playground.Handler(playground.Config{AuthRequired: len(s.keys) > 0, Catalog: s.opts.Catalog})
	// GET only: other methods get fal's JSON 405 from the router.
	r.Get("/", page.ServeHTTP)
	r.Get("/playground/*", page.ServeHTTP)
}

// openaiBackend implements openai.Backend with the helpers fal's routes use.
type openaiBackend struct{ s *Server }

func (b openaiBackend) Authorize(key string) error {
	if !b.s.validKey(key) {
		return openai.ErrUnauthorized
	}
	return nil
}

// Submit validates and queues as fal's routes do, as an ephemeral job: its
// client waits on the connection.
func (b openaiBackend) Submit(ctx context.Context, sub openai.Submission) (openai.Ticket, error) {
	ep, ok := b.s.opts.Catalog.Lookup(sub.EndpointID)
	if !ok {
		return openai.Ticket{}, openai.ErrEndpointUnavailable
	}
	if len(b.s.keys) > 0 {
		ctx = context.WithValue(ctx, ownerKey{}, keyFingerprint(sub.Key))
	}
	payload, err := b.s.preparePayload(ep, sub.Input)
	if err != nil {
		return openai.Ticket{}, b.falError(err)
	}
	id := uuid.NewString()
	t := openai.Ticket{RequestID: id}
	if sub.Progress {
		payload.PreviewEvery = b.s.opts.PreviewEvery
		if t.Progress, t.Release, err = b.subscribe(ctx, id); err != nil {
			return openai.Ticket{}, b.falError(err)
		}
	}
	if _, err := b.s.enqueue(ctx, id, submission{payload: payload}, true); err != nil {
		if t.Release != nil {
			t.Release()
		}
		return openai.Ticket{}, b.falError(err)
	}
	return t, nil
}

// subscribe forwards a job's live progress events, converted. The
// forwarder stops when release is called.
func (b openaiBackend) subscribe(ctx context.Context, id string) (<-chan openai.Progress, func(), error) {
	in, unsubscribe, err := b.s.opts.Events.Subscribe(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan openai.Progress, cap(in))
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case raw, open := <-in:
				if !open {
					<-stop
					return
				}
				p, ok := toOpenAIProgress(raw)
				if !ok {
					continue
				}
				select {
				case out <- p:
				default: // a slow reader loses events, as on /stream
				}
			case <-stop:
				return
			}
		}
	}()
	return out, func() {
		unsubscribe()
		close(stop)
		<-stopped
	}, nil
}

// toOpenAIProgress reads a worker's progress event (a fal stream event).
func toOpenAIProgress(raw []byte) (openai.Progress, bool) {
	var ev wire.StreamProgress
	if json.Unmarshal(raw, &ev) != nil {
		return openai.Progress{}, false
	}
	out := openai.Progress{Step: ev.Step, TotalSteps: ev.NumInferenceSteps}
	if len(ev.Images) > 0 {
		if _, b64, ok := strings.Cut(ev.Images[0].URL, ";base64,"); ok {
			out.Preview, _ = base64.StdEncoding.DecodeString(b64)
		}
	}
	return out, true
}

func (b openaiBackend) Wait(ctx context.Context, requestID string) (openai.Outcome, error) {
	job, err := b.s.waitCompleted(ctx, requestID)
	if err != nil {
		if ctx.Err() != nil {
			return openai.Outcome{}, err
		}
		return openai.Outcome{Failure: b.falError(err)}, nil
	}
	if f := job.Failure; f != nil {
		return openai.Outcome{Failure: &openai.FalError{Status: f.HTTPStatus, Body: f.Body, RetryAfter: f.Headers["Retry-After"]}}, nil
	}
	return openai.Outcome{Output: job.Result}, nil
}

// falError is fal's answer to err (classify), for translation.
func (b openaiBackend) falError(err error) *openai.FalError {
	e := classify(err)
	if e.status >= 500 {
		b.s.log.Error().Err(err).Int("status", e.status).Msg("openai request failed")
	}
	body, mErr := json.Marshal(e.body)
	if mErr != nil {
		body = []byte(fmt.Sprintf(`{"detail":%q}`, e.message))
	}
	return &openai.FalError{Status: e.status, Body: body, RetryAfter: e.header["Retry-After"]}
}
