package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/openai"
	"github.com/kleinserve/kleinserve/internal/playground"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// mountOpenAI serves OpenAI's Images API under /v1 on the same queue,
// keys and metrics as fal's routes, and the playground at "/". Both are
// outside fal's auth group: the OpenAI handler authorizes itself,
// answering in OpenAI's error envelope, and the page and its config are
// public (the page sends the key the user gives it).
func (s *Server) mountOpenAI(r chi.Router) {
	r.Handle("/v1/*", openai.NewHandler(openaiBackend{s}, openai.Options{
		MaxBodyBytes: s.opts.MaxBodyBytes, KeepAlive: s.opts.KeepAlive, Logger: s.log,
	}))
	page := playground.Handler(playground.Config{AuthRequired: len(s.keys) > 0, Served: []string{wire.EndpointID}})
	// GET only: other methods get fal's JSON 405 from the router.
	r.Get("/", page.ServeHTTP)
	r.Get("/playground/*", page.ServeHTTP)
}

// openaiBackend implements openai.Backend with the helpers fal's routes use.
type openaiBackend struct{ s *Server }

func (b openaiBackend) Authorize(key string) error {
	if len(b.s.keys) == 0 {
		return nil
	}
	match := 0
	for _, k := range b.s.keys {
		match |= subtle.ConstantTimeCompare([]byte(key), k)
	}
	if match != 1 {
		return openai.ErrUnauthorized
	}
	return nil
}

// Submit validates and queues like decodeSubmission and enqueue, as an
// ephemeral job: its client waits on the connection.
func (b openaiBackend) Submit(ctx context.Context, sub openai.Submission) (openai.Ticket, error) {
	if sub.EndpointID != wire.EndpointID {
		return openai.Ticket{}, openai.ErrEndpointUnavailable
	}
	params, err := wire.ParseInput(sub.Input)
	if err == nil {
		if e := b.s.currentEngine(); e != nil {
			err = checkEngineLimits(e.Info(), params.Size)
		}
	}
	if err != nil {
		return openai.Ticket{}, b.falError(err)
	}
	if params.Seed == nil {
		seed := b.s.opts.NewSeed()
		params.Seed = &seed
	}
	p := jobPayload{Input: params}
	id := uuid.NewString()
	t := openai.Ticket{RequestID: id}
	if sub.Progress {
		p.PreviewEvery = b.s.opts.PreviewEvery
		t.Progress, t.Release = b.subscribe(id)
	}
	payload, err := json.Marshal(p)
	if err == nil {
		_, err = b.s.queue.Submit(ctx, queue.SubmitRequest{ID: id, Endpoint: sub.EndpointID, Payload: payload, Ephemeral: true})
	}
	if err != nil {
		if t.Release != nil {
			t.Release()
		}
		return openai.Ticket{}, b.falError(err)
	}
	return t, nil
}

// subscribe forwards the live hub's progress of a job, converted. The
// forwarder stops when release is called.
func (b openaiBackend) subscribe(id string) (<-chan openai.Progress, func()) {
	in, unsubscribe := b.s.live.subscribe(id)
	out := make(chan openai.Progress, liveBuffer)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case p := <-in:
				select {
				case out <- toOpenAIProgress(p):
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
	}
}

func toOpenAIProgress(p engine.Progress) openai.Progress {
	out := openai.Progress{Step: p.Step, TotalSteps: p.TotalSteps}
	if p.Preview != nil {
		out.Preview = p.Preview.Data
	}
	return out
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
