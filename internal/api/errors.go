package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/wire"
	"github.com/kleinserve/kleinserve/internal/worker"
)

// Errors of the HTTP layer itself; everything else comes from the queue,
// the engine, the storage or the wire decoder.
var (
	errUnauthorized     = errors.New("invalid or missing API key")
	errInProgress       = errors.New("request is still in progress")
	errRouteNotFound    = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed")
	errWorkerOnly       = errors.New("this is a worker process")
	errBodyTimeout      = errors.New("request body not received in time")
	errBadBody          = errors.New("request body could not be read")
)

// retryAfterSeconds is what a 429 asks clients to wait.
const retryAfterSeconds = 5

// errorBody is every non-validation error body: fal's {"detail","error_type"},
// plus "status" on the answers where fal's cancel uses it (404, 400
// ALREADY_COMPLETED), which other clients ignore.
type errorBody struct {
	Detail    string `json:"detail"`
	ErrorType string `json:"error_type,omitempty"`
	Status    string `json:"status,omitempty"`
}

// apiError is a fully resolved HTTP error answer.
type apiError struct {
	status int
	body   any
	header map[string]string
	// message and typ are the short forms used in status bodies, stream
	// error events and logs.
	message, typ string
}

// classify is THE mapping from errors to HTTP answers. Handlers, the stream
// writer and the queue's stored failures (DescribeFailure) all go through it,
// so a given error always yields the same status code and body.
func classify(err error) apiError {
	simple := func(status int, detail, typ string) apiError {
		return apiError{status: status, body: errorBody{Detail: detail, ErrorType: typ},
			header: map[string]string{"X-Fal-Error-Type": typ}, message: detail, typ: typ}
	}
	var verr *wire.ValidationError
	var inputErr *engine.InputError
	var maxBytes *http.MaxBytesError
	var storageInput *storage.InputError
	switch {
	case errors.As(err, &verr):
		return apiError{status: http.StatusUnprocessableEntity, body: verr, message: verr.Error(),
			typ: wire.ErrorTypeValidation}
	case errors.As(err, &inputErr):
		v := wire.NewValidationError(append([]any{"body"}, inputErr.Loc...), "Value error, "+inputErr.Err.Error(), "value_error")
		return apiError{status: http.StatusUnprocessableEntity, body: v, message: v.Error(), typ: wire.ErrorTypeValidation}
	case errors.Is(err, engine.ErrInvalidRequest):
		v := wire.NewValidationError([]any{"body"}, err.Error(), "value_error")
		return apiError{status: http.StatusUnprocessableEntity, body: v, message: err.Error(),
			typ: wire.ErrorTypeValidation}
	case errors.Is(err, errUnauthorized):
		e := simple(http.StatusUnauthorized, "Invalid or missing API key; send 'Authorization: Key <key>'",
			wire.ErrorTypeUnauthorized)
		e.header["WWW-Authenticate"] = "Key"
		// Answered before the body is read; a client trickling one must
		// not keep the connection.
		e.header["Connection"] = "close"
		return e
	case errors.Is(err, queue.ErrNotFound):
		e := simple(http.StatusNotFound, "Request not found", wire.ErrorTypeNotFound)
		e.body = errorBody{Detail: e.message, ErrorType: e.typ, Status: wire.CancelNotFound}
		return e
	case errors.Is(err, storage.ErrNotFound):
		return simple(http.StatusNotFound, "File not found", wire.ErrorTypeNotFound)
	case errors.Is(err, errRouteNotFound):
		return simple(http.StatusNotFound, "Not found", wire.ErrorTypeNotFound)
	case errors.Is(err, errMethodNotAllowed):
		return simple(http.StatusMethodNotAllowed, "Method not allowed", wire.ErrorTypeMethodNotAllowed)
	case errors.Is(err, queue.ErrAlreadyCompleted):
		e := simple(http.StatusBadRequest, "Request already completed", "already_completed")
		e.body = errorBody{Detail: e.message, ErrorType: e.typ, Status: wire.AlreadyCompleted}
		return e
	case errors.Is(err, errInProgress):
		return simple(http.StatusBadRequest, "Request is still in progress", wire.ErrorTypeInProgress)
	case errors.Is(err, queue.ErrQueueFull):
		e := simple(http.StatusTooManyRequests, "The queue is full; retry later", wire.ErrorTypeQueueFull)
		e.header["Retry-After"] = strconv.Itoa(retryAfterSeconds)
		return e
	case errors.Is(err, queue.ErrStartTimeout):
		e := simple(http.StatusGatewayTimeout, "Request timed out before processing started",
			wire.ErrorTypeRequestTimeout)
		e.header["X-Fal-Request-Timeout-Type"] = wire.TimeoutTypeUser
		return e
	case errors.Is(err, queue.ErrCanceled), errors.Is(err, engine.ErrCanceled), errors.Is(err, context.Canceled):
		return simple(http.StatusBadRequest, "Request cancelled", wire.ErrorTypeRequestCancelled)
	case errors.Is(err, queue.ErrRetriesExhausted):
		// The queue's message says how often the server stopped; it holds
		// nothing internal.
		return simple(http.StatusInternalServerError, err.Error(), "runner_disconnected")
	case errors.Is(err, queue.ErrInterrupted):
		// Permanent for this request (its client is gone), so not a 503
		// that clients would retry.
		return simple(http.StatusInternalServerError, "Request interrupted by a server restart", "runner_disconnected")
	case errors.Is(err, errWorkerOnly):
		return simple(http.StatusNotFound,
			"This is a worker process (-role worker): send API requests to an API process", wire.ErrorTypeNotFound)
	case errors.Is(err, queue.ErrClosed), errors.Is(err, engine.ErrClosed), errors.Is(err, worker.ErrNotReady):
		return simple(http.StatusServiceUnavailable, "Server is not accepting work right now; retry later",
			wire.ErrorTypeUnavailable)
	case errors.Is(err, errBodyTimeout):
		e := simple(http.StatusRequestTimeout, "The request body was not received in time", wire.ErrorTypeRequestTimeout)
		e.header["Connection"] = "close"
		return e
	case errors.Is(err, errBadBody):
		e := simple(http.StatusBadRequest, "The request body could not be read (truncated or malformed)", "bad_request")
		e.header["Connection"] = "close"
		return e
	case errors.As(err, &maxBytes):
		return simple(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("Request body too large (limit %d bytes)", maxBytes.Limit), wire.ErrorTypeBodyTooLarge)
	case errors.Is(err, storage.ErrNoSpace):
		return simple(http.StatusInsufficientStorage, "Storage is full; retry later", "storage_full")
	case errors.Is(err, storage.ErrBusy):
		return simple(http.StatusConflict, "Another request is writing this upload", "upload_busy")
	case errors.As(err, &storageInput):
		v := wire.NewValidationError([]any{storageInput.Loc, storageInput.Field}, "Value should have "+storageInput.Msg, "string_too_long")
		return apiError{status: http.StatusUnprocessableEntity, body: v, message: v.Error(), typ: wire.ErrorTypeValidation}
	case errors.Is(err, storage.ErrBadPart):
		return simple(http.StatusBadRequest, err.Error(), "bad_request")
	case errors.Is(err, storage.ErrTooLarge):
		return simple(http.StatusRequestEntityTooLarge, "File too large", wire.ErrorTypeBodyTooLarge)
	case errors.Is(err, context.DeadlineExceeded):
		return simple(http.StatusGatewayTimeout, "Request timed out", wire.ErrorTypeRequestTimeout)
	}
	// Details stay in the log (with the request id); clients get a fixed
	// message.
	return simple(http.StatusInternalServerError, "Internal server error", wire.ErrorTypeInternal)
}

// DescribeFailure is the queue's DescribeFunc: a job's stored failure is
// the same answer classify gives for its error.
func DescribeFailure(err error) queue.Failure {
	e := classify(err)
	body, mErr := json.Marshal(e.body)
	if mErr != nil {
		body = []byte(`{"detail":"Internal server error","error_type":"internal_server_error"}`)
	}
	return queue.Failure{HTTPStatus: e.status, Body: body, Headers: e.header, Message: e.message, Type: e.typ}
}
