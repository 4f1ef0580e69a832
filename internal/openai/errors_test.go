package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/wire"
)

// validate runs the endpoint's validator on a translated request and
// returns its 422 as the backend would.
func validate(t *testing.T, body string) *FalError {
	t.Helper()
	req, e := ParseGeneration([]byte(body), nil)
	if e != nil {
		t.Fatalf("%s: %v", body, e)
	}
	_, err := wire.ParseInput(req.Input)
	var verr *wire.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("%s: validator said %v", body, err)
	}
	raw, _ := json.Marshal(verr)
	return &FalError{Status: http.StatusUnprocessableEntity, Body: raw}
}

// The endpoint's 422s name the OpenAI parameter the client sent.
func TestValidationErrorsNameTheOpenAIParameter(t *testing.T) {
	cases := []struct {
		body, param, code, msg string
	}{
		{`{"n":2}`, "prompt", CodeMissingParameter, "Missing required parameter: 'prompt'."},
		{`{"prompt":""}`, "prompt", CodeInvalidValue, "Invalid 'prompt': String should have at least 1 character."},
		{`{"prompt":7}`, "prompt", CodeInvalidType, "Invalid 'prompt': Input should be a valid string."},
		{`{"prompt":"p","n":9}`, "n", CodeInvalidValue, "Invalid 'n': Input should be less than or equal to 4."},
		{`{"prompt":"p","n":"2"}`, "n", CodeInvalidType, "Invalid 'n'"},
		{`{"prompt":"p","size":"100x64"}`, "size", CodeInvalidValue, "Invalid 'size' (width): Input should be a multiple of 16."},
		{`{"prompt":"p","size":"4096x64"}`, "size", CodeInvalidValue, "Invalid 'size' (width): Input should be less than or equal to 2048."},
		{`{"prompt":"p","output_format":"gif"}`, "output_format", CodeInvalidValue, "Invalid 'output_format': Input should be 'jpeg', 'png' or 'webp'."},
		{`{"prompt":"p","seed":1.5}`, "seed", CodeInvalidType, "Invalid 'seed'"},
		{`{"prompt":"p","num_inference_steps":0}`, "num_inference_steps", CodeInvalidValue, "greater than or equal to 1"},
		{`{"prompt":"p","guidance_scale":"high"}`, "guidance_scale", CodeInvalidType, "valid number"},
		{`{"prompt":"p","acceleration":"max"}`, "acceleration", CodeInvalidValue, "'none', 'regular' or 'high'"},
		{`{"prompt":"p","cns_s_churn":5}`, "cns_s_churn", CodeInvalidValue, "less than or equal to 2"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			e := FromFal(validate(t, c.body))
			if e.Status != http.StatusBadRequest || e.Type != TypeInvalidRequest || e.Param != c.param || e.Code != c.code ||
				!strings.Contains(e.Message, c.msg) {
				t.Errorf("got %d %q param=%q code=%q %q", e.Status, e.Type, e.Param, e.Code, e.Message)
			}
		})
	}
}

func TestValidationErrorListsEveryProblem(t *testing.T) {
	e := FromFal(validate(t, `{"prompt":"p","n":0,"seed":"x"}`))
	if e.Param != "n" || !strings.Contains(e.Message, "Invalid 'n'") || !strings.Contains(e.Message, "Invalid 'seed'") {
		t.Errorf("%+v", e)
	}
}

func TestFromFal(t *testing.T) {
	cases := []struct {
		name       string
		in         FalError
		status     int
		typ, code  string
		param, msg string
		retryAfter string
	}{
		{"edit images", FalError{Status: 422, Body: json.RawMessage(`{"detail":[{"loc":["body","image_urls",4],"msg":"List should have at most 4 items","type":"too_long"}]}`)},
			400, TypeInvalidRequest, CodeInvalidValue, "image", "Invalid 'image' (4): List should have at most 4 items.", ""},
		{"json syntax", FalError{Status: 422, Body: json.RawMessage(`{"detail":[{"loc":["body",12],"msg":"JSON decode error","type":"json_invalid"}]}`)},
			400, TypeInvalidRequest, CodeInvalidJSON, "", "could not parse", ""},
		{"engine limit on the whole body", FalError{Status: 422, Body: json.RawMessage(`{"detail":[{"loc":["body"],"msg":"too big","type":"value_error"}]}`)},
			400, TypeInvalidRequest, CodeInvalidValue, "", "too big.", ""},
		{"string detail", FalError{Status: 422, Body: json.RawMessage(`{"detail":"bad"}`)},
			400, TypeInvalidRequest, CodeInvalidValue, "", "bad", ""},
		{"unauthorized", FalError{Status: 401, Body: json.RawMessage(`{"detail":"Invalid or missing API key","error_type":"unauthorized"}`)},
			401, TypeInvalidRequest, CodeInvalidAPIKey, "", "Bearer", ""},
		{"queue full", FalError{Status: 429, Body: json.RawMessage(`{"detail":"The queue is full; retry later","error_type":"queue_full"}`), RetryAfter: "5"},
			429, TypeRateLimit, CodeRateLimitExceeded, "", "The queue is full", "5"},
		{"cancelled", FalError{Status: 400, Body: json.RawMessage(`{"detail":"Request cancelled","error_type":"request_cancelled"}`)},
			400, TypeInvalidRequest, "request_cancelled", "", "Request cancelled", ""},
		{"too large", FalError{Status: 413, Body: json.RawMessage(`{"detail":"Request body too large (limit 10 bytes)","error_type":"request_too_large"}`)},
			413, TypeInvalidRequest, "request_too_large", "", "too large", ""},
		{"not ready", FalError{Status: 503, Body: json.RawMessage(`{"detail":"Server is not accepting work right now; retry later","error_type":"runner_scheduling_failure"}`)},
			503, TypeServer, "runner_scheduling_failure", "", "not accepting work", ""},
		{"start timeout", FalError{Status: 504, Body: json.RawMessage(`{"detail":"Request timed out before processing started","error_type":"request_timeout"}`)},
			504, TypeServer, "request_timeout", "", "timed out", ""},
		{"internal keeps its detail to itself", FalError{Status: 500, Body: json.RawMessage(`{"detail":"Internal server error: generate: onnx blew up at /srv/x","error_type":"internal_server_error"}`)},
			500, TypeServer, CodeServerError, "", "The server had an error", ""},
		{"no body", FalError{Status: 502}, 502, TypeServer, "", "", "Bad Gateway", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := FromFal(&c.in)
			if e.Status != c.status || e.Type != c.typ || e.Code != c.code || e.Param != c.param ||
				!strings.Contains(e.Message, c.msg) || e.RetryAfter != c.retryAfter {
				t.Errorf("got %+v", e)
			}
			if strings.Contains(e.Message, "onnx") {
				t.Errorf("internal detail leaked: %q", e.Message)
			}
		})
	}
}

func TestErrorEnvelope(t *testing.T) {
	raw, err := json.Marshal(invalidParam("n", CodeInvalidValue, "Invalid 'n'."))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"error":{"message":"Invalid 'n'.","type":"invalid_request_error","param":"n","code":"invalid_value"}}`; string(raw) != want {
		t.Errorf("got %s\nwant %s", raw, want)
	}
	raw, _ = json.Marshal(&Error{Status: 500, Message: "m", Type: TypeServer})
	if want := `{"error":{"message":"m","type":"server_error","param":null,"code":null}}`; string(raw) != want {
		t.Errorf("got %s\nwant %s", raw, want)
	}
}
