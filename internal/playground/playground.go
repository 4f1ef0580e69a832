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

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/wire"
)

//go:embed static
var static embed.FS

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

// NewDocument builds the config document from wire's fields and limits.
func NewDocument(c Config) Document {
	served := c.Served
	if served == nil {
		served = []string{}
	}
	fields := map[string]Field{}
	for _, ep := range wire.Endpoints() {
		for _, f := range ep.Fields() {
			if _, seen := fields[f.Name]; seen {
				continue
			}
			fields[f.Name] = Field{Default: f.Default, Min: f.Min, Max: f.Max, Enum: f.Enum}
			if f.Kind == wire.KindLoRAs {
				// The form's per-LoRA scale input: the bounds of loras' scales.
				fields["lora_scale"] = Field{Default: engine.DefaultLoRAScale, Min: f.Min, Max: f.Max}
			}
		}
	}
	return Document{
		AuthRequired:       c.AuthRequired,
		Endpoint:           wire.EndpointBase.ID,
		AppID:              wire.AppID,
		Served:             served,
		Fields:             fields,
		SizePresets:        wire.SizePresets,
		MinSide:            wire.MinSide,
		MaxSide:            wire.MaxSide,
		SizeMultiple:       wire.SizeMultiple,
		MaxPixels:          wire.MaxPixels,
		MaxReferenceImages: wire.MaxImageURLs,
		MaxLoras:           wire.MaxLoRAs,
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
