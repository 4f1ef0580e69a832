package wire

import (
	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
)

// Kind is how an input field's JSON value is typed.
type Kind string

// Field kinds.
const (
	KindString    Kind = "string"
	KindNumber    Kind = "number"
	KindInteger   Kind = "integer"
	KindBoolean   Kind = "boolean"
	KindEnum      Kind = "enum"
	KindSeed      Kind = "seed"       // an integer of any int64 value
	KindImageSize Kind = "image_size" // a preset name or {width, height}
	KindImageURLs Kind = "image_urls" // a list of image references
	KindLoRAs     Kind = "loras"      // a list of {path, scale}
)

// Field describes one input field of an endpoint: the one place its name,
// type, default and bounds are written. ParseInput decodes from these,
// the playground shows them, the OpenAI API passes them through.
type Field struct {
	Name     string   `json:"name"`
	Kind     Kind     `json:"kind"`
	Required bool     `json:"required,omitempty"`
	Default  any      `json:"default"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Enum     []string `json:"enum,omitempty"`
	// MaxChars bounds a string's length in characters.
	MaxChars int `json:"max_chars,omitempty"`
	// MinItems and MaxItems bound a list.
	MinItems int `json:"min_items,omitempty"`
	MaxItems int `json:"max_items,omitempty"`

	// decode reads the field (or applies its default) into p.
	decode func(d *fieldDecoder, f *Field, p *Params)
}

// Fields lists the input fields of an endpoint, in the order a 422 reports
// their problems.
func (ep Endpoint) Fields() []Field {
	def := cns.DefaultParams()
	defaultSize := any(DefaultImageSize)
	fields := []Field{
		{Name: "prompt", Kind: KindString, Required: true, MaxChars: MaxPromptChars,
			decode: func(d *fieldDecoder, f *Field, p *Params) { p.Prompt = d.prompt(f.Name) }},
	}
	if ep.Edit {
		defaultSize = nil // the first reference's size
		fields = append(fields, Field{Name: "image_urls", Kind: KindImageURLs, Required: true,
			MinItems: MinImageURLs, MaxItems: MaxImageURLs,
			decode: func(d *fieldDecoder, f *Field, p *Params) { p.ImageURLs = d.imageURLs(f) }})
	}
	if ep.LoRA {
		fields = append(fields, Field{Name: "loras", Kind: KindLoRAs, Default: []any{}, MaxItems: MaxLoRAs,
			Min: bound(engine.MinLoRAScale), Max: bound(engine.MaxLoRAScale),
			decode: func(d *fieldDecoder, f *Field, p *Params) { p.LoRAs = d.loras(f) }})
	}
	// A distilled model runs no classifier-free guidance: it has no
	// guidance, negative prompt, acceleration or CNS fields (fal's schema
	// for the distilled endpoints).
	guided := func(f ...Field) []Field {
		if ep.Distilled {
			return nil
		}
		return f
	}
	steps := DefaultNumInferenceSteps
	if ep.Distilled {
		steps = DefaultDistilledSteps
	}
	fields = append(fields, guided(
		stringField("negative_prompt", "", MaxPromptChars, func(p *Params) *string { return &p.NegativePrompt }),
		numberField("guidance_scale", DefaultGuidanceScale, MinGuidance, MaxGuidance, func(p *Params) *float64 { return &p.GuidanceScale }))...)
	fields = append(fields,
		intField("num_inference_steps", steps, MinSteps, MaxSteps, func(p *Params) *int { return &p.NumInferenceSteps }),
		Field{Name: "image_size", Kind: KindImageSize, Default: defaultSize, Enum: sizePresetNames,
			decode: func(d *fieldDecoder, f *Field, p *Params) {
				def := Size{}
				if f.Default != nil {
					def = SizePresets[f.Default.(string)]
				}
				p.Size = d.imageSize(f.Name, def)
			}},
		intField("num_images", DefaultNumImages, MinNumImages, MaxNumImages, func(p *Params) *int { return &p.NumImages }),
		Field{Name: "seed", Kind: KindSeed,
			decode: func(d *fieldDecoder, f *Field, p *Params) { p.Seed = d.seed(f.Name) }})
	fields = append(fields, guided(
		enumField("acceleration", engine.Accelerations(), DefaultAcceleration, func(p *Params) *engine.Acceleration { return &p.Acceleration }))...)
	fields = append(fields,
		boolField("enable_safety_checker", true, func(p *Params) *bool { return &p.EnableSafetyChecker }),
		enumField("output_format", engine.OutputFormats(), DefaultOutputFormat, func(p *Params) *engine.OutputFormat { return &p.OutputFormat }),
		boolField("sync_mode", false, func(p *Params) *bool { return &p.SyncMode }))
	fields = append(fields, guided(
		boolField("enable_cns", def.Enable, func(p *Params) *bool { return &p.CNS.Enable }),
		numberField("cns_s_churn", def.SChurn, cns.MinSChurn, cns.MaxSChurn, func(p *Params) *float64 { return &p.CNS.SChurn }),
		enumField("cns_gamma_source", cns.GammaSources(), def.GammaSource, func(p *Params) *cns.GammaSource { return &p.CNS.GammaSource }),
		numberField("cns_power_gamma", def.PowerGamma, cns.MinPowerGamma, cns.MaxPowerGamma, func(p *Params) *float64 { return &p.CNS.PowerGamma }),
		numberField("cns_gamma_divider", def.GammaDivider, cns.MinGammaDivider, cns.MaxGammaDivider, func(p *Params) *float64 { return &p.CNS.GammaDivider }),
		numberField("cns_alpha_tilt_start", def.AlphaTiltStart, cns.MinAlphaTilt, cns.MaxAlphaTilt, func(p *Params) *float64 { return &p.CNS.AlphaTiltStart }),
		numberField("cns_alpha_tilt_end", def.AlphaTiltEnd, cns.MinAlphaTilt, cns.MaxAlphaTilt, func(p *Params) *float64 { return &p.CNS.AlphaTiltEnd }),
		boolField("cns_alpha_use_fnorm", def.AlphaUseFnorm, func(p *Params) *bool { return &p.CNS.AlphaUseFnorm }),
		boolField("cns_alpha_exp_interp", def.AlphaExpInterp, func(p *Params) *bool { return &p.CNS.AlphaExpInterp }),
		numberField("cns_alpha_exp_sharpness", def.AlphaExpSharpness, cns.MinSharpness, cns.MaxSharpness, func(p *Params) *float64 { return &p.CNS.AlphaExpSharpness }),
		intField("cns_num_freq_bins", def.NumFreqBins, cns.MinFreqBins, cns.MaxFreqBins, func(p *Params) *int { return &p.CNS.NumFreqBins }),
		numberField("cns_energy_scale", def.EnergyScale, cns.MinEnergyScale, cns.MaxEnergyScale, func(p *Params) *float64 { return &p.CNS.EnergyScale }))...)
	return fields
}

func bound(v float64) *float64 { return &v }

func stringField(name, def string, maxChars int, at func(*Params) *string) Field {
	return Field{Name: name, Kind: KindString, Default: def, MaxChars: maxChars,
		decode: func(d *fieldDecoder, f *Field, p *Params) { *at(p) = d.optString(f.Name, f.MaxChars, def) }}
}

func numberField(name string, def, lo, hi float64, at func(*Params) *float64) Field {
	return Field{Name: name, Kind: KindNumber, Default: def, Min: bound(lo), Max: bound(hi),
		decode: func(d *fieldDecoder, f *Field, p *Params) { *at(p) = d.number(f.Name, lo, hi, def) }}
}

func intField(name string, def, lo, hi int, at func(*Params) *int) Field {
	return Field{Name: name, Kind: KindInteger, Default: def, Min: bound(float64(lo)), Max: bound(float64(hi)),
		decode: func(d *fieldDecoder, f *Field, p *Params) { *at(p) = d.integer(f.Name, lo, hi, def) }}
}

func boolField(name string, def bool, at func(*Params) *bool) Field {
	return Field{Name: name, Kind: KindBoolean, Default: def,
		decode: func(d *fieldDecoder, f *Field, p *Params) { *at(p) = d.boolean(f.Name, def) }}
}

func enumField[T ~string](name string, values []T, def T, at func(*Params) *T) Field {
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return Field{Name: name, Kind: KindEnum, Default: string(def), Enum: names,
		decode: func(d *fieldDecoder, f *Field, p *Params) { *at(p) = enum(d, f.Name, values, def) }}
}
