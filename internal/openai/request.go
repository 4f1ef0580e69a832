package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// Kind is the OpenAI operation a request asks for.
type Kind int

const (
	Generation Kind = iota
	Edit
)

// Response formats.
const (
	FormatURL     = "url"
	FormatB64JSON = "b64_json"
)

// SizeAuto lets the endpoint choose the size (its default image_size).
const SizeAuto = "auto"

// MaxPartialImages bounds partial_images, as OpenAI does.
const MaxPartialImages = 3

// The fal input fields that OpenAI parameters set.
const (
	falPrompt       = "prompt"
	falNumImages    = "num_images"
	falImageSize    = "image_size"
	falSyncMode     = "sync_mode"
	falOutputFormat = "output_format"
	falImageURLs    = "image_urls"
)

// Request is an OpenAI request translated for the fal endpoint.
type Request struct {
	Kind       Kind
	EndpointID string
	// Input is the fal endpoint's input JSON.
	Input json.RawMessage
	// ResponseFormat is FormatURL or FormatB64JSON (always for streams).
	ResponseFormat string
	Stream         bool
	// PartialImages is how many previews a stream forwards (0–3).
	PartialImages int
	// OutputFormat is the requested format (the endpoint default if none).
	OutputFormat string
	// Size is the requested size, "WxH" or SizeAuto.
	Size string
}

// paramKind is how a parameter's value is typed, so that multipart form
// strings can be given their JSON type.
type paramKind int

const (
	kindString paramKind = iota
	kindInt
	kindNumber
	kindBool
)

// openAIParams are the OpenAI parameters a kind of request accepts, with
// their types. Parameters that do not change the image (quality, style,
// moderation, user, …) are accepted and not used; see docs/openai.md.
func openAIParams(k Kind) map[string]paramKind {
	p := map[string]paramKind{
		"prompt": kindString, "model": kindString, "n": kindInt, "size": kindString,
		"response_format": kindString, "output_format": kindString, "output_compression": kindInt,
		"background": kindString, "quality": kindString, "user": kindString, "safety_identifier": kindString,
		"stream": kindBool, "partial_images": kindInt,
	}
	if k == Generation {
		p["style"], p["moderation"] = kindString, kindString
	} else {
		p["input_fidelity"], p["mask"] = kindString, kindString
	}
	return p
}

// passthroughParams are the fal input fields a client may send as extra
// body fields under their own names (seed, num_inference_steps, the CNS
// fields, …): every field of the fal endpoints except those an OpenAI
// parameter sets, read from wire's field table.
func passthroughParams() map[string]paramKind {
	out := map[string]paramKind{}
	for _, ep := range wire.Endpoints() {
		for _, f := range ep.Fields() {
			if ownedByOpenAI(f.Name) {
				continue
			}
			switch f.Kind {
			case wire.KindBoolean:
				out[f.Name] = kindBool
			case wire.KindInteger, wire.KindSeed:
				out[f.Name] = kindInt
			case wire.KindNumber:
				out[f.Name] = kindNumber
			default:
				out[f.Name] = kindString
			}
		}
	}
	return out
}

// ownedByOpenAI reports the fal fields that only an OpenAI parameter sets.
func ownedByOpenAI(falField string) bool {
	switch falField {
	case falPrompt, falNumImages, falImageSize, falSyncMode, falOutputFormat, falImageURLs:
		return true
	}
	return false
}

// ParseGeneration translates the JSON body of POST /v1/images/generations.
func ParseGeneration(body []byte, models Models) (Request, *Error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Request{}, invalidParam("", CodeInvalidJSON,
			"We could not parse the JSON body of your request: expected a JSON object.")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return Request{}, invalidParam("", CodeInvalidJSON,
			"We could not parse the JSON body of your request: %s.", err.Error())
	}
	return translate(Generation, fields, nil, models)
}

// ParseEdit translates the multipart form of POST /v1/images/edits:
// images under "image" or "image[]" become data URIs in image_urls.
func ParseEdit(form *multipart.Form, models Models) (Request, *Error) {
	fields := map[string]json.RawMessage{}
	params := openAIParams(Edit)
	extra := passthroughParams()
	for name, values := range form.Value {
		if name == "image" || name == "image[]" {
			return Request{}, invalidParam("image", CodeInvalidType, "Invalid 'image': expected image files (multipart file parts), not text.")
		}
		if len(values) != 1 {
			return Request{}, invalidParam(name, CodeInvalidValue, "Invalid '%s': given %d times; send it once.", name, len(values))
		}
		kind, ok := params[name]
		if !ok {
			kind = extra[name]
		}
		fields[name] = formValueJSON(values[0], kind)
	}
	for name := range form.File {
		switch name {
		case "image", "image[]":
		case "mask":
			fields["mask"] = json.RawMessage(`"file"`)
		default:
			return Request{}, unknownParam(name)
		}
	}
	var images []json.RawMessage
	for _, fh := range slices.Concat(form.File["image"], form.File["image[]"]) {
		uri, err := dataURI(fh)
		if err != nil {
			return Request{}, err
		}
		images = append(images, uri)
	}
	return translate(Edit, fields, images, models)
}

