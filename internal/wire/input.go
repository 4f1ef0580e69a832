package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
)

// fal's policy for the endpoint: its ranges and defaults. Every bound sits
// inside the engine's physical limits (internal/engine) and the CNS
// sampler's accepted ranges (internal/cns); TestPolicyInsideEngine checks it.
const (
	// MaxPromptChars bounds prompt and negative_prompt, counted in Unicode
	// characters (code points), as pydantic's max_length does.
	MaxPromptChars = 10_000
	// MinNumImages and MaxNumImages bound num_images.
	MinNumImages = 1
	MaxNumImages = engine.MaxImages
	// MinSteps and MaxSteps bound num_inference_steps.
	MinSteps = 1
	MaxSteps = 50
	// MinGuidance and MaxGuidance bound guidance_scale.
	MinGuidance = 0.0
	MaxGuidance = 20.0
	// SizeMultiple: custom widths and heights must be multiples of it.
	SizeMultiple = engine.SizeMultiple
	// MinSide and MaxSide bound each side of a custom image_size.
	MinSide = 64
	MaxSide = engine.MaxSide
	// MaxPixels bounds width*height of a custom image_size (4 MP).
	MaxPixels = engine.MaxPixels
	// DefaultCustomSide is the side used when a custom image_size object
	// omits width or height (the endpoint's ImageSize default).
	DefaultCustomSide = 512
	// MinImageURLs and MaxImageURLs bound an edit's image_urls.
	MinImageURLs = 1
	MaxImageURLs = engine.MaxReferences
	// MaxLoRAs bounds loras; each scale is in the engine's range.
	MaxLoRAs = engine.MaxLoRAs
)

// Endpoint defaults. The CNS defaults are the sampler's own
// (cns.DefaultParams).
const (
	DefaultGuidanceScale     = 5.0
	DefaultNumInferenceSteps = 28
	// DefaultDistilledSteps is a distilled model's default step count.
	DefaultDistilledSteps = 4
	DefaultImageSize      = "landscape_4_3"
	DefaultNumImages      = 1
	DefaultAcceleration   = engine.AccelerationRegular
	DefaultOutputFormat   = engine.FormatPNG
)

// MaxRandomSeed bounds the seeds the server picks to [0, 2^53): JavaScript
// numbers hold them exactly, so a seed reported back can be sent again
// unchanged.
const MaxRandomSeed = 1 << 53

// RandomSeed picks the seed of a request that sent none.
func RandomSeed() int64 { return rand.Int64N(MaxRandomSeed) }

// Size is a resolved image size in pixels.
type Size struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// SizePresets maps fal's ImageSize enum to pixel sizes.
var SizePresets = map[string]Size{
	"square_hd":      {1024, 1024},
	"square":         {512, 512},
	"portrait_4_3":   {768, 1024},
	"portrait_16_9":  {576, 1024},
	"landscape_4_3":  {1024, 768},
	"landscape_16_9": {1024, 576},
}

