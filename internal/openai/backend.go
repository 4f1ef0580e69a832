package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// Models are the models this API serves, named as GET /v1/models lists
// them: their fal text-to-image endpoint ids, so that both APIs call a model
// the same. The first is the default of a request without "model".
type Models []string

// Default is the model of a request that names none.
func (m Models) Default() string {
	if len(m) == 0 {
		return wire.Base4B.ID
	}
	return m[0]
}

func (m Models) list() string {
	q := make([]string, len(m))
	for i, id := range m {
		q[i] = "'" + id + "'"
	}
	return strings.Join(q, ", ")
}

// EditEndpoint is the fal endpoint that edits with a model: its /edit.
func EditEndpoint(model string) string { return model + "/edit" }

// Backend is what the handlers need from the server: the queue that fal's
// routes use, so that both APIs share keys, admission, limits and metrics.
type Backend interface {
	// Authorize checks the credential sent with a request ("" when none).
	// It returns ErrUnauthorized when the server requires a key and this
	// is not one of them.
	Authorize(key string) error
	// Submit validates a fal input for the endpoint and queues it. A
	// validation or admission failure is a *FalError carrying fal's
	// answer; an endpoint this server does not serve is
	// ErrEndpointUnavailable.
	Submit(ctx context.Context, s Submission) (Ticket, error)
	// Wait blocks until the request completes and returns its outcome. If
	// ctx ends first (the client left), the request is cancelled and
	// ctx's error returned.
	Wait(ctx context.Context, requestID string) (Outcome, error)
}

// Submission is one request for the queue.
type Submission struct {
	// EndpointID is the fal endpoint: a model's id or its EditEndpoint.
	EndpointID string
	// Input is the fal endpoint's input JSON.
	Input json.RawMessage
	// Key is the credential the request was authorized with.
	Key string
	// Progress asks for progress events with previews (streams only).
	Progress bool
}

// Ticket is a queued request.
type Ticket struct {
	RequestID string
	// Progress delivers the request's progress from its first step when the
	// submission asked for it; nil otherwise. It is not closed: readers stop
	// when Wait returns. Events a slow reader misses are dropped.
	Progress <-chan Progress
	// Release ends the progress subscription; nil when there is none.
	Release func()
}

// Progress is one finished denoising step.
type Progress struct {
	Step       int
	TotalSteps int
	// Preview is an encoded low-resolution image of the current estimate,
	// present only on the steps the server previews.
	Preview []byte
}

// Outcome is a completed request: exactly one of Output (the fal output
// JSON) and Failure is set.
type Outcome struct {
	Output  json.RawMessage
	Failure *FalError
}

// FalError is an answer of the fal API that is not a success: its HTTP
// status, its body ({"detail":…}) and its Retry-After header, if any.
type FalError struct {
	Status     int
	Body       json.RawMessage
	RetryAfter string
}

func (e *FalError) Error() string {
	return fmt.Sprintf("fal answered %d %s", e.Status, http.StatusText(e.Status))
}

// Errors a Backend returns besides *FalError.
var (
	ErrUnauthorized        = errors.New("openai: invalid or missing API key")
	ErrEndpointUnavailable = errors.New("openai: endpoint not served")
)
