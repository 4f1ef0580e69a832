// Package playground serves the browser playground at "/": a static page
// (embedded, no CDN, works offline) that drives the fal routes of this
// server (submit through POST /{endpoint}/stream, queue position from the
// status stream, cancel, storage uploads) and a small config document,
// GET /playground/config.json, telling the page whether a key is needed,
// which endpoints are served and every field's default and bounds (read
// from package wire, so the page never restates them).
package playground

import (
	"embed"
	"encoding/json"
	"net/http"

	"github.com/kleinserve/kleinserve/internal/wire"
)

//go:embed static
var static embed.FS

// Limits of the endpoints the page offers beyond the base one; each
// endpoint validates them again.
const (
	// MaxReferenceImages is how many image_urls an edit takes.
	MaxReferenceImages = 4
	// MaxLoras is how many loras a LoRA endpoint takes.
	MaxLoras = 3
	// DefaultLoraScale is a LoRA's scale when the form leaves it.
	DefaultLoraScale = 1.0
)

// Config is what the page learns from the server.
type Config struct {
	// AuthRequired shows the API key box: the server has keys.
	AuthRequired bool
	// Served lists the endpoint ids this server serves; the page offers
	// the others as not available.
	Served []string
}

// Field is one input field's default and bounds, as the page shows them.
type Field struct {
	Default any      `json:"default"`
	Min     *float64 `json:"min,omitempty"`
	Max     *float64 `json:"max,omitempty"`
	Enum    []string `json:"enum,omitempty"`
}

// Document is the body of GET /playground/config.json.
type Document struct {
	AuthRequired       bool                 `json:"auth_required"`
	Endpoint           string               `json:"endpoint"`
	AppID              string               `json:"app_id"`
	Served             []string             `json:"served"`
	Fields             map[string]Field     `json:"fields"`
	SizePresets        map[string]wire.Size `json:"size_presets"`
	MinSide            int                  `json:"min_side"`
	MaxSide            int                  `json:"max_side"`
	SizeMultiple       int                  `json:"size_multiple"`
	MaxPixels          int                  `json:"max_pixels"`
	MaxReferenceImages int                  `json:"max_reference_images"`
	MaxLoras           int                  `json:"max_loras"`
}

// NewDocument builds the config document from wire's defaults and limits.
func NewDocument(c Config) Document {
	bound := func(v float64) *float64 { return &v }
	num := func(def, lo, hi float64) Field { return Field{Default: def, Min: bound(lo), Max: bound(hi)} }
	served := c.Served
	if served == nil {
		served = []string{}
	}
	return Document{
		AuthRequired: c.AuthRequired,
		Endpoint:     wire.EndpointID,
		AppID:        wire.AppID,
		Served:       served,
		Fields: map[string]Field{
			"negative_prompt":         {Default: ""},
			"guidance_scale":          num(wire.DefaultGuidanceScale, wire.MinGuidance, wire.MaxGuidance),
			"num_inference_steps":     num(wire.DefaultNumInferenceSteps, wire.MinSteps, wire.MaxSteps),
			"image_size":              {Default: wire.DefaultImageSize},
			"num_images":              num(wire.DefaultNumImages, wire.MinNumImages, wire.MaxNumImages),
			"seed":                    {Default: nil},
			"acceleration":            {Default: wire.DefaultAcceleration, Enum: []string{wire.AccelerationNone, wire.AccelerationRegular, wire.AccelerationHigh}},
			"enable_safety_checker":   {Default: true},
			"output_format":           {Default: wire.DefaultOutputFormat, Enum: []string{wire.FormatJPEG, wire.FormatPNG, wire.FormatWebP}},
			"sync_mode":               {Default: false},
			"enable_cns":              {Default: false},
			"cns_s_churn":             {Default: wire.DefaultCNSSChurn},
			"cns_gamma_source":        {Default: wire.DefaultCNSGammaSource, Enum: []string{wire.GammaSourceMatrix, wire.GammaSourceApproximation}},
			"cns_power_gamma":         {Default: wire.DefaultCNSPowerGamma},
			"cns_gamma_divider":       {Default: wire.DefaultCNSGammaDivider},
			"cns_alpha_tilt_start":    {Default: wire.DefaultCNSAlphaTiltStart},
			"cns_alpha_tilt_end":      {Default: wire.DefaultCNSAlphaTiltEnd},
			"cns_alpha_use_fnorm":     {Default: wire.DefaultCNSAlphaUseFnorm},
			"cns_alpha_exp_interp":    {Default: wire.DefaultCNSAlphaExpInterp},
			"cns_alpha_exp_sharpness": {Default: wire.DefaultCNSAlphaExpSharpness},
			"cns_num_freq_bins":       {Default: wire.DefaultCNSNumFreqBins},
			"cns_energy_scale":        {Default: wire.DefaultCNSEnergyScale},
			"lora_scale":              {Default: DefaultLoraScale},
		},
		SizePresets:        wire.SizePresets,
		MinSide:            wire.MinSide,
		MaxSide:            wire.MaxSide,
		SizeMultiple:       wire.SizeMultiple,
		MaxPixels:          wire.MaxPixels,
		MaxReferenceImages: MaxReferenceImages,
		MaxLoras:           MaxLoras,
	}
}

// Handler serves "/" (the page), /playground/config.json and the page's
// files under /playground/.
func Handler(c Config) http.Handler {
	doc := NewDocument(c)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "static/index.html")
	})
	mux.HandleFunc("GET /playground/config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /playground/{file}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "static/"+r.PathValue("file"))
	})
	return mux
}