// formValueJSON gives a form string the JSON type its parameter has. A
// value that does not parse as that type stays a string, so the validator
// names the parameter and says what it should be.
func formValueJSON(v string, kind paramKind) json.RawMessage {
	switch kind {
	case kindInt, kindNumber:
		if t := strings.TrimSpace(v); t != "" && (t[0] == '-' || (t[0] >= '0' && t[0] <= '9')) && json.Valid([]byte(t)) {
			return json.RawMessage(t)
		}
	case kindBool:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			return json.RawMessage("true")
		case "false":
			return json.RawMessage("false")
		}
	}
	raw, _ := json.Marshal(v)
	return raw
}

// dataURI reads an uploaded image into a data: URI, typed by its content
// (the upload's own Content-Type is often application/octet-stream).
func dataURI(fh *multipart.FileHeader) (json.RawMessage, *Error) {
	f, err := fh.Open()
	if err != nil {
		return nil, invalidParam("image", CodeInvalidValue, "Invalid 'image': could not read the upload %q.", fh.Filename)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, invalidParam("image", CodeInvalidValue, "Invalid 'image': could not read the upload %q.", fh.Filename)
	}
	// The check the job's image loading makes, here so that the client
	// gets its answer at once.
	format, err := imageinput.Sniff(data)
	if err != nil {
		var ie *imageinput.Error
		errors.As(err, &ie)
		return nil, invalidParam("image", CodeInvalidValue, "Invalid 'image': %q: %s.", fh.Filename, ie.Reason())
	}
	raw, _ := json.Marshal("data:image/" + string(format) + ";base64," + base64.StdEncoding.EncodeToString(data))
	return raw, nil
}

func unknownParam(name string) *Error {
	return invalidParam(name, CodeUnknownParameter, "Unrecognized request argument supplied: %s", name)
}

