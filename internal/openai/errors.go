package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// Error is an answer in OpenAI's error envelope:
// {"error":{"message","type","param","code"}}, param and code null when
// empty. The official clients raise by status: 400 BadRequestError, 401
// AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx
// InternalServerError (and retry 429 and 5xx).
type Error struct {
	Status  int
	Message string
	Type    string
	Param   string
	Code    string
	// RetryAfter is sent as the Retry-After header (seconds) when set.
	RetryAfter string
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("openai %d %s (param %s): %s", e.Status, e.Type, e.Param, e.Message)
	}
	return fmt.Sprintf("openai %d %s: %s", e.Status, e.Type, e.Message)
}

// Error types, as OpenAI's API sends them.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeRateLimit      = "requests"
	TypeServer         = "server_error"
)

// Error codes this server sends.
const (
	CodeMissingParameter     = "missing_required_parameter"
	CodeInvalidType          = "invalid_type"
	CodeInvalidValue         = "invalid_value"
	CodeUnknownParameter     = "unknown_parameter"
	CodeUnsupportedParameter = "unsupported_parameter"
	CodeUnsupportedValue     = "unsupported_value"
	CodeInvalidJSON          = "invalid_json"
	CodeInvalidAPIKey        = "invalid_api_key"
	CodeModelNotFound        = "model_not_found"
	CodeRateLimitExceeded    = "rate_limit_exceeded"
	CodeNotFound             = "not_found"
	CodeServerError          = "server_error"
)

// errorObject is the inside of the envelope.
type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *Error) object() errorObject {
	nullable := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return errorObject{Message: e.Message, Type: e.Type, Param: nullable(e.Param), Code: nullable(e.Code)}
}

// MarshalJSON writes the envelope.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Error errorObject `json:"error"`
	}{e.object()})
}

// invalidParam is a 400 about one parameter.
func invalidParam(param, code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Code: code,
		Message: fmt.Sprintf(format, args...)}
}

func errUnauthorized() *Error {
	return &Error{Status: http.StatusUnauthorized, Type: TypeInvalidRequest, Code: CodeInvalidAPIKey,
		Message: "Incorrect or missing API key; send 'Authorization: Bearer <key>' with a key this server accepts."}
}

func errEndpointUnavailable(endpoint string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound,
		Message: fmt.Sprintf("This server does not serve %s yet, so this operation is not available.", endpoint)}
}

func errInternal() *Error {
	return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: CodeServerError,
		Message: "The server had an error while processing your request."}
}

// paramOf is the OpenAI parameter a fal input field corresponds to: the
// fields OpenAI names differently, and every other one by its own name.
// requestFields sets these same fields from their OpenAI parameters.
func paramOf(falField string) string {
	switch falField {
	case falNumImages:
		return "n"
	case falImageSize:
		return "size"
	case falSyncMode:
		return "response_format"
	case falImageURLs:
		return "image"
	}
	return falField
}

// falBody is what fal error bodies may hold: a validation list or a
// string detail, and an error type.
type falBody struct {
	Detail    json.RawMessage `json:"detail"`
	ErrorType string          `json:"error_type"`
}

// FromFal translates a fal error answer into OpenAI's envelope. A 422's
// first location becomes param (by its OpenAI name); server errors keep
// no detail of the fal body, which may describe internals.
func FromFal(fe *FalError) *Error {
	var body falBody
	_ = json.Unmarshal(fe.Body, &body)
	var detail string
	_ = json.Unmarshal(body.Detail, &detail)
	e := &Error{Status: fe.Status, Type: TypeInvalidRequest, Code: body.ErrorType, Message: detail}
	switch {
	case fe.Status == http.StatusUnprocessableEntity:
		return fromValidation(body.Detail)
	case fe.Status == http.StatusUnauthorized:
		return errUnauthorized()
	case fe.Status == http.StatusTooManyRequests:
		e.Type, e.Code, e.RetryAfter = TypeRateLimit, CodeRateLimitExceeded, fe.RetryAfter
	case fe.Status == http.StatusInternalServerError:
		return errInternal()
	case fe.Status >= 500:
		e.Type = TypeServer
		e.RetryAfter = fe.RetryAfter
	}
	if e.Message == "" {
		e.Message = http.StatusText(fe.Status)
	}
	return e
}

// fromValidation turns fal's 422 detail list into a 400 naming the first
// offending parameter; the message lists every problem.
func fromValidation(raw json.RawMessage) *Error {
	var list []wire.ErrorDetail
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		var msg string
		_ = json.Unmarshal(raw, &msg)
		if msg == "" {
			msg = "The request is invalid."
		}
		return invalidParam("", CodeInvalidValue, "%s", msg)
	}
	first := list[0]
	param, _ := paramOfLoc(first.Loc)
	msgs := make([]string, len(list))
	for i, d := range list {
		msgs[i] = describeDetail(d)
	}
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param,
		Code: codeOf(first.Type), Message: strings.Join(msgs, " ")}
}

// paramOfLoc reads ["body", field, sub…]: the OpenAI parameter and the
// path below it. A location without a field name (a JSON syntax error's
// byte offset) names no parameter.
func paramOfLoc(loc []any) (string, []string) {
	if len(loc) < 2 {
		return "", nil
	}
	name, ok := loc[1].(string)
	if !ok {
		return "", nil
	}
	var sub []string
	for _, l := range loc[2:] {
		sub = append(sub, fmt.Sprint(l))
	}
	return paramOf(name), sub
}

func describeDetail(d wire.ErrorDetail) string {
	param, sub := paramOfLoc(d.Loc)
	msg := strings.TrimSuffix(d.Msg, ".") + "."
	switch {
	case d.Type == "json_invalid":
		return "We could not parse the JSON body of your request: " + msg
	case param == "":
		return msg
	case d.Type == "missing" && len(sub) == 0:
		return fmt.Sprintf("Missing required parameter: '%s'.", param)
	case len(sub) > 0:
		return fmt.Sprintf("Invalid '%s' (%s): %s", param, strings.Join(sub, "."), msg)
	}
	return fmt.Sprintf("Invalid '%s': %s", param, msg)
}

// codeOf maps a pydantic error type to OpenAI's error code.
func codeOf(pydanticType string) string {
	switch {
	case pydanticType == "missing":
		return CodeMissingParameter
	case pydanticType == "json_invalid":
		return CodeInvalidJSON
	case strings.HasSuffix(pydanticType, "_type"), strings.HasPrefix(pydanticType, "int_"):
		return CodeInvalidType
	}
	return CodeInvalidValue
}
