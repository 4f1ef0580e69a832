package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// ManifestFile is the name of the manifest inside a model directory.
const ManifestFile = "model.json"

// Graph names of a model directory.
const (
	GraphTextEncoder   = "text_encoder"
	GraphTransformer   = "transformer"
	GraphVAEDecoder    = "vae_decoder"
	GraphVAEEncoder    = "vae_encoder"
	GraphSafetyChecker = "safety_checker"
)

// Manifest is model.json: what the exporter wrote about the graphs.
type Manifest struct {
	FormatVersion int               `json:"format_version"`
	Name          string            `json:"name"`
	Variant       string            `json:"variant"`
	Precision     string            `json:"precision"`
	Architecture  Architecture      `json:"architecture"`
	Text          TextSpec          `json:"text"`
	Latent        LatentSpec        `json:"latent"`
	Scheduler     SchedulerSpec     `json:"scheduler"`
	Defaults      DefaultsSpec      `json:"defaults"`
	Safety        SafetySpec        `json:"safety"`
	Preview       PreviewSpec       `json:"preview"`
	Graphs        map[string]Graph  `json:"graphs"`
	Files         map[string]FileID `json:"files"`
	ParamCounts   map[string]int64  `json:"param_counts"`
	// Checkpoint says which FLUX.2 [klein] checkpoint the directory holds
	// (or mimics, for a tiny model). It is absent from a 4B Base export, so
	// nil means 4B Base: docs/variants.md.
	Checkpoint *CheckpointSpec `json:"checkpoint,omitempty"`
}

// CheckpointSpec is model.json's checkpoint: one of the four published
// klein checkpoints (scripts/klein_variants.py writes it).
type CheckpointSpec struct {
	Family  string `json:"family"`  // "flux.2-klein"
	Variant string `json:"variant"` // "4b-distilled", "9b-base", "9b-distilled"
	Size    string `json:"size"`    // "4b" or "9b"
	// Distilled checkpoints run one transformer call per step and no CFG,
	// whatever guidance is asked for (diffusers' Flux2KleinPipeline).
	Distilled bool `json:"distilled"`
	// RepoID is the diffusers checkpoint, e.g. black-forest-labs/FLUX.2-klein-4B.
	RepoID string `json:"repo_id"`
	// TextEncoder is the Qwen3 model the text encoder graph holds; the
	// variants of one size share it (the same text_encoder.onnx bytes).
	TextEncoder string `json:"text_encoder"`
	// EndpointPrefix is fal's endpoint id, e.g. "fal-ai/flux-2/klein/4b";
	// /edit, /lora and /edit/lora hang below it.
	EndpointPrefix string `json:"endpoint_prefix"`
	License        string `json:"license"`
}

// TextSpec describes prompt encoding.
type TextSpec struct {
	MaxLength         int    `json:"max_length"`
	PadTokenID        *int64 `json:"pad_token_id"`
	HiddenLayers      []int  `json:"hidden_layers"`
	HiddenSize        int    `json:"hidden_size"`
	JointAttentionDim int    `json:"joint_attention_dim"`
	TemplatePrefix    string `json:"template_prefix"`
	TemplateSuffix    string `json:"template_suffix"`
}

// LatentSpec describes the packed latent space.
type LatentSpec struct {
	Channels      int     `json:"channels"`
	VAEChannels   int     `json:"vae_channels"`
	SpatialFactor int     `json:"spatial_factor"`
	BNEps         float64 `json:"bn_eps"`
}

// SchedulerSpec holds the flow-matching schedule constants.
type SchedulerSpec struct {
	Type         string `json:"type"`
	TimeShift    string `json:"time_shift"`
	TimestepBF16 bool   `json:"timestep_bf16"`
}

// DefaultsSpec are the model's own defaults (the API has fal's).
type DefaultsSpec struct {
	NumInferenceSteps int     `json:"num_inference_steps"`
	GuidanceScale     float64 `json:"guidance_scale"`
}

// SafetySpec describes the safety classifier's preprocessing.
type SafetySpec struct {
	Model     string    `json:"model"`
	InputSize int       `json:"input_size"`
	Mean      []float64 `json:"mean"`
	Std       []float64 `json:"std"`
}

// PreviewSpec is a linear map from one packed latent token to the mean RGB
// (in [-1,1]) of its 16x16 pixel patch, fitted by the exporter through the
// VAE decoder; it makes step previews nearly free.
type PreviewSpec struct {
	RGBFactors [][]float64 `json:"rgb_factors"`
	RGBBias    []float64   `json:"rgb_bias"`
}

// Graph is one ONNX file and its declared interface.
type Graph struct {
	File      string     `json:"file"`
	Precision string     `json:"precision"`
	Inputs    []TensorIO `json:"inputs"`
	Outputs   []TensorIO `json:"outputs"`
	// ExternalData names the file holding the weights of a large graph.
	ExternalData string `json:"external_data"`
	// Attention is "fused" when the graph runs attention as ONNX Attention
	// nodes; absent for MatMul/Softmax/MatMul (decomposed) attention.
	Attention string `json:"attention"`
}

// TensorIO is a declared graph input or output. Shape entries are numbers
// for fixed dimensions and strings for symbolic ones.
type TensorIO struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []any  `json:"shape"`
}

// FileID pins a file's size and checksum.
type FileID struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// LoadManifest reads and checks dir/model.json.
func LoadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, nil
}

func (m *Manifest) check() error {
	var errs []error
	if m.FormatVersion != 1 {
		errs = append(errs, fmt.Errorf("format_version %d is not supported (want 1)", m.FormatVersion))
	}
	if m.Text.MaxLength <= 0 {
		errs = append(errs, errors.New("text.max_length must be positive"))
	}
	if m.Text.PadTokenID == nil {
		errs = append(errs, errors.New("text.pad_token_id is missing"))
	}
	if len(m.Text.HiddenLayers) == 0 {
		errs = append(errs, errors.New("text.hidden_layers is empty"))
	}
	if m.Text.JointAttentionDim <= 0 {
		errs = append(errs, errors.New("text.joint_attention_dim must be positive"))
	}
	if m.Latent.Channels != sampler.PackedChannels || m.Latent.SpatialFactor != sampler.Downscale {
		errs = append(errs, fmt.Errorf("latent: want %d channels and spatial factor %d, got %d and %d",
			sampler.PackedChannels, sampler.Downscale, m.Latent.Channels, m.Latent.SpatialFactor))
	}
	for _, g := range []string{GraphTextEncoder, GraphTransformer, GraphVAEDecoder, GraphSafetyChecker} {
		if _, ok := m.Graphs[g]; !ok {
			errs = append(errs, fmt.Errorf("graph %q missing", g))
		}
	}
	if len(m.Safety.Mean) != 3 || len(m.Safety.Std) != 3 || m.Safety.InputSize <= 0 {
		errs = append(errs, errors.New("safety: want input_size and 3 mean/std values"))
	}
	if n := len(m.Preview.RGBFactors); n != 0 && (n != m.Latent.Channels || len(m.Preview.RGBBias) != 3) {
		errs = append(errs, fmt.Errorf("preview: want %d rows of rgb_factors and 3 biases", m.Latent.Channels))
	}
	return errors.Join(errs...)
}
