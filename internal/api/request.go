package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
	"github.com/kleinserve/kleinserve/internal/worker"
)

// readBody reads a request body under the configured size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		return nil, bodyError(err)
	}
	return body, nil
}

// submission is a decoded generation request, ready to queue.
type submission struct {
	payload       worker.Payload
	priority      queue.Priority
	startDeadline time.Time
	webhookURL    string
}

// decodeSubmission reads and validates everything a generation request
// carries: body, fal_webhook, x-fal-request-timeout, x-fal-queue-priority.
// The body is parsed as JSON whatever the Content-Type says (curl examples
// omit it).
func (s *Server) decodeSubmission(w http.ResponseWriter, r *http.Request, ep wire.Endpoint) (submission, error) {
	var sub submission
	body, err := s.readBody(w, r)
	if err != nil {
		return sub, err
	}
	if sub.payload, err = s.preparePayload(ep, body); err != nil {
		return sub, err
	}

	if hook := r.URL.Query().Get("fal_webhook"); hook != "" {
		u, err := url.Parse(hook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return sub, wire.NewValidationError([]any{"query", "fal_webhook"},
				"Input should be an absolute http or https URL", "url_parsing")
		}
		if s.opts.CheckURL != nil {
			if err := s.opts.CheckURL(r.Context(), hook); err != nil {
				msg := "The webhook URL is refused"
				var ge *netguard.Error
				if errors.As(err, &ge) {
					msg = ge.Reason()
				}
				return sub, wire.NewValidationError([]any{"query", "fal_webhook"}, msg, "url_refused")
			}
		}
		sub.webhookURL = hook
	}
	if v := strings.TrimSpace(r.Header.Get("X-Fal-Request-Timeout")); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 || secs > 7*24*3600 {
			return sub, wire.NewValidationError([]any{"header", "x-fal-request-timeout"},
				"Input should be a number of seconds greater than 0 and at most 604800", "float_parsing")
		}
		sub.startDeadline = time.Now().Add(time.Duration(secs * float64(time.Second)))
	}
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Fal-Queue-Priority")), "low") {
		sub.priority = queue.PriorityLow
	}
	return sub, nil
}

// preparePayload validates an endpoint's input, admits it and picks its
// seed: everything a job needs but its id, for every API that queues work.
func (s *Server) preparePayload(ep wire.Endpoint, body []byte) (worker.Payload, error) {
	params, err := ep.ParseInput(body)
	if err != nil {
		return worker.Payload{}, err
	}
	if s.opts.Admit != nil {
		if err := s.opts.Admit(params); err != nil {
			return worker.Payload{}, err
		}
	}
	if params.Seed == nil {
		seed := s.opts.NewSeed()
		params.Seed = &seed
	}
	return worker.Payload{Input: params}, nil
}

// enqueue submits a decoded request as a job with the given id.
func (s *Server) enqueue(ctx context.Context, id string, sub submission, ephemeral bool) (*queue.Job, error) {
	payload, err := worker.EncodePayload(sub.payload)
	if err != nil {
		return nil, err
	}
	return s.queue.Submit(ctx, queue.SubmitRequest{
		Owner:         ownerOf(ctx),
		ID:            id,
		Endpoint:      sub.payload.Input.Endpoint,
		Payload:       payload,
		Priority:      sub.priority,
		StartDeadline: sub.startDeadline,
		WebhookURL:    sub.webhookURL,
		Ephemeral:     ephemeral,
	})
}

// requestURLs are the absolute queue URLs of a request on this server.
func (s *Server) requestURLs(id string) wire.RequestURLs {
	base := s.opts.PublicURL + "/queue/" + wire.AppID + "/requests/" + id
	return wire.RequestURLs{ResponseURL: base, StatusURL: base + "/status", CancelURL: base + "/cancel"}
}

// truthy accepts the logs flag as JS (1) and Python (true) send it.
func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// bodyError classifies a failed body read: too large, too slow, or broken
// (truncated, bad chunked encoding, client gone), all the client's doing.
func bodyError(err error) error {
	var maxBytes *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &maxBytes):
		return fmt.Errorf("read body: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	return fmt.Errorf("%w: %w", errBadBody, err)
}
