package api

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// maxSeed bounds random seeds to [0, 2^53): JavaScript numbers hold them
// exactly, so a seed reported back can be sent again unchanged.
const maxSeed = 1 << 53

func randomSeed() int64 { return rand.Int64N(maxSeed) }

// jobPayload is what the API stores as a queue job's opaque payload.
type jobPayload struct {
	// Input is the validated input; its Seed is always set.
	Input wire.Params `json:"input"`
	// PreviewEvery asks the engine for previews (stream jobs only).
	PreviewEvery int `json:"preview_every,omitempty"`
}

// engineRequest maps the wire input to the engine's request. It is the one
// place where the two vocabularies meet.
func engineRequest(p jobPayload) engine.Request {
	in := p.Input
	var seed int64
	if in.Seed != nil {
		seed = *in.Seed
	}
	return engine.Request{
		Prompt:              in.Prompt,
		NegativePrompt:      in.NegativePrompt,
		GuidanceScale:       in.GuidanceScale,
		Steps:               in.NumInferenceSteps,
		Width:               in.Size.Width,
		Height:              in.Size.Height,
		NumImages:           in.NumImages,
		Seed:                seed,
		Acceleration:        in.Acceleration,
		EnableSafetyChecker: in.EnableSafetyChecker,
		OutputFormat:        in.OutputFormat,
		CNS: engine.CNSParams{
			Enable:            in.CNS.Enable,
			SChurn:            in.CNS.SChurn,
			GammaSource:       in.CNS.GammaSource,
			PowerGamma:        in.CNS.PowerGamma,
			GammaDivider:      in.CNS.GammaDivider,
			AlphaTiltStart:    in.CNS.AlphaTiltStart,
			AlphaTiltEnd:      in.CNS.AlphaTiltEnd,
			AlphaUseFnorm:     in.CNS.AlphaUseFnorm,
			AlphaExpInterp:    in.CNS.AlphaExpInterp,
			AlphaExpSharpness: in.CNS.AlphaExpSharpness,
			NumFreqBins:       in.CNS.NumFreqBins,
			EnergyScale:       in.CNS.EnergyScale,
		},
		PreviewEvery: p.PreviewEvery,
	}
}

// checkEngineLimits rejects sizes the loaded engine cannot make, so the
// client gets the 422 at submit rather than from the result.
func checkEngineLimits(info engine.Info, size wire.Size) error {
	loc := []any{"body", "image_size"}
	if info.MinSide > 0 && (size.Width < info.MinSide || size.Height < info.MinSide) {
		return wire.NewValidationError(loc, fmt.Sprintf("Value error, the loaded model needs sides of at least %d pixels", info.MinSide), "value_error")
	}
	if info.MaxSide > 0 && (size.Width > info.MaxSide || size.Height > info.MaxSide) {
		return wire.NewValidationError(loc, fmt.Sprintf("Value error, the loaded model allows sides of at most %d pixels", info.MaxSide), "value_error")
	}
	if info.MaxPixels > 0 && size.Width*size.Height > info.MaxPixels {
		return wire.NewValidationError(loc, fmt.Sprintf("Value error, the loaded model allows at most %d pixels", info.MaxPixels), "value_error")
	}
	return nil
}

// readBody reads a request body under the configured size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return body, nil
}

// submission is a decoded generation request, ready to queue.
type submission struct {
	payload       jobPayload
	priority      queue.Priority
	startDeadline time.Time
	webhookURL    string
}

// decodeSubmission reads and validates everything a generation request
// carries: body, fal_webhook, x-fal-request-timeout, x-fal-queue-priority.
// The body is parsed as JSON whatever the Content-Type says (curl examples
// omit it).
func (s *Server) decodeSubmission(w http.ResponseWriter, r *http.Request) (submission, error) {
	var sub submission
	body, err := s.readBody(w, r)
	if err != nil {
		return sub, err
	}
	params, err := wire.ParseInput(body)
	if err != nil {
		return sub, err
	}
	if e := s.currentEngine(); e != nil {
		if err := checkEngineLimits(e.Info(), params.Size); err != nil {
			return sub, err
		}
	}
	if params.Seed == nil {
		seed := s.opts.NewSeed()
		params.Seed = &seed
	}
	sub.payload = jobPayload{Input: params}

	if hook := r.URL.Query().Get("fal_webhook"); hook != "" {
		u, err := url.Parse(hook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return sub, wire.NewValidationError([]any{"query", "fal_webhook"},
				"Input should be an absolute http or https URL", "url_parsing")
		}
		sub.webhookURL = hook
	}
	if v := strings.TrimSpace(r.Header.Get("X-Fal-Request-Timeout")); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 || secs > 7*24*3600 {
			return sub, wire.NewValidationError([]any{"header", "x-fal-request-timeout"},
				"Input should be a number of seconds greater than 0 and at most 604800", "float_parsing")
		}
		sub.startDeadline = time.Now().Add(time.Duration(secs * float64(time.Second)))
	}
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Fal-Queue-Priority")), "low") {
		sub.priority = queue.PriorityLow
	}
	return sub, nil
}

// enqueue submits a decoded request as a job with the given id.
func (s *Server) enqueue(r *http.Request, id string, sub submission, ephemeral bool) (*queue.Job, error) {
	payload, err := json.Marshal(sub.payload)
	if err != nil {
		return nil, fmt.Errorf("encode job payload: %w", err)
	}
	return s.queue.Submit(r.Context(), queue.SubmitRequest{
		ID:            id,
		Endpoint:      wire.EndpointID,
		Payload:       payload,
		Priority:      sub.priority,
		StartDeadline: sub.startDeadline,
		WebhookURL:    sub.webhookURL,
		Ephemeral:     ephemeral,
	})
}

// requestURLs are the absolute queue URLs of a request on this server.
func (s *Server) requestURLs(id string) wire.RequestURLs {
	base := s.opts.PublicURL + "/queue/" + wire.AppID + "/requests/" + id
	return wire.RequestURLs{ResponseURL: base, StatusURL: base + "/status", CancelURL: base + "/cancel"}
}

// truthy accepts the logs flag as JS (1) and Python (true) send it.
func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
