package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// ManifestFile is the name of the manifest inside a model directory.
const ManifestFile = "model.json"

// TokenizerDir is the tokenizer's folder in a model directory
// (vocab.json, merges.txt, tokenizer_config.json).
const TokenizerDir = "tokenizer"

// Graph names of a model directory.
const (
	GraphTextEncoder   = "text_encoder"
	GraphTransformer   = "transformer"
	GraphVAEDecoder    = "vae_decoder"
	GraphVAEEncoder    = "vae_encoder"
	GraphSafetyChecker = "safety_checker"
)

// graphNames lists every graph of a model directory, in the order the
// engine opens them.
func graphNames() []string {
	return []string{GraphTextEncoder, GraphTransformer, GraphVAEDecoder, GraphVAEEncoder, GraphSafetyChecker}
}

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
	// Shared lets the directory take files from a sibling directory (one
	// in the same parent folder) instead of holding copies: it maps a name
	// of Files, or a folder of them ("tokenizer"), to the sibling's
	// directory name ("tiny"), where the same name holds the same bytes.
	// Files still pins their sizes and checksums. The committed tiny
	// variants share what is byte-identical across them; an export of real
	// weights is self-contained and has none (models/README.md). Read it
	// through Path.
	Shared map[string]string `json:"shared,omitempty"`
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

// LoadManifest reads and checks dir/model.json, and that every file its
// Shared names exists in the sibling with the size Files gives.
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
	if err := m.checkShared(dir); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, nil
}

// Path is where the model directory dir keeps name, a file of Files or a
// folder such as TokenizerDir: dir/name, or the same name in the sibling
// directory Shared gives.
func (m *Manifest) Path(dir, name string) string {
	if key, ok := m.sharedKey(name); ok {
		return filepath.Join(dir, "..", m.Shared[key], filepath.FromSlash(name))
	}
	return filepath.Join(dir, filepath.FromSlash(name))
}

// sharedKey finds the key of Shared that covers name: name itself, or the
// folder holding it. check refuses nested keys, so at most one matches.
func (m *Manifest) sharedKey(name string) (key string, ok bool) {
	if _, ok := m.Shared[name]; ok {
		return name, true
	}
	for key := range m.Shared {
		if strings.HasPrefix(name, key+"/") {
			return key, true
		}
	}
	return "", false
}

// sharedFiles is the names of Files that key of Shared covers, sorted.
func (m *Manifest) sharedFiles(key string) []string {
	var names []string
	for name := range m.Files {
		if name == key || strings.HasPrefix(name, key+"/") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// isDirName reports whether s names a directory beside another: one path
// element, not "." or "..", so no path (absolute or relative) at all.
func isDirName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && filepath.IsLocal(s)
}

// checkSharedSyntax checks Shared without the file system: keys that name
// what Files pins, inside the directory and not inside another key;
// sibling names that are names, not paths; and a shared graph's external
// data shared from the same sibling (ONNX Runtime reads it from beside the
// graph it opens).
func (m *Manifest) checkSharedSyntax() []error {
	var errs []error
	keys := slices.Sorted(maps.Keys(m.Shared))
	for _, key := range keys {
		switch {
		case key == "" || path.Clean(key) != key || strings.Contains(key, `\`) || !filepath.IsLocal(filepath.FromSlash(key)):
			errs = append(errs, fmt.Errorf("shared %q: the key must be a clean slash-separated path inside the model directory", key))
			continue
		case len(m.sharedFiles(key)) == 0:
			errs = append(errs, fmt.Errorf("shared %q: no file of files is %q or inside it", key, key))
		}
		if sibling := m.Shared[key]; !isDirName(sibling) {
			errs = append(errs, fmt.Errorf("shared %q: %q is not the name of a sibling directory (no path, absolute or relative: the directory next to this one that holds %s)",
				key, sibling, key))
		}
		for _, other := range keys {
			if strings.HasPrefix(key, other+"/") {
				errs = append(errs, fmt.Errorf("shared %q: inside shared folder %q", key, other))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Graphs)) {
		g := m.Graphs[name]
		if g.ExternalData == "" {
			continue
		}
		gk, gShared := m.sharedKey(g.File)
		dk, dShared := m.sharedKey(g.ExternalData)
		if gShared != dShared || (gShared && m.Shared[gk] != m.Shared[dk]) {
			errs = append(errs, fmt.Errorf("graph %s: %s and its external data %s must come from the same directory (ONNX Runtime reads the data from beside the graph); share both or neither",
				name, g.File, g.ExternalData))
		}
	}
	return errs
}

// checkShared checks that every file Shared covers exists in its sibling
// with the size Files pins: a missing or stale sibling fails at start,
// naming the path, not at the first request.
func (m *Manifest) checkShared(dir string) error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(m.Shared)) {
		for _, name := range m.sharedFiles(key) {
			p := m.Path(dir, name)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("shared %q from %q: %w", name, m.Shared[key], err))
			case !st.Mode().IsRegular():
				errs = append(errs, fmt.Errorf("shared %q from %q: %s is not a regular file", name, m.Shared[key], p))
			case m.Files[name].Bytes > 0 && st.Size() != m.Files[name].Bytes:
				errs = append(errs, fmt.Errorf("shared %q from %q: %s has %d bytes, files says %d (a stale or different copy)",
					name, m.Shared[key], p, st.Size(), m.Files[name].Bytes))
			}
		}
	}
	return errors.Join(errs...)
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
	errs = append(errs, m.checkSharedSyntax()...)
	return errors.Join(errs...)
}

// Distilled reports whether the model is a distilled checkpoint, which
// runs no classifier-free guidance whatever guidance a request asks for.
func (m *Manifest) Distilled() bool { return m.Checkpoint != nil && m.Checkpoint.Distilled }

// TakesLoRA reports whether the transformer graph takes LoRA inputs.
func (m *Manifest) TakesLoRA() bool {
	for _, in := range m.Graphs[GraphTransformer].Inputs {
		if in.Name == loraActiveInput {
			return true
		}
	}
	return false
}
