package wire

// AppID is the owner/alias part of every endpoint id this server serves;
// fal clients use it for status, result and cancel URLs.
const AppID = "fal-ai/flux-2"

// Endpoint is one fal endpoint id and the shape of its input.
type Endpoint struct {
	ID string
	// Edit endpoints take image_urls (1 to MaxImageURLs reference images)
	// and make image_size optional: without it the output takes the first
	// reference's size.
	Edit bool
	// LoRA endpoints take loras (up to MaxLoRAs {path, scale}).
	LoRA bool
}

// The endpoints of FLUX.2 [klein] 4B Base.
var (
	EndpointBase     = Endpoint{ID: "fal-ai/flux-2/klein/4b/base"}
	EndpointEdit     = Endpoint{ID: "fal-ai/flux-2/klein/4b/base/edit", Edit: true}
	EndpointLoRA     = Endpoint{ID: "fal-ai/flux-2/klein/4b/base/lora", LoRA: true}
	EndpointEditLoRA = Endpoint{ID: "fal-ai/flux-2/klein/4b/base/edit/lora", Edit: true, LoRA: true}
)

// Endpoints lists every endpoint this server serves.
func Endpoints() []Endpoint {
	return []Endpoint{EndpointBase, EndpointEdit, EndpointLoRA, EndpointEditLoRA}
}

// LookupEndpoint finds an endpoint by id; a job stored before endpoints
// were recorded (empty id) is the text-to-image endpoint's.
func LookupEndpoint(id string) (Endpoint, bool) {
	if id == "" {
		return EndpointBase, true
	}
	for _, e := range Endpoints() {
		if e.ID == id {
			return e, true
		}
	}
	return Endpoint{}, false
}
