// Package playground serves the browser playground at "/": a static page
// (embedded, no CDN, works offline) that drives the fal routes of this
// server (submit through POST /{endpoint}/stream, queue position from the
// status stream, cancel, storage uploads) and a small config document,
// GET /playground/config.json, telling the page whether a key is needed,
// which models are served and, for each of their endpoints, every field's
// default and bounds (read from package wire, so the page never restates
// them).
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
	// Catalog is what the server serves; the page offers its models, the
	// first one selected by default. Nil: wire.DefaultCatalog().
	Catalog *wire.Catalog
}

// Field is one input field's default and bounds, as the page shows them.
type Field struct {
	Default any      `json:"default"`
	Min     *float64 `json:"min,omitempty"`
	Max     *float64 `json:"max,omitempty"`
	Enum    []string `json:"enum,omitempty"`
}

// Model is one served model and its endpoints, as the page offers them.
type Model struct {
	ID        string     `json:"id"`
	Distilled bool       `json:"distilled"`
	LoRA      bool       `json:"lora"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint of a model: which form mode it serves (edit:
// reference images; lora: LoRA weights) and the fields its input takes.
type Endpoint struct {
	ID     string           `json:"id"`
	Edit   bool             `json:"edit"`
	LoRA   bool             `json:"lora"`
	Fields map[string]Field `json:"fields"`
}

// Document is the body of GET /playground/config.json.
type Document struct {
	AuthRequired bool   `json:"auth_required"`
	AppID        string `json:"app_id"`
	// Models are the catalog's, in its order: the first is the page's default.
	Models             []Model              `json:"models"`
	SizePresets        map[string]wire.Size `json:"size_presets"`
	MinSide            int                  `json:"min_side"`
	MaxSide            int                  `json:"max_side"`
	SizeMultiple       int                  `json:"size_multiple"`
	MaxPixels          int                  `json:"max_pixels"`
	MaxReferenceImages int                  `json:"max_reference_images"`
	MaxLoras           int                  `json:"max_loras"`
}

// NewDocument builds the config document from the catalog's endpoints'
// fields and wire's limits.
func NewDocument(c Config) Document {
	cat := c.Catalog
	if cat == nil {
		cat = wire.DefaultCatalog()
	}
	models := []Model{}
	for _, m := range cat.Models() {
		pm := Model{ID: m.ID, Distilled: m.Distilled, LoRA: m.LoRA}
		for _, ep := range m.Endpoints() {
			pm.Endpoints = append(pm.Endpoints, Endpoint{ID: ep.ID, Edit: ep.Edit, LoRA: ep.LoRA, Fields: endpointFields(ep)})
		}
		models = append(models, pm)
	}
	return Document{
		AuthRequired:       c.AuthRequired,
		AppID:              wire.AppID,
		Models:             models,
		SizePresets:        wire.SizePresets,
		MinSide:            wire.MinSide,
		MaxSide:            wire.MaxSide,
		SizeMultiple:       wire.SizeMultiple,
		MaxPixels:          wire.MaxPixels,
		MaxReferenceImages: wire.MaxImageURLs,
		MaxLoras:           wire.MaxLoRAs,
	}
}

// endpointFields are the endpoint's input fields, by name.
func endpointFields(ep wire.Endpoint) map[string]Field {
	fields := map[string]Field{}
	for _, f := range ep.Fields() {
		fields[f.Name] = Field{Default: f.Default, Min: f.Min, Max: f.Max, Enum: f.Enum}
		if f.Kind == wire.KindLoRAs {
			// The form's per-LoRA scale input: the bounds of loras' scales.
			fields["lora_scale"] = Field{Default: engine.DefaultLoRAScale, Min: f.Min, Max: f.Max}
		}
	}
	return fields
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
