package wire

import (
	"fmt"
	"strings"
)

// ErrorDetail is one entry of a FastAPI/pydantic validation error list.
type ErrorDetail struct {
	// Loc is the path of the offending value: "body" first, then field
	// names (strings) and array indexes or byte offsets (ints).
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
	// Ctx carries the constraint that failed (e.g. {"ge": 1}), as pydantic does.
	Ctx map[string]any `json:"ctx,omitempty"`
}

// ValidationError is the body of a 422 response:
// {"detail":[{"loc":[...],"msg":"...","type":"..."}]}.
// It implements error so decoders can return it directly.
type ValidationError struct {
	Detail []ErrorDetail `json:"detail"`
}

// Error joins the messages with their locations.
func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Detail))
	for _, d := range e.Detail {
		loc := make([]string, len(d.Loc))
		for i, l := range d.Loc {
			loc[i] = fmt.Sprint(l)
		}
		parts = append(parts, strings.Join(loc, ".")+": "+d.Msg)
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// Fields returns the top-level field of every entry (for tests and logs);
// entries about the whole body yield "body".
func (e *ValidationError) Fields() []string {
	out := make([]string, 0, len(e.Detail))
	for _, d := range e.Detail {
		if name, ok := fieldName(d.Loc); ok {
			out = append(out, name)
		} else {
			out = append(out, "body")
		}
	}
	return out
}

// fieldName is the field a location names: its second element when that
// is a string (a byte offset of a JSON syntax error is not a field).
func fieldName(loc []any) (string, bool) {
	if len(loc) < 2 {
		return "", false
	}
	name, ok := loc[1].(string)
	return name, ok
}

// NewValidationError builds a single-entry validation error.
func NewValidationError(loc []any, msg, typ string) *ValidationError {
	return &ValidationError{Detail: []ErrorDetail{{Loc: loc, Msg: msg, Type: typ}}}
}

// ErrorBody is fal's shape for errors that are not input validation:
// {"detail":"Request timed out","error_type":"request_timeout"}.
type ErrorBody struct {
	Detail    string `json:"detail"`
	ErrorType string `json:"error_type,omitempty"`
}

// Error types used in ErrorBody.ErrorType and the X-Fal-Error-Type header.
const (
	ErrorTypeRequestTimeout    = "request_timeout"
	ErrorTypeQueueFull         = "queue_full"
	ErrorTypeRequestCancelled  = "request_cancelled"
	ErrorTypeNotFound          = "not_found"
	ErrorTypeUnauthorized      = "unauthorized"
	ErrorTypeBodyTooLarge      = "request_too_large"
	ErrorTypeUnavailable       = "runner_scheduling_failure"
	ErrorTypeInternal          = "internal_server_error"
	ErrorTypeInProgress        = "request_in_progress"
	ErrorTypeMethodNotAllowed  = "method_not_allowed"
	ErrorTypeGenerationFailure = "generation_failed"
	ErrorTypeValidation        = "validation_error"
)