// translate maps OpenAI parameters to the fal input. It judges only what
// is OpenAI's own (the parameter names, size syntax, response_format,
// stream, partial_images, model); everything the endpoint defines is
// passed on for the endpoint's validator to judge.
func translate(kind Kind, fields map[string]json.RawMessage, images []json.RawMessage, models Models) (Request, *Error) {
	params := openAIParams(kind)
	extra := passthroughParams()
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if _, ok := params[name]; ok {
			continue
		}
		if _, ok := extra[name]; ok {
			continue
		}
		if ownedByOpenAI(name) {
			return Request{}, invalidParam(name, CodeUnknownParameter,
				"Unrecognized request argument supplied: %s; this API sets it from '%s'.", name, paramOf(name))
		}
		return Request{}, unknownParam(name)
	}

	if len(models) == 0 {
		models = Models{models.Default()}
	}
	model := models.Default()
	req := Request{Kind: kind, ResponseFormat: FormatURL, Size: SizeAuto, OutputFormat: string(wire.DefaultOutputFormat)}
	in := map[string]json.RawMessage{}
	present := func(name string) (json.RawMessage, bool) {
		v, ok := fields[name]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil, false
		}
		return v, true
	}

	if v, ok := fields["prompt"]; ok {
		in[falPrompt] = v
	}
	if v, ok := present("model"); ok {
		s, isString := jsonString(v)
		if !isString {
			return Request{}, invalidParam("model", CodeInvalidType, "Invalid 'model': expected a string.")
		}
		if !slices.Contains(models, s) {
			return Request{}, &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model",
				Code: CodeModelNotFound, Message: fmt.Sprintf("The model '%s' does not exist on this server; it serves %s (GET /v1/models).", s, models.list())}
		}
		model = s
	}
	req.EndpointID = model
	if kind == Edit {
		req.EndpointID = EditEndpoint(model)
	}
	if v, ok := present("n"); ok {
		in[falNumImages] = v
	}
	if v, ok := present("size"); ok {
		s, isString := jsonString(v)
		if !isString {
			return Request{}, invalidParam("size", CodeInvalidType, "Invalid 'size': expected a string such as '1024x768' or 'auto'.")
		}
		if s != SizeAuto {
			w, h, err := parseSize(s)
			if err != nil {
				return Request{}, err
			}
			in[falImageSize] = json.RawMessage(fmt.Sprintf(`{"width":%d,"height":%d}`, w, h))
		}
		req.Size = s
	}
	if v, ok := present("stream"); ok {
		b, isBool := jsonBool(v)
		if !isBool {
			return Request{}, invalidParam("stream", CodeInvalidType, "Invalid 'stream': expected a boolean.")
		}
		req.Stream = b
	}
	if v, ok := present("response_format"); ok {
		s, _ := jsonString(v)
		switch s {
		case FormatURL, FormatB64JSON:
			req.ResponseFormat = s
		default:
			return Request{}, invalidParam("response_format", CodeInvalidValue,
				"Invalid 'response_format': expected 'url' or 'b64_json'.")
		}
		if req.Stream && s == FormatURL {
			return Request{}, invalidParam("response_format", CodeUnsupportedValue,
				"Invalid 'response_format': streamed images are sent as b64_json; omit response_format or send 'b64_json' with stream.")
		}
	}
	if req.Stream {
		req.ResponseFormat = FormatB64JSON
	}
	in[falSyncMode] = json.RawMessage(strconv.FormatBool(req.ResponseFormat == FormatB64JSON))
	if v, ok := present("partial_images"); ok {
		n, err := intParam("partial_images", v, 0, MaxPartialImages)
		if err != nil {
			return Request{}, err
		}
		req.PartialImages = n
	}
	if v, ok := present("output_format"); ok {
		in[falOutputFormat] = v
		if s, isString := jsonString(v); isString {
			req.OutputFormat = s
		}
	}
	if v, ok := present("output_compression"); ok {
		if _, err := intParam("output_compression", v, 0, 100); err != nil {
			return Request{}, err
		}
	}
	if v, ok := present("background"); ok {
		s, _ := jsonString(v)
		switch s {
		case "auto", "opaque":
		case "transparent":
			return Request{}, invalidParam("background", CodeUnsupportedValue,
				"Invalid 'background': this model makes opaque images only; send 'opaque' or 'auto'.")
		default:
			return Request{}, invalidParam("background", CodeInvalidValue,
				"Invalid 'background': expected 'opaque' or 'auto'.")
		}
	}
	if _, ok := present("mask"); ok {
		return Request{}, invalidParam("mask", CodeUnsupportedParameter,
			"Masked editing is not supported: send the image without 'mask' and describe the change in the prompt.")
	}
	for _, name := range names {
		if k, ok := params[name]; !ok || k != kindString || name == "prompt" {
			continue
		}
		if v, ok := present(name); ok {
			if _, isString := jsonString(v); !isString {
				return Request{}, invalidParam(name, CodeInvalidType, "Invalid '%s': expected a string.", name)
			}
		}
	}
	for _, name := range names {
		if _, ok := extra[name]; ok {
			in[name] = fields[name]
		}
	}
	if kind == Edit {
		raw, _ := json.Marshal(images)
		if images == nil {
			raw = json.RawMessage("[]")
		}
		in[falImageURLs] = raw
	}
	input, err := json.Marshal(in)
	if err != nil {
		return Request{}, invalidParam("", CodeInvalidJSON, "We could not parse the JSON body of your request.")
	}
	req.Input = input
	return req, nil
}

// parseSize reads OpenAI's "WIDTHxHEIGHT". Whether the endpoint can make
// that size is the endpoint's validator's call.
func parseSize(s string) (int, int, *Error) {
	ws, hs, ok := strings.Cut(s, "x")
	w, errW := strconv.Atoi(ws)
	h, errH := strconv.Atoi(hs)
	if !ok || errW != nil || errH != nil || w <= 0 || h <= 0 || strings.ContainsAny(s, "+- ") {
		return 0, 0, invalidParam("size", CodeInvalidValue,
			"Invalid 'size': expected 'auto' or WIDTHxHEIGHT in pixels, such as '1024x768'; got '%s'.", s)
	}
	return w, h, nil
}

func intParam(name string, v json.RawMessage, lo, hi int) (int, *Error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != float64(int(f)) {
		return 0, invalidParam(name, CodeInvalidType, "Invalid '%s': expected an integer.", name)
	}
	n := int(f)
	if n < lo || n > hi {
		return 0, invalidParam(name, CodeInvalidValue, "Invalid '%s': expected a value from %d to %d, got %d.", name, lo, hi, n)
	}
	return n, nil
}

func jsonString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func jsonBool(v json.RawMessage) (bool, bool) {
	switch string(bytes.TrimSpace(v)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