// sizePresetNames lists the presets in the endpoint's order, for messages.
var sizePresetNames = []string{"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}

// ImageSize is the image_size input: a preset name or a custom size.
type ImageSize struct {
	Preset string // set when a preset name was given
	Custom Size   // used when Preset is empty
}

// Resolve returns the pixel size.
func (s ImageSize) Resolve() Size {
	if s.Preset != "" {
		return SizePresets[s.Preset]
	}
	return s.Custom
}

// MarshalJSON writes the preset name or the {width,height} object.
func (s ImageSize) MarshalJSON() ([]byte, error) {
	if s.Preset != "" {
		return json.Marshal(s.Preset)
	}
	return json.Marshal(s.Custom)
}

// Params is a validated input with every default applied: what a queued job
// carries. Seed stays nil when the client sent none; the server picks one
// before queueing.
type Params struct {
	// Endpoint is the id of the endpoint the request was sent to (empty in
	// jobs queued before there were several: the text-to-image one).
	Endpoint            string              `json:"endpoint,omitempty"`
	Prompt              string              `json:"prompt"`
	NegativePrompt      string              `json:"negative_prompt"`
	GuidanceScale       float64             `json:"guidance_scale"`
	NumInferenceSteps   int                 `json:"num_inference_steps"`
	Size                Size                `json:"size"`
	NumImages           int                 `json:"num_images"`
	Seed                *int64              `json:"seed,omitempty"`
	Acceleration        engine.Acceleration `json:"acceleration"`
	EnableSafetyChecker bool                `json:"enable_safety_checker"`
	OutputFormat        engine.OutputFormat `json:"output_format"`
	SyncMode            bool                `json:"sync_mode"`
	CNS                 cns.Params          `json:"cns"`
	// ImageURLs are an edit's reference images (data: URIs or http(s)
	// URLs, this server's /files/ URLs among them).
	ImageURLs []string `json:"image_urls,omitempty"`
	// LoRAs are the adapters a LoRA endpoint applies, in order.
	LoRAs []LoRAWeight `json:"loras,omitempty"`
}

// LoRAWeight is one entry of loras: a file (an http(s) URL, this server's
// /files/ URL, a data: URI or a name in the server's LoRA directory) and
// its strength.
type LoRAWeight struct {
	Path  string  `json:"path"`
	Scale float64 `json:"scale"`
}

// Request is the engine request of these parameters: the one place where
// the protocol's and the engine's vocabularies meet. A nil Seed is 0. An
// edit without image_size has a zero Size, which the engine reads as "the
// first reference's size"; the worker adds the decoded references.
func (p *Params) Request() engine.Request {
	var seed int64
	if p.Seed != nil {
		seed = *p.Seed
	}
	var loras []engine.LoRA
	for _, l := range p.LoRAs {
		loras = append(loras, engine.LoRA{Path: l.Path, Scale: l.Scale})
	}
	return engine.Request{
		Prompt:              p.Prompt,
		NegativePrompt:      p.NegativePrompt,
		GuidanceScale:       p.GuidanceScale,
		Steps:               p.NumInferenceSteps,
		Width:               p.Size.Width,
		Height:              p.Size.Height,
		NumImages:           p.NumImages,
		Seed:                seed,
		Acceleration:        p.Acceleration,
		EnableSafetyChecker: p.EnableSafetyChecker,
		OutputFormat:        p.OutputFormat,
		CNS:                 p.CNS,
		LoRAs:               loras,
	}
}

// ParseInput is ParseInput of the text-to-image endpoint.
func ParseInput(body []byte) (Params, error) { return EndpointBase.ParseInput(body) }

// ParseInput decodes, validates and resolves a request body for this
// endpoint; the error is a *ValidationError listing every problem.
//
// Rules (pydantic/FastAPI behaviour where fal would apply it):
//   - the body must be a JSON object; anything else is a 422 about "body";
//   - unknown fields are ignored;
//   - null counts as absent for every field except prompt;
//   - numbers must be JSON numbers, booleans JSON booleans, strings JSON
//     strings (no coercion of "5" to 5);
//   - integer fields accept integral numbers such as 28.0 but not 28.5.
func (ep Endpoint) ParseInput(body []byte) (Params, error) {
	fields, err := decodeObject(body)
	if err != nil {
		return Params{}, err
	}
	d := fieldDecoder{fields: fields}
	p := Params{Endpoint: ep.ID}
	if ep.Distilled {
		// Without CFG there is nothing to guide or to skip.
		p.GuidanceScale, p.Acceleration = 1, engine.AccelerationNone
	}
	for _, f := range ep.Fields() {
		f.decode(&d, &f, &p)
	}
	if len(d.errs) > 0 {
		return Params{}, &ValidationError{Detail: d.errs}
	}
	return p, nil
}

// decodeObject parses a body that must be one JSON object into its fields.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, NewValidationError([]any{"body"}, "Field required", "missing")
	}
	var top json.RawMessage
	if err := json.Unmarshal(trimmed, &top); err != nil {
		return nil, jsonSyntaxError(err)
	}
	if trimmed[0] != '{' {
		return nil, NewValidationError([]any{"body"},
			"Input should be a valid dictionary or object to extract fields from", "model_attributes_type")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, jsonSyntaxError(err)
	}
	return fields, nil
}

// jsonSyntaxError turns a decoding error into FastAPI's json_invalid entry,
// located at the byte offset where parsing failed.
func jsonSyntaxError(err error) *ValidationError {
	var offset int64
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	return &ValidationError{Detail: []ErrorDetail{{
		Loc:  []any{"body", offset},
		Msg:  "JSON decode error",
		Type: "json_invalid",
		Ctx:  map[string]any{"error": err.Error()},
	}}}
}

