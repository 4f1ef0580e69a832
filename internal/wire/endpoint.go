package wire

import (
	"fmt"
	"strings"
)

// AppID is the owner/alias part of every endpoint id this server serves;
// fal clients use it for status, result and cancel URLs.
const AppID = "fal-ai/flux-2"

// Model is one served model as the protocol sees it: the id its endpoints
// share and what their input accepts.
type Model struct {
	// ID is the text-to-image endpoint's id ("fal-ai/flux-2/klein/4b/base");
	// the edit and LoRA endpoints hang below it (/edit, /lora, /edit/lora).
	ID string
	// Distilled models (4 steps, no classifier-free guidance) take no
	// guidance_scale, negative_prompt, acceleration or CNS fields.
	Distilled bool
	// LoRA reports whether the model's transformer takes LoRA inputs: the
	// /lora endpoints exist only then.
	LoRA bool
}

// Endpoints are the model's endpoints, text-to-image first.
func (m Model) Endpoints() []Endpoint {
	eps := []Endpoint{{ID: m.ID, Model: m.ID, Distilled: m.Distilled},
		{ID: m.ID + "/edit", Model: m.ID, Distilled: m.Distilled, Edit: true}}
	if m.LoRA {
		eps = append(eps, Endpoint{ID: m.ID + "/lora", Model: m.ID, Distilled: m.Distilled, LoRA: true},
			Endpoint{ID: m.ID + "/edit/lora", Model: m.ID, Distilled: m.Distilled, Edit: true, LoRA: true})
	}
	return eps
}

// Endpoint is one fal endpoint id and the shape of its input.
type Endpoint struct {
	ID string
	// Model is the id of the model that serves it (Model.ID).
	Model string
	// Distilled is the model's: see Model.
	Distilled bool
	// Edit endpoints take image_urls (1 to MaxImageURLs reference images)
	// and make image_size optional: without it the output takes the first
	// reference's size.
	Edit bool
	// LoRA endpoints take loras (up to MaxLoRAs {path, scale}).
	LoRA bool
}

// Base4B is FLUX.2 [klein] 4B Base, the model this server was first built
// for: the default catalog's, and the endpoint of jobs queued before jobs
// named theirs.
var Base4B = Model{ID: "fal-ai/flux-2/klein/4b/base", LoRA: true}

// The endpoints of Base4B.
var (
	EndpointBase     = Base4B.Endpoints()[0]
	EndpointEdit     = Base4B.Endpoints()[1]
	EndpointLoRA     = Base4B.Endpoints()[2]
	EndpointEditLoRA = Base4B.Endpoints()[3]
)

// Catalog is the set of models, and so of endpoints, a server serves.
type Catalog struct {
	models    []Model
	endpoints []Endpoint
	byID      map[string]Endpoint
}

// NewCatalog builds the catalog of the given models (at least one, ids
// distinct and under AppID).
func NewCatalog(models ...Model) (*Catalog, error) {
	if len(models) == 0 {
		return nil, fmt.Errorf("wire: a catalog needs a model")
	}
	c := &Catalog{byID: map[string]Endpoint{}}
	for _, m := range models {
		if !strings.HasPrefix(m.ID, AppID+"/") {
			return nil, fmt.Errorf("wire: model id %q is not under %s/", m.ID, AppID)
		}
		for _, ep := range m.Endpoints() {
			if _, dup := c.byID[ep.ID]; dup {
				return nil, fmt.Errorf("wire: endpoint %s is served twice", ep.ID)
			}
			c.byID[ep.ID] = ep
			c.endpoints = append(c.endpoints, ep)
		}
		c.models = append(c.models, m)
	}
	return c, nil
}

// DefaultCatalog serves Base4B.
func DefaultCatalog() *Catalog {
	c, _ := NewCatalog(Base4B)
	return c
}

// Models lists the catalog's models, in the order they were given.
func (c *Catalog) Models() []Model { return c.models }

// Endpoints lists every endpoint, model by model.
func (c *Catalog) Endpoints() []Endpoint { return c.endpoints }

// Lookup finds an endpoint by id.
func (c *Catalog) Lookup(id string) (Endpoint, bool) {
	ep, ok := c.byID[id]
	return ep, ok
}

// Endpoints lists every endpoint of the default catalog.
func Endpoints() []Endpoint { return DefaultCatalog().Endpoints() }
