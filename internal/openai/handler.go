package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/sse"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// Options configures a Handler.
type Options struct {
	// MaxBodyBytes bounds JSON bodies (default 16 MiB).
	MaxBodyBytes int64
	// MaxFormBytes bounds multipart edit bodies, images included
	// (default 64 MiB).
	MaxFormBytes int64
	// KeepAlive is the SSE keep-alive comment interval (default 10s).
	KeepAlive time.Duration
	// Models are the models served (default: the 4B Base).
	Models Models
	// Now is the clock of "created" fields (default time.Now).
	Now    func() time.Time
	Logger zerolog.Logger
}

// Handler serves the /v1 routes.
type Handler struct {
	backend Backend
	opts    Options
	mux     *http.ServeMux
	// started is reported as the model's "created" time.
	started int64
}

// NewHandler builds the /v1 handler on a backend.
func NewHandler(b Backend, opts Options) *Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.MaxFormBytes <= 0 {
		opts.MaxFormBytes = 64 << 20
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 10 * time.Second
	}
	if len(opts.Models) == 0 {
		opts.Models = Models{wire.Base4B.ID}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{backend: b, opts: opts, mux: http.NewServeMux(), started: opts.Now().Unix()}
	h.mux.HandleFunc("POST /v1/images/generations", h.generations)
	h.mux.HandleFunc("POST /v1/images/edits", h.edits)
	h.mux.HandleFunc("GET /v1/models", h.models)
	h.mux.HandleFunc("GET /v1/models/{id...}", h.model)
	for _, path := range []string{"/v1/images/generations", "/v1/images/edits", "/v1/models"} {
		h.mux.HandleFunc(path, h.methodNotAllowed)
	}
	h.mux.HandleFunc("/", h.notFound)
	return h
}

// ServeHTTP authorizes every request, as OpenAI's API does, then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.backend.Authorize(bearer(r)); err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			h.opts.Logger.Error().Err(err).Msg("openai: authorize")
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		h.writeError(w, r, errUnauthorized())
		return
	}
	h.mux.ServeHTTP(w, r)
}

// bearer is the credential of "Authorization: Bearer <key>" (fal's "Key"
// scheme is accepted too, as on fal's routes).
func bearer(r *http.Request) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Key")) {
		return ""
	}
	return strings.TrimSpace(cred)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound,
		Message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)})
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	h.writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Type: TypeInvalidRequest,
		Message: fmt.Sprintf("Method %s is not allowed on %s", r.Method, r.URL.Path)})
}

// model is OpenAI's model object.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (h *Handler) modelObject(id string) model {
	return model{ID: id, Object: "model", Created: h.started, OwnedBy: "black-forest-labs"}
}

func (h *Handler) models(w http.ResponseWriter, r *http.Request) {
	data := make([]model, len(h.opts.Models))
	for i, id := range h.opts.Models {
		data[i] = h.modelObject(id)
	}
	h.writeJSON(w, http.StatusOK, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", data})
}

func (h *Handler) model(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); !slices.Contains(h.opts.Models, id) {
		h.writeError(w, r, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model",
			Code: CodeModelNotFound, Message: fmt.Sprintf("The model '%s' does not exist on this server.", id)})
		return
	}
	h.writeJSON(w, http.StatusOK, h.modelObject(r.PathValue("id")))
}

func (h *Handler) generations(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		h.writeError(w, r, bodyError(err))
		return
	}
	req, e := ParseGeneration(body, h.opts.Models)
	if e != nil {
		h.writeError(w, r, e)
		return
	}
	h.run(w, r, req)
}

func (h *Handler) edits(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		h.writeError(w, r, invalidParam("", CodeInvalidValue,
			"Send edits as multipart/form-data, with the images as 'image' (or 'image[]') file parts."))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxFormBytes)
	// Parts are kept in memory up to the body limit: no temporary files.
	if err := r.ParseMultipartForm(h.opts.MaxFormBytes); err != nil {
		h.writeError(w, r, bodyError(err))
		return
	}
	defer r.MultipartForm.RemoveAll()
	req, e := ParseEdit(r.MultipartForm, h.opts.Models)
	if e != nil {
		h.writeError(w, r, e)
		return
	}
	h.run(w, r, req)
}

func bodyError(err error) *Error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Type: TypeInvalidRequest, Code: "request_too_large",
			Message: fmt.Sprintf("The request body is larger than this server accepts (%d bytes).", tooLarge.Limit)}
	}
	return invalidParam("", CodeInvalidValue, "Could not read the request body: %s.", err.Error())
}