// fieldDecoder decodes fields of one JSON object, collecting every error.
type fieldDecoder struct {
	fields map[string]json.RawMessage
	errs   []ErrorDetail
}

func (d *fieldDecoder) fail(loc []any, msg, typ string, ctx map[string]any) {
	d.errs = append(d.errs, ErrorDetail{Loc: loc, Msg: msg, Type: typ, Ctx: ctx})
}

// raw returns the field's JSON, or nil when it is absent or null.
func (d *fieldDecoder) raw(name string) json.RawMessage {
	v, ok := d.fields[name]
	if !ok {
		return nil
	}
	v = bytes.TrimSpace(v)
	if bytes.Equal(v, []byte("null")) {
		return nil
	}
	return v
}

// prompt decodes a required, non-empty string (null is not absent here).
func (d *fieldDecoder) prompt(name string) string {
	v, ok := d.fields[name]
	if !ok {
		d.fail([]any{"body", name}, "Field required", "missing", nil)
		return ""
	}
	s, ok := decodeString(v)
	if !ok {
		d.fail([]any{"body", name}, "Input should be a valid string", "string_type", nil)
		return ""
	}
	if s == "" {
		d.fail([]any{"body", name}, "String should have at least 1 character", "string_too_short",
			map[string]any{"min_length": 1})
		return ""
	}
	if !d.checkLength(name, s, MaxPromptChars) {
		return ""
	}
	return s
}

func (d *fieldDecoder) optString(name string, maxChars int, def string) string {
	v := d.raw(name)
	if v == nil {
		return def
	}
	s, ok := decodeString(v)
	if !ok {
		d.fail([]any{"body", name}, "Input should be a valid string", "string_type", nil)
		return def
	}
	if !d.checkLength(name, s, maxChars) {
		return def
	}
	return s
}

func (d *fieldDecoder) checkLength(name, s string, maxChars int) bool {
	// Fast path: a string cannot have more characters than bytes.
	if len(s) > maxChars && utf8.RuneCountInString(s) > maxChars {
		d.fail([]any{"body", name}, fmt.Sprintf("String should have at most %d characters", maxChars),
			"string_too_long", map[string]any{"max_length": maxChars})
		return false
	}
	return true
}

func decodeString(v json.RawMessage) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// isNumber reports whether v is a JSON number token.
func isNumber(v json.RawMessage) bool {
	return len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
}

func (d *fieldDecoder) number(name string, lo, hi, def float64) float64 {
	v := d.raw(name)
	if v == nil {
		return def
	}
	loc := []any{"body", name}
	f, ok := parseFloat(v)
	if !ok {
		d.fail(loc, "Input should be a valid number", "float_type", nil)
		return def
	}
	if !d.checkRange(loc, f, lo, hi) {
		return def
	}
	return f
}

