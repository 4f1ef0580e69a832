package cns

import (
	"fmt"
	"math"
)

// GammaSource selects how γ(f, t) is obtained (the endpoint's
// cns_gamma_source values).
type GammaSource string

// Gamma sources.
const (
	// GammaSourceMatrix looks γ up in the model's measured table.
	GammaSourceMatrix GammaSource = "matrix"
	// GammaSourceApproximation uses 1 − σ_i/σ_0 in every band.
	GammaSourceApproximation GammaSource = "approximation"
)

// GammaSources lists every gamma source, in the endpoint's order.
func GammaSources() []GammaSource {
	return []GammaSource{GammaSourceMatrix, GammaSourceApproximation}
}

// Params are the sampler's knobs, one per cns_* field of the endpoint. CNS is
// active only when Enable is true and SChurn > 0. The JSON names are those
// of the durable job payload (see internal/worker).
type Params struct {
	Enable            bool        `json:"enable"`
	SChurn            float64     `json:"s_churn"`
	GammaSource       GammaSource `json:"gamma_source"`
	PowerGamma        float64     `json:"power_gamma"`
	GammaDivider      float64     `json:"gamma_divider"`
	AlphaTiltStart    float64     `json:"alpha_tilt_start"`
	AlphaTiltEnd      float64     `json:"alpha_tilt_end"`
	AlphaUseFnorm     bool        `json:"alpha_use_fnorm"`
	AlphaExpInterp    bool        `json:"alpha_exp_interp"`
	AlphaExpSharpness float64     `json:"alpha_exp_sharpness"`
	NumFreqBins       int         `json:"num_freq_bins"`
	EnergyScale       float64     `json:"energy_scale"`
}

// Active reports whether CNS changes the sampler at all.
func (p Params) Active() bool { return p.Enable && p.SChurn > 0 }

// DefaultParams returns the recommended settings (docs/cns.md), with Enable
// false. The endpoint's defaults are these.
func DefaultParams() Params {
	return Params{
		Enable:            false,
		SChurn:            0.5,
		GammaSource:       GammaSourceMatrix,
		PowerGamma:        0.75,
		GammaDivider:      1.73,
		AlphaTiltStart:    0.15,
		AlphaTiltEnd:      -0.5,
		AlphaUseFnorm:     true,
		AlphaExpInterp:    true,
		AlphaExpSharpness: 0.75,
		NumFreqBins:       32,
		EnergyScale:       0.98,
	}
}

// Parameter ranges the sampler accepts (docs/cns.md); every value inside
// them gives finite noise.
const (
	MinSChurn, MaxSChurn             = 0.0, 2.0
	MinPowerGamma, MaxPowerGamma     = 0.1, 3.0
	MinGammaDivider, MaxGammaDivider = 0.1, 50.0
	MinAlphaTilt, MaxAlphaTilt       = -2.0, 2.0
	MinSharpness, MaxSharpness       = 0.1, 10.0
	MinFreqBins, MaxFreqBins         = 8, 128
	MinEnergyScale, MaxEnergyScale   = 0.5, 1.5
)

// ParamError reports one invalid CNS parameter. Field is the endpoint's
// JSON name (e.g. "cns_s_churn").
type ParamError struct {
	Field string
	Value any
	Want  string // the accepted range or set
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("cns: %s must be %s, got %v", e.Field, e.Want, e.Value)
}

// Validate checks every field against the accepted ranges, whether or not
// CNS is enabled, and returns the first violation as a *ParamError. NaN is
// rejected everywhere.
func Validate(p Params) error {
	checks := []struct {
		field    string
		v        float64
		min, max float64
	}{
		{"cns_s_churn", p.SChurn, MinSChurn, MaxSChurn},
		{"cns_power_gamma", p.PowerGamma, MinPowerGamma, MaxPowerGamma},
		{"cns_gamma_divider", p.GammaDivider, MinGammaDivider, MaxGammaDivider},
		{"cns_alpha_tilt_start", p.AlphaTiltStart, MinAlphaTilt, MaxAlphaTilt},
		{"cns_alpha_tilt_end", p.AlphaTiltEnd, MinAlphaTilt, MaxAlphaTilt},
		{"cns_alpha_exp_sharpness", p.AlphaExpSharpness, MinSharpness, MaxSharpness},
		{"cns_energy_scale", p.EnergyScale, MinEnergyScale, MaxEnergyScale},
	}
	for _, c := range checks {
		if math.IsNaN(c.v) || c.v < c.min || c.v > c.max {
			return &ParamError{Field: c.field, Value: c.v, Want: fmt.Sprintf("in [%g, %g]", c.min, c.max)}
		}
	}
	if p.NumFreqBins < MinFreqBins || p.NumFreqBins > MaxFreqBins {
		return &ParamError{Field: "cns_num_freq_bins", Value: p.NumFreqBins,
			Want: fmt.Sprintf("an integer in [%d, %d]", MinFreqBins, MaxFreqBins)}
	}
	switch p.GammaSource {
	case GammaSourceMatrix, GammaSourceApproximation:
	default:
		return &ParamError{Field: "cns_gamma_source", Value: fmt.Sprintf("%q", p.GammaSource),
			Want: fmt.Sprintf("%q or %q", GammaSourceMatrix, GammaSourceApproximation)}
	}
	return nil
}
