package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the HTTP API, in one place. They are the bounds a request must
// satisfy before it is queued; the loaded engine may be stricter (its
// engine.Info limits are checked by the API as well).
const (
	// MaxPromptChars bounds prompt and negative_prompt, counted in Unicode
	// characters (code points), as pydantic's max_length does.
	MaxPromptChars = 10_000
	// MinNumImages and MaxNumImages bound num_images.
	MinNumImages = 1
	MaxNumImages = 4
	// MinSteps and MaxSteps bound num_inference_steps.
	MinSteps = 1
	MaxSteps = 50
	// MinGuidance and MaxGuidance bound guidance_scale.
	MinGuidance = 0.0
	MaxGuidance = 20.0
	// SizeMultiple: custom widths and heights must be multiples of it (the
	// model's VAE factor 8 times the 2x2 patch).
	SizeMultiple = 16
	// MinSide and MaxSide bound each side of a custom image_size.
	MinSide = 64
	MaxSide = 2048
	// MaxPixels bounds width*height of a custom image_size (4 MP).
	MaxPixels = 4 * 1024 * 1024
	// DefaultCustomSide is the side used when a custom image_size object
	// omits width or height (the endpoint page's ImageSize default).
	DefaultCustomSide = 512
)

// Enum values of the endpoint.
const (
	AccelerationNone    = "none"
	AccelerationRegular = "regular"
	AccelerationHigh    = "high"

	FormatJPEG = "jpeg"
	FormatPNG  = "png"
	FormatWebP = "webp"

	GammaSourceMatrix        = "matrix"
	GammaSourceApproximation = "approximation"
)

// Endpoint defaults, from the endpoint page.
const (
	DefaultGuidanceScale     = 5.0
	DefaultNumInferenceSteps = 28
	DefaultImageSize         = "landscape_4_3"
	DefaultNumImages         = 1
	DefaultAcceleration      = AccelerationRegular
	DefaultOutputFormat      = FormatPNG

	DefaultCNSSChurn            = 0.5
	DefaultCNSGammaSource       = GammaSourceMatrix
	DefaultCNSPowerGamma        = 0.75
	DefaultCNSGammaDivider      = 1.73
	DefaultCNSAlphaTiltStart    = 0.15
	DefaultCNSAlphaTiltEnd      = -0.5
	DefaultCNSAlphaUseFnorm     = true
	DefaultCNSAlphaExpInterp    = true
	DefaultCNSAlphaExpSharpness = 0.75
	DefaultCNSNumFreqBins       = 32
	DefaultCNSEnergyScale       = 0.98
)

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

// sizePresetNames lists the presets in the endpoint page's order, for messages.
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

// Input is the endpoint's input as sent. Pointer fields are nil when the
// field was absent (or null), so defaults can be told apart from explicit
// values. Build it with DecodeInput, which also validates it.
type Input struct {
	Prompt              *string    `json:"prompt,omitempty"`
	NegativePrompt      *string    `json:"negative_prompt,omitempty"`
	GuidanceScale       *float64   `json:"guidance_scale,omitempty"`
	NumInferenceSteps   *int       `json:"num_inference_steps,omitempty"`
	ImageSize           *ImageSize `json:"image_size,omitempty"`
	NumImages           *int       `json:"num_images,omitempty"`
	Seed                *int64     `json:"seed,omitempty"`
	Acceleration        *string    `json:"acceleration,omitempty"`
	EnableSafetyChecker *bool      `json:"enable_safety_checker,omitempty"`
	OutputFormat        *string    `json:"output_format,omitempty"`
	SyncMode            *bool      `json:"sync_mode,omitempty"`

	EnableCNS            *bool    `json:"enable_cns,omitempty"`
	CNSSChurn            *float64 `json:"cns_s_churn,omitempty"`
	CNSGammaSource       *string  `json:"cns_gamma_source,omitempty"`
	CNSPowerGamma        *float64 `json:"cns_power_gamma,omitempty"`
	CNSGammaDivider      *float64 `json:"cns_gamma_divider,omitempty"`
	CNSAlphaTiltStart    *float64 `json:"cns_alpha_tilt_start,omitempty"`
	CNSAlphaTiltEnd      *float64 `json:"cns_alpha_tilt_end,omitempty"`
	CNSAlphaUseFnorm     *bool    `json:"cns_alpha_use_fnorm,omitempty"`
	CNSAlphaExpInterp    *bool    `json:"cns_alpha_exp_interp,omitempty"`
	CNSAlphaExpSharpness *float64 `json:"cns_alpha_exp_sharpness,omitempty"`
	CNSNumFreqBins       *int     `json:"cns_num_freq_bins,omitempty"`
	CNSEnergyScale       *float64 `json:"cns_energy_scale,omitempty"`
}