func parseFloat(v json.RawMessage) (float64, bool) {
	if !isNumber(v) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

func (d *fieldDecoder) checkRange(loc []any, f, lo, hi float64) bool {
	if f < lo {
		d.fail(loc, "Input should be greater than or equal to "+formatBound(lo), "greater_than_equal",
			map[string]any{"ge": lo})
		return false
	}
	if f > hi {
		d.fail(loc, "Input should be less than or equal to "+formatBound(hi), "less_than_equal",
			map[string]any{"le": hi})
		return false
	}
	return true
}

func formatBound(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// parseInt reads an integer-valued JSON number. The second result says why
// it failed: "int_type" (not a number), "int_from_float" (fractional) or
// "int_parsing_size" (outside int64).
func parseInt(v json.RawMessage) (int64, string) {
	if !isNumber(v) {
		return 0, "int_type"
	}
	s := string(v)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, ""
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, "int_parsing_size"
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, "int_type"
	}
	if f != math.Trunc(f) {
		return 0, "int_from_float"
	}
	// 2^63 is exactly representable; anything at or above it overflows.
	if f >= 9.223372036854775807e18 || f < -9.223372036854775808e18 {
		return 0, "int_parsing_size"
	}
	return int64(f), ""
}

var intErrorMessages = map[string]string{
	"int_type":         "Input should be a valid integer",
	"int_from_float":   "Input should be a valid integer, got a number with a fractional part",
	"int_parsing_size": "Input should be a valid integer, unable to parse number as an integer within the int64 range",
}

func (d *fieldDecoder) integer(name string, lo, hi, def int) int {
	v := d.raw(name)
	if v == nil {
		return def
	}
	loc := []any{"body", name}
	n, problem := parseInt(v)
	if problem != "" {
		d.fail(loc, intErrorMessages[problem], problem, nil)
		return def
	}
	if !d.checkIntRange(loc, n, lo, hi) {
		return def
	}
	return int(n)
}

func (d *fieldDecoder) checkIntRange(loc []any, n int64, lo, hi int) bool {
	if n < int64(lo) {
		d.fail(loc, fmt.Sprintf("Input should be greater than or equal to %d", lo), "greater_than_equal",
			map[string]any{"ge": lo})
		return false
	}
	if n > int64(hi) {
		d.fail(loc, fmt.Sprintf("Input should be less than or equal to %d", hi), "less_than_equal",
			map[string]any{"le": hi})
		return false
	}
	return true
}

func (d *fieldDecoder) seed(name string) *int64 {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	n, problem := parseInt(v)
	if problem != "" {
		d.fail([]any{"body", name}, intErrorMessages[problem], problem, nil)
		return nil
	}
	return &n
}

func (d *fieldDecoder) boolean(name string, def bool) bool {
	v := d.raw(name)
	if v == nil {
		return def
	}
	switch string(v) {
	case "true":
		return true
	case "false":
		return false
	}
	d.fail([]any{"body", name}, "Input should be a valid boolean", "bool_type", nil)
	return def
}

// enum decodes a string field that must be one of allowed (the owning
// package's list of values, in the endpoint's order).
func enum[T ~string](d *fieldDecoder, name string, allowed []T, def T) T {
	v := d.raw(name)
	if v == nil {
		return def
	}
	loc := []any{"body", name}
	s, ok := decodeString(v)
	if !ok {
		d.fail(loc, "Input should be a valid string", "string_type", nil)
		return def
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if s == string(a) {
			return a
		}
		names[i] = string(a)
	}
	d.fail(loc, "Input should be "+quoteAlternatives(names), "enum",
		map[string]any{"expected": quoteAlternatives(names)})
	return def
}

// quoteAlternatives renders pydantic's "'a', 'b' or 'c'".
func quoteAlternatives(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "'" + v + "'"
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// imageSize decodes image_size to pixels; def when absent.
func (d *fieldDecoder) imageSize(name string, def Size) Size {
	if s := d.imageSizeValue(name); s != nil {
		return s.Resolve()
	}
	return def
}

// imageSizeValue decodes image_size as sent; nil when absent or invalid.
func (d *fieldDecoder) imageSizeValue(name string) *ImageSize {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	loc := []any{"body", name}
	switch v[0] {
	case '"':
		s, ok := decodeString(v)
		if !ok {
			d.fail(loc, "Input should be a valid string", "string_type", nil)
			return nil
		}
		if _, ok := SizePresets[s]; !ok {
			d.fail(loc, "Input should be "+quoteAlternatives(sizePresetNames)+", or an object with width and height",
				"enum", map[string]any{"expected": quoteAlternatives(sizePresetNames)})
			return nil
		}
		return &ImageSize{Preset: s}
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			d.fail(loc, "Input should be a valid dictionary", "dict_type", nil)
			return nil
		}
		sub := fieldDecoder{fields: obj}
		w := sub.side(name, "width")
		h := sub.side(name, "height")
		d.errs = append(d.errs, sub.errs...)
		if w == 0 || h == 0 {
			return nil
		}
		if w*h > MaxPixels {
			d.fail(loc, fmt.Sprintf("Value error, image_size %dx%d has %d pixels; the maximum is %d",
				w, h, w*h, MaxPixels), "value_error", map[string]any{"max_pixels": MaxPixels})
			return nil
		}
		return &ImageSize{Custom: Size{Width: w, Height: h}}
	}
	d.fail(loc, "Input should be one of the image size presets or an object with width and height",
		"model_type", nil)
	return nil
}

// side decodes width or height of a custom image_size; 0 means invalid.
func (d *fieldDecoder) side(parent, name string) int {
	v := d.raw(name)
	if v == nil {
		return DefaultCustomSide
	}
	loc := []any{"body", parent, name}
	n, problem := parseInt(v)
	if problem != "" {
		d.fail(loc, intErrorMessages[problem], problem, nil)
		return 0
	}
	if !d.checkIntRange(loc, n, MinSide, MaxSide) {
		return 0
	}
	if n%SizeMultiple != 0 {
		d.fail(loc, fmt.Sprintf("Input should be a multiple of %d", SizeMultiple), "multiple_of",
			map[string]any{"multiple_of": SizeMultiple})
		return 0
	}
	return int(n)
}

// list decodes v, f's value, as a JSON list of f.MinItems to f.MaxItems
// items; false, with the failure recorded, when it is not one.
func (d *fieldDecoder) list(f *Field, v json.RawMessage) ([]json.RawMessage, bool) {
	loc := []any{"body", f.Name}
	var items []json.RawMessage
	if v[0] != '[' || json.Unmarshal(v, &items) != nil {
		d.fail(loc, "Input should be a valid list", "list_type", nil)
		return nil, false
	}
	if len(items) < f.MinItems {
		d.fail(loc, fmt.Sprintf("List should have at least %d item after validation, not %d", f.MinItems, len(items)),
			"too_short", map[string]any{"field_type": "List", "min_length": f.MinItems, "actual_length": len(items)})
		return nil, false
	}
	if len(items) > f.MaxItems {
		d.fail(loc, fmt.Sprintf("List should have at most %d items after validation, not %d", f.MaxItems, len(items)),
			"too_long", map[string]any{"field_type": "List", "max_length": f.MaxItems, "actual_length": len(items)})
		return nil, false
	}
	return items, true
}

// imageURLs decodes a required list of 1 to MaxImageURLs image references:
// data: URIs or absolute http(s) URLs. Whether each one can be fetched and
// decoded is known only when the job runs.
func (d *fieldDecoder) imageURLs(f *Field) []string {
	name := f.Name
	v := d.raw(name)
	if v == nil {
		d.fail([]any{"body", name}, "Field required", "missing", nil)
		return nil
	}
	items, ok := d.list(f, v)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		iloc := []any{"body", name, i}
		s, ok := decodeString(item)
		if !ok {
			d.fail(iloc, "Input should be a valid string", "string_type", nil)
			continue
		}
		if !isImageRef(s) {
			d.fail(iloc, "Input should be a data: URI or an absolute http or https URL", "url_scheme", nil)
			continue
		}
		out = append(out, s)
	}
	return out
}

