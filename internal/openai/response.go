package openai

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// ImagesResponse is the answer of the generation and edit endpoints.
type ImagesResponse struct {
	Created int64   `json:"created"`
	Data    []Image `json:"data"`
	// Background is "opaque": the model paints every pixel.
	Background   string `json:"background,omitempty"`
	OutputFormat string `json:"output_format,omitempty"`
	// Size is the made size, "WxH".
	Size string `json:"size,omitempty"`
	// Usage is present because clients read it; this server does not
	// meter tokens, so every count is zero.
	Usage *Usage `json:"usage,omitempty"`
	// Seed is this server's addition: the seed of the first image (image
	// k used Seed+k), to reproduce the result through the seed parameter.
	Seed int64 `json:"seed"`
}

// Image is one image of a response: a URL or base64 data.
type Image struct {
	B64JSON string `json:"b64_json,omitempty"`
	URL     string `json:"url,omitempty"`
}

// Usage is OpenAI's token usage block.
type Usage struct {
	InputTokens        int          `json:"input_tokens"`
	InputTokensDetails TokenDetails `json:"input_tokens_details"`
	OutputTokens       int          `json:"output_tokens"`
	TotalTokens        int          `json:"total_tokens"`
}

// TokenDetails splits a token count by modality.
type TokenDetails struct {
	ImageTokens int `json:"image_tokens"`
	TextTokens  int `json:"text_tokens"`
}

// BackgroundOpaque is the only background this model makes.
const BackgroundOpaque = "opaque"

// QualityAuto is reported in stream events, which require a quality; the
// endpoint has no quality levels.
const QualityAuto = "auto"

// BuildResponse translates a fal output into the OpenAI response.
func BuildResponse(req Request, output json.RawMessage, created int64) (*ImagesResponse, error) {
	out, err := decodeOutput(output)
	if err != nil {
		return nil, err
	}
	resp := &ImagesResponse{
		Created:      created,
		Data:         make([]Image, 0, len(out.Images)),
		Background:   BackgroundOpaque,
		OutputFormat: formatOf(out.Images[0].ContentType, req.OutputFormat),
		Size:         sizeOf(out.Images[0]),
		Usage:        &Usage{},
		Seed:         out.Seed,
	}
	for i, img := range out.Images {
		if req.ResponseFormat == FormatB64JSON {
			b64, err := base64Of(img.URL)
			if err != nil {
				return nil, fmt.Errorf("image %d: %w", i, err)
			}
			resp.Data = append(resp.Data, Image{B64JSON: b64})
		} else {
			resp.Data = append(resp.Data, Image{URL: img.URL})
		}
	}
	return resp, nil
}

func decodeOutput(output json.RawMessage) (*wire.Output, error) {
	var out wire.Output
	if err := json.Unmarshal(output, &out); err != nil {
		return nil, fmt.Errorf("decode fal output: %w", err)
	}
	if len(out.Images) == 0 {
		return nil, fmt.Errorf("fal output has no images")
	}
	return &out, nil
}

// base64Of extracts the payload of a base64 data: URI (what the endpoint
// returns under sync_mode).
func base64Of(uri string) (string, error) {
	if !strings.HasPrefix(uri, "data:") {
		return "", fmt.Errorf("image is not inline (sync_mode output expected)")
	}
	_, payload, ok := strings.Cut(uri, ";base64,")
	if !ok {
		return "", fmt.Errorf("data URI is not base64")
	}
	return payload, nil
}

// formatOf is OpenAI's output_format for a content type.
func formatOf(contentType, fallback string) string {
	for _, f := range engine.OutputFormats() {
		if c, err := f.Codec(); err == nil && c.ContentType == contentType {
			return string(f)
		}
	}
	return fallback
}

func sizeOf(img wire.Image) string { return fmt.Sprintf("%dx%d", img.Width, img.Height) }

// StreamEvent is one Server-Sent Event of a streamed generation or edit:
// a partial image, or a completed image.
type StreamEvent struct {
	Type              string `json:"type"`
	B64JSON           string `json:"b64_json"`
	CreatedAt         int64  `json:"created_at"`
	Size              string `json:"size"`
	Quality           string `json:"quality"`
	Background        string `json:"background"`
	OutputFormat      string `json:"output_format"`
	PartialImageIndex *int   `json:"partial_image_index,omitempty"`
	Usage             *Usage `json:"usage,omitempty"`
}

// Stream event types.
const (
	EventGenerationPartial   = "image_generation.partial_image"
	EventGenerationCompleted = "image_generation.completed"
	EventEditPartial         = "image_edit.partial_image"
	EventEditCompleted       = "image_edit.completed"
	// EventError carries an error envelope after the stream started.
	EventError = "error"
)

func eventType(k Kind, completed bool) string {
	switch {
	case k == Edit && completed:
		return EventEditCompleted
	case k == Edit:
		return EventEditPartial
	case completed:
		return EventGenerationCompleted
	}
	return EventGenerationPartial
}

// PartialEvent is the partial_image event of a preview. Size is the
// requested size: the preview itself is smaller.
func PartialEvent(req Request, index int, preview []byte, created int64) StreamEvent {
	return StreamEvent{
		Type:              eventType(req.Kind, false),
		B64JSON:           base64.StdEncoding.EncodeToString(preview),
		CreatedAt:         created,
		Size:              req.Size,
		Quality:           QualityAuto,
		Background:        BackgroundOpaque,
		OutputFormat:      formatOf(http.DetectContentType(preview), req.OutputFormat),
		PartialImageIndex: &index,
	}
}

// CompletedEvents are the completed events of a fal output, one per image.
func CompletedEvents(req Request, output json.RawMessage, created int64) ([]StreamEvent, error) {
	out, err := decodeOutput(output)
	if err != nil {
		return nil, err
	}
	events := make([]StreamEvent, 0, len(out.Images))
	for i, img := range out.Images {
		b64, err := base64Of(img.URL)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		events = append(events, StreamEvent{
			Type:         eventType(req.Kind, true),
			B64JSON:      b64,
			CreatedAt:    created,
			Size:         sizeOf(img),
			Quality:      QualityAuto,
			Background:   BackgroundOpaque,
			OutputFormat: formatOf(img.ContentType, req.OutputFormat),
			Usage:        &Usage{},
		})
	}
	return events, nil
}

// partialSchedule picks which previews a stream forwards: up to want of
// them, spread over the run. The k-th (from 0) is the first preview at or
// after step ceil((k+1)·total/(want+1)), so three partials of 28 steps
// come from the previews nearest steps 7, 14 and 21.
type partialSchedule struct {
	want, sent int
}

// take reports whether the preview of this step is forwarded.
func (p *partialSchedule) take(step, total int) bool {
	if p.sent >= p.want || total <= 0 {
		return false
	}
	threshold := ((p.sent+1)*total + p.want) / (p.want + 1) // ceil
	if step < threshold {
		return false
	}
	p.sent++
	return true
}