// CNS holds the resolved Colored Noise Sampling parameters.
type CNS struct {
	Enable            bool    `json:"enable"`
	SChurn            float64 `json:"s_churn"`
	GammaSource       string  `json:"gamma_source"`
	PowerGamma        float64 `json:"power_gamma"`
	GammaDivider      float64 `json:"gamma_divider"`
	AlphaTiltStart    float64 `json:"alpha_tilt_start"`
	AlphaTiltEnd      float64 `json:"alpha_tilt_end"`
	AlphaUseFnorm     bool    `json:"alpha_use_fnorm"`
	AlphaExpInterp    bool    `json:"alpha_exp_interp"`
	AlphaExpSharpness float64 `json:"alpha_exp_sharpness"`
	NumFreqBins       int     `json:"num_freq_bins"`
	EnergyScale       float64 `json:"energy_scale"`
}

// Params is a validated input with every default applied. Seed stays nil
// when the client sent none; the server picks one before queueing.
type Params struct {
	Prompt              string  `json:"prompt"`
	NegativePrompt      string  `json:"negative_prompt"`
	GuidanceScale       float64 `json:"guidance_scale"`
	NumInferenceSteps   int     `json:"num_inference_steps"`
	Size                Size    `json:"size"`
	NumImages           int     `json:"num_images"`
	Seed                *int64  `json:"seed,omitempty"`
	Acceleration        string  `json:"acceleration"`
	EnableSafetyChecker bool    `json:"enable_safety_checker"`
	OutputFormat        string  `json:"output_format"`
	SyncMode            bool    `json:"sync_mode"`
	CNS                 CNS     `json:"cns"`
}

// ParseInput decodes, validates and resolves a request body. The error is a
// *ValidationError listing every problem.
func ParseInput(body []byte) (Params, error) {
	in, err := DecodeInput(body)
	if err != nil {
		return Params{}, err
	}
	return in.Resolve(), nil
}