// run submits a translated request and answers with its result, or with
// its stream.
func (h *Handler) run(w http.ResponseWriter, r *http.Request, req Request) {
	ticket, err := h.backend.Submit(r.Context(), Submission{
		EndpointID: req.EndpointID, Input: req.Input, Key: bearer(r), Progress: req.Stream,
	})
	if err != nil {
		h.writeError(w, r, h.submitError(err, req))
		return
	}
	if ticket.Release != nil {
		defer ticket.Release()
	}
	w.Header().Set("X-Request-Id", ticket.RequestID)
	if req.Stream {
		h.stream(w, r, req, ticket)
		return
	}
	out, err := h.backend.Wait(r.Context(), ticket.RequestID)
	if err != nil {
		if r.Context().Err() == nil {
			h.opts.Logger.Error().Err(err).Str("request_id", ticket.RequestID).Msg("openai: wait")
			h.writeError(w, r, errInternal())
		}
		return
	}
	if out.Failure != nil {
		h.writeError(w, r, FromFal(out.Failure))
		return
	}
	resp, err := BuildResponse(req, out.Output, h.opts.Now().Unix())
	if err != nil {
		h.opts.Logger.Error().Err(err).Str("request_id", ticket.RequestID).Msg("openai: translate output")
		h.writeError(w, r, errInternal())
		return
	}
	h.writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) submitError(err error, req Request) *Error {
	var fe *FalError
	switch {
	case errors.As(err, &fe):
		return FromFal(fe)
	case errors.Is(err, ErrEndpointUnavailable):
		return errEndpointUnavailable(req.EndpointID)
	case errors.Is(err, ErrUnauthorized):
		return errUnauthorized()
	}
	h.opts.Logger.Error().Err(err).Str("endpoint", req.EndpointID).Msg("openai: submit")
	return errInternal()
}

type waitResult struct {
	out Outcome
	err error
}

// stream answers with Server-Sent Events: partial images from the
// previews, then one completed event per image, or an error event.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, req Request, ticket Ticket) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	done := make(chan waitResult, 1)
	go func() {
		out, err := h.backend.Wait(ctx, ticket.RequestID)
		done <- waitResult{out, err}
	}()
	// Leaving early (the client went away) cancels the request; the
	// waiter ends with it.
	finished := false
	defer func() {
		if !finished {
			cancel()
			<-done
		}
	}()

	stream, err := sse.Start(w)
	if err != nil {
		return
	}
	keepAlive := time.NewTicker(h.opts.KeepAlive)
	defer keepAlive.Stop()
	sched := partialSchedule{want: req.PartialImages}
	partial := func(p Progress) error {
		if len(p.Preview) == 0 || !sched.take(p.Step, p.TotalSteps) {
			return nil
		}
		ev := PartialEvent(req, sched.sent-1, p.Preview, h.opts.Now().Unix())
		return stream.Event(ev.Type, ev)
	}
	for {
		select {
		case p := <-ticket.Progress:
			if partial(p) != nil {
				return
			}
		case <-keepAlive.C:
			if stream.KeepAlive() != nil {
				return
			}
		case res := <-done:
			finished = true
			// Previews buffered before the end still go first.
			for drained := false; !drained; {
				select {
				case p := <-ticket.Progress:
					if partial(p) != nil {
						return
					}
				default:
					drained = true
				}
			}
			h.finishStream(stream, req, ticket.RequestID, res)
			return
		}
	}
}

func (h *Handler) finishStream(stream *sse.Writer, req Request, id string, res waitResult) {
	fail := func(e *Error) { _ = stream.Event(EventError, errorEvent{Type: EventError, Error: e.object()}) }
	switch {
	case res.err != nil:
		h.opts.Logger.Error().Err(res.err).Str("request_id", id).Msg("openai: wait")
		fail(errInternal())
	case res.out.Failure != nil:
		fail(FromFal(res.out.Failure))
	default:
		events, err := CompletedEvents(req, res.out.Output, h.opts.Now().Unix())
		if err != nil {
			h.opts.Logger.Error().Err(err).Str("request_id", id).Msg("openai: translate output")
			fail(errInternal())
			return
		}
		for _, ev := range events {
			if stream.Event(ev.Type, ev) != nil {
				return
			}
		}
	}
}

// errorEvent is the data of an "error" event: the clients raise APIError
// with error.message when a streamed event carries "error".
type errorEvent struct {
	Type  string      `json:"type"`
	Error errorObject `json:"error"`
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	if e.RetryAfter != "" {
		w.Header().Set("Retry-After", e.RetryAfter)
	}
	if e.Status >= 500 {
		h.opts.Logger.Warn().Int("status", e.Status).Str("path", r.URL.Path).Str("message", e.Message).Msg("openai: error answer")
	}
	h.writeJSON(w, e.Status, e)
}

func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		h.opts.Logger.Error().Err(err).Msg("openai: encode response")
		status = http.StatusInternalServerError
		raw, _ = json.Marshal(errInternal())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}