// isImageRef accepts a data: URI or an absolute http(s) URL with a host.
func isImageRef(s string) bool {
	if len(s) >= 5 && strings.EqualFold(s[:5], "data:") {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// loras decodes an optional list of up to f.MaxItems {path, scale}: path a
// non-empty string, scale a number in [f.Min, f.Max] (default
// engine.DefaultLoRAScale). Whether the file can be read and applied is
// known only when the job runs.
func (d *fieldDecoder) loras(f *Field) []LoRAWeight {
	v := d.raw(f.Name)
	if v == nil {
		return nil
	}
	items, ok := d.list(f, v)
	if !ok {
		return nil
	}
	out := make([]LoRAWeight, 0, len(items))
	for i, item := range items {
		var obj map[string]json.RawMessage
		if len(item) == 0 || item[0] != '{' || json.Unmarshal(item, &obj) != nil {
			d.fail([]any{"body", f.Name, i}, "Input should be a valid dictionary or object to extract fields from",
				"model_attributes_type", nil)
			continue
		}
		sub := fieldDecoder{fields: obj}
		w := LoRAWeight{Scale: sub.number("scale", *f.Min, *f.Max, engine.DefaultLoRAScale)}
		pv, ok := obj["path"]
		switch s, isString := decodeString(pv); {
		case !ok:
			sub.fail([]any{"path"}, "Field required", "missing", nil)
		case !isString:
			sub.fail([]any{"path"}, "Input should be a valid string", "string_type", nil)
		case strings.TrimSpace(s) == "":
			sub.fail([]any{"path"}, "String should have at least 1 character", "string_too_short",
				map[string]any{"min_length": 1})
		default:
			w.Path = s
		}
		for _, e := range sub.errs {
			// sub's locations start at the object's own fields.
			e.Loc = append([]any{"body", f.Name, i}, e.Loc[len(e.Loc)-1:]...)
			d.errs = append(d.errs, e)
		}
		out = append(out, w)
	}
	return out
}