// Resolve applies the endpoint defaults to a decoded input.
func (in *Input) Resolve() Params {
	p := Params{
		Prompt:              deref(in.Prompt, ""),
		NegativePrompt:      deref(in.NegativePrompt, ""),
		GuidanceScale:       deref(in.GuidanceScale, DefaultGuidanceScale),
		NumInferenceSteps:   deref(in.NumInferenceSteps, DefaultNumInferenceSteps),
		Size:                SizePresets[DefaultImageSize],
		NumImages:           deref(in.NumImages, DefaultNumImages),
		Seed:                in.Seed,
		Acceleration:        deref(in.Acceleration, DefaultAcceleration),
		EnableSafetyChecker: deref(in.EnableSafetyChecker, true),
		OutputFormat:        deref(in.OutputFormat, DefaultOutputFormat),
		SyncMode:            deref(in.SyncMode, false),
		CNS: CNS{
			Enable:            deref(in.EnableCNS, false),
			SChurn:            deref(in.CNSSChurn, DefaultCNSSChurn),
			GammaSource:       deref(in.CNSGammaSource, DefaultCNSGammaSource),
			PowerGamma:        deref(in.CNSPowerGamma, DefaultCNSPowerGamma),
			GammaDivider:      deref(in.CNSGammaDivider, DefaultCNSGammaDivider),
			AlphaTiltStart:    deref(in.CNSAlphaTiltStart, DefaultCNSAlphaTiltStart),
			AlphaTiltEnd:      deref(in.CNSAlphaTiltEnd, DefaultCNSAlphaTiltEnd),
			AlphaUseFnorm:     deref(in.CNSAlphaUseFnorm, DefaultCNSAlphaUseFnorm),
			AlphaExpInterp:    deref(in.CNSAlphaExpInterp, DefaultCNSAlphaExpInterp),
			AlphaExpSharpness: deref(in.CNSAlphaExpSharpness, DefaultCNSAlphaExpSharpness),
			NumFreqBins:       deref(in.CNSNumFreqBins, DefaultCNSNumFreqBins),
			EnergyScale:       deref(in.CNSEnergyScale, DefaultCNSEnergyScale),
		},
	}
	if in.ImageSize != nil {
		p.Size = in.ImageSize.Resolve()
	}
	return p
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// DecodeInput parses a request body into an Input and validates every field.
//
// Rules (pydantic/FastAPI behaviour where fal would apply it):
//   - the body must be a JSON object; anything else is a 422 about "body";
//   - unknown fields are ignored;
//   - null counts as absent for every field except prompt;
//   - numbers must be JSON numbers, booleans JSON booleans, strings JSON
//     strings (no coercion of "5" to 5);
//   - integer fields accept integral numbers such as 28.0 but not 28.5.
func DecodeInput(body []byte) (*Input, error) {
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

	d := fieldDecoder{fields: fields}
	in := &Input{}

	in.Prompt = d.prompt("prompt")
	in.NegativePrompt = d.optString("negative_prompt", MaxPromptChars)
	in.GuidanceScale = d.number("guidance_scale", MinGuidance, MaxGuidance)
	in.NumInferenceSteps = d.integer("num_inference_steps", MinSteps, MaxSteps)
	in.ImageSize = d.imageSize("image_size")
	in.NumImages = d.integer("num_images", MinNumImages, MaxNumImages)
	in.Seed = d.seed("seed")
	in.Acceleration = d.enum("acceleration", AccelerationNone, AccelerationRegular, AccelerationHigh)
	in.EnableSafetyChecker = d.boolean("enable_safety_checker")
	in.OutputFormat = d.enum("output_format", FormatJPEG, FormatPNG, FormatWebP)
	in.SyncMode = d.boolean("sync_mode")

	// CNS ranges: the fal UI ranges listed in cns.md §2.1.
	in.EnableCNS = d.boolean("enable_cns")
	in.CNSSChurn = d.number("cns_s_churn", 0, 2)
	in.CNSGammaSource = d.enum("cns_gamma_source", GammaSourceMatrix, GammaSourceApproximation)
	in.CNSPowerGamma = d.number("cns_power_gamma", 0.1, 3)
	in.CNSGammaDivider = d.number("cns_gamma_divider", 0.1, 50)
	in.CNSAlphaTiltStart = d.number("cns_alpha_tilt_start", -2, 2)
	in.CNSAlphaTiltEnd = d.number("cns_alpha_tilt_end", -2, 2)
	in.CNSAlphaUseFnorm = d.boolean("cns_alpha_use_fnorm")
	in.CNSAlphaExpInterp = d.boolean("cns_alpha_exp_interp")
	in.CNSAlphaExpSharpness = d.number("cns_alpha_exp_sharpness", 0.1, 10)
	in.CNSNumFreqBins = d.integer("cns_num_freq_bins", 8, 128)
	in.CNSEnergyScale = d.number("cns_energy_scale", 0.5, 1.5)

	if len(d.errs) > 0 {
		return nil, &ValidationError{Detail: d.errs}
	}
	return in, nil
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

func (d *fieldDecoder) prompt(name string) *string {
	v, ok := d.fields[name]
	if !ok {
		d.fail([]any{"body", name}, "Field required", "missing", nil)
		return nil
	}
	s, ok := decodeString(v)
	if !ok {
		d.fail([]any{"body", name}, "Input should be a valid string", "string_type", nil)
		return nil
	}
	if s == "" {
		d.fail([]any{"body", name}, "String should have at least 1 character", "string_too_short",
			map[string]any{"min_length": 1})
		return nil
	}
	if !d.checkLength(name, s, MaxPromptChars) {
		return nil
	}
	return &s
}

func (d *fieldDecoder) optString(name string, maxChars int) *string {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	s, ok := decodeString(v)
	if !ok {
		d.fail([]any{"body", name}, "Input should be a valid string", "string_type", nil)
		return nil
	}
	if !d.checkLength(name, s, maxChars) {
		return nil
	}
	return &s
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

func (d *fieldDecoder) number(name string, lo, hi float64) *float64 {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	loc := []any{"body", name}
	f, ok := parseFloat(v)
	if !ok {
		d.fail(loc, "Input should be a valid number", "float_type", nil)
		return nil
	}
	if !d.checkRange(loc, f, lo, hi) {
		return nil
	}
	return &f
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

func (d *fieldDecoder) integer(name string, lo, hi int) *int {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	loc := []any{"body", name}
	n, problem := parseInt(v)
	if problem != "" {
		d.fail(loc, intErrorMessages[problem], problem, nil)
		return nil
	}
	if !d.checkIntRange(loc, n, lo, hi) {
		return nil
	}
	i := int(n)
	return &i
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

func (d *fieldDecoder) boolean(name string) *bool {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	switch string(v) {
	case "true":
		b := true
		return &b
	case "false":
		b := false
		return &b
	}
	d.fail([]any{"body", name}, "Input should be a valid boolean", "bool_type", nil)
	return nil
}

func (d *fieldDecoder) enum(name string, allowed ...string) *string {
	v := d.raw(name)
	if v == nil {
		return nil
	}
	loc := []any{"body", name}
	s, ok := decodeString(v)
	if !ok {
		d.fail(loc, "Input should be a valid string", "string_type", nil)
		return nil
	}
	for _, a := range allowed {
		if s == a {
			return &s
		}
	}
	d.fail(loc, "Input should be "+quoteAlternatives(allowed), "enum",
		map[string]any{"expected": quoteAlternatives(allowed)})
	return nil
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

func (d *fieldDecoder) imageSize(name string) *ImageSize {
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
