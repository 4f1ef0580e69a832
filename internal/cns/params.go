package cns

import (
	"fmt"
	"math"

	"github.com/kleinserve/kleinserve/internal/engine"
)

// Params are the endpoint's CNS knobs; the engine's request type is used as
// is so that the API, the pipeline and this package validate one struct.
type Params = engine.CNSParams

// DefaultParams returns the endpoint defaults (fal UI, spec cns.md §2.1)
// with Enable false.
func DefaultParams() Params {
	return Params{
		Enable:            false,
		SChurn:            0.5,
		GammaSource:       engine.GammaSourceMatrix,
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

// Parameter ranges of spec cns.md §2.1 (the fal UI ranges).
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
// JSON name (e.g. "cns_s_churn") so the API can point at it.
type ParamError struct {
	Field string
	Value any
	Want  string // the accepted range or set
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("cns: %s must be %s, got %v", e.Field, e.Want, e.Value)
}

// Validate checks every field against the ranges of spec cns.md §2.1,
// whether or not CNS is enabled, and returns the first violation as a
// *ParamError. NaN is rejected everywhere.
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
	case engine.GammaSourceMatrix, engine.GammaSourceApproximation:
	default:
		return &ParamError{Field: "cns_gamma_source", Value: fmt.Sprintf("%q", p.GammaSource),
			Want: fmt.Sprintf("%q or %q", engine.GammaSourceMatrix, engine.GammaSourceApproximation)}
	}
	return nil
}
