package cns

import (
	"errors"
	"math"
	"testing"
)

// Property 19 (docs/cns.md §10): out-of-range values are rejected with the
// field named.
func TestValidate(t *testing.T) {
	if err := Validate(DefaultParams()); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	// Range corners are accepted.
	corner := DefaultParams()
	corner.SChurn, corner.PowerGamma, corner.GammaDivider = 2, 0.1, 50
	corner.AlphaTiltStart, corner.AlphaTiltEnd, corner.AlphaExpSharpness = -2, 2, 10
	corner.NumFreqBins, corner.EnergyScale = 128, 0.5
	if err := Validate(corner); err != nil {
		t.Fatalf("corner rejected: %v", err)
	}
	nan := math.NaN()
	cases := []struct {
		field string
		mod   func(*Params)
	}{
		{"cns_s_churn", func(p *Params) { p.SChurn = -0.01 }},
		{"cns_s_churn", func(p *Params) { p.SChurn = 2.01 }},
		{"cns_s_churn", func(p *Params) { p.SChurn = nan }},
		{"cns_power_gamma", func(p *Params) { p.PowerGamma = 0.09 }},
		{"cns_power_gamma", func(p *Params) { p.PowerGamma = 3.5 }},
		{"cns_gamma_divider", func(p *Params) { p.GammaDivider = 0 }},
		{"cns_gamma_divider", func(p *Params) { p.GammaDivider = 51 }},
		{"cns_alpha_tilt_start", func(p *Params) { p.AlphaTiltStart = -2.5 }},
		{"cns_alpha_tilt_end", func(p *Params) { p.AlphaTiltEnd = math.Inf(1) }},
		{"cns_alpha_exp_sharpness", func(p *Params) { p.AlphaExpSharpness = 0.05 }},
		{"cns_alpha_exp_sharpness", func(p *Params) { p.AlphaExpSharpness = nan }},
		{"cns_num_freq_bins", func(p *Params) { p.NumFreqBins = 7 }},
		{"cns_num_freq_bins", func(p *Params) { p.NumFreqBins = 129 }},
		{"cns_energy_scale", func(p *Params) { p.EnergyScale = 0.49 }},
		{"cns_energy_scale", func(p *Params) { p.EnergyScale = 1.51 }},
		{"cns_gamma_source", func(p *Params) { p.GammaSource = "" }},
		{"cns_gamma_source", func(p *Params) { p.GammaSource = "Matrix" }},
	}
	for _, c := range cases {
		p := DefaultParams()
		c.mod(&p)
		err := Validate(p)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: got %v, want a ParamError on %s", c.field, err, c.field)
		}
	}
}

func TestNewSamplerRejectsBadConfig(t *testing.T) {
	good := Config{Params: activeParams(), Sigmas: toySigmas, Height: 2, Width: 2, Seeds: []int64{1}}
	if _, err := NewSampler(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad := []struct {
		name string
		mod  func(*Config)
	}{
		{"one sigma", func(c *Config) { c.Sigmas = []float32{1} }},
		{"not ending at 0", func(c *Config) { c.Sigmas = []float32{1, 0.5} }},
		{"increasing", func(c *Config) { c.Sigmas = []float32{1, 0.5, 0.6, 0} }},
		{"NaN sigma", func(c *Config) { c.Sigmas = []float32{1, float32(math.NaN()), 0} }},
		{"start above 1", func(c *Config) { c.Sigmas = []float32{1.5, 0.5, 0} }},
		{"zero grid", func(c *Config) { c.Height = 0 }},
		{"no seeds", func(c *Config) { c.Seeds = nil }},
		{"bad params", func(c *Config) { c.Params.EnergyScale = 3 }},
	}
	for _, b := range bad {
		cfg := good
		b.mod(&cfg)
		if _, err := NewSampler(cfg); err == nil {
			t.Errorf("%s: want error", b.name)
		}
	}
	// Inactive CNS ignores the CNS parameters entirely.
	off := good
	off.Params = Params{Enable: false, GammaSource: "bogus"}
	if _, err := NewSampler(off); err != nil {
		t.Errorf("inactive sampler with unused params: %v", err)
	}
	zero := good
	zero.Params.SChurn = 0
	zero.Params.GammaSource = GammaSourceApproximation
	s, err := NewSampler(zero)
	if err != nil || s.Active() {
		t.Errorf("s_churn 0: active=%v err=%v", s != nil && s.Active(), err)
	}
}

func TestStepRejectsBadBuffers(t *testing.T) {
	s := mustSampler(t, Config{Params: activeParams(), Sigmas: toySigmas, Height: 2, Width: 2, Seeds: []int64{1}})
	n := 4 * 128
	if err := s.Step(0, make([]float32, n-1), make([]float32, n)); err == nil {
		t.Error("short latent: want error")
	}
	if err := s.Step(4, make([]float32, n), make([]float32, n)); err == nil {
		t.Error("step past the schedule: want error")
	}
	if err := s.StepWithNoise(0, make([]float32, n), make([]float32, n), make([]float32, 3)); err == nil {
		t.Error("short noise: want error")
	}
	if _, err := s.Noise(0, make([]float32, 5)); err == nil {
		t.Error("short noise buffer: want error")
	}
	off := mustSampler(t, Config{Params: DefaultParams(), Sigmas: toySigmas, Height: 2, Width: 2, Seeds: []int64{1}})
	if _, err := off.Noise(0, make([]float32, n)); !errors.Is(err, ErrInactive) {
		t.Errorf("Noise on inactive sampler: %v", err)
	}
}
