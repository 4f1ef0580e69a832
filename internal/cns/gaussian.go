package cns

import (
	"context"
	"fmt"
	"math"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// GaussianModel is the Gaussian toy model of docs/cns.md §10, usable
// wherever a velocity function is needed without weights (tests, a
// self-check of cmd/cnsgamma). The data is Gaussian with power P_b per
// Fourier coefficient of every VAE-grid plane, P_b depending on the
// coefficient's radial band b; its optimal clean estimate multiplies each
// coefficient by G = (1−σ)·P/((1−σ)²·P + σ²), and v = (x − x̂0)/σ.
// A GaussianModel is not safe for concurrent use.
type GaussianModel struct {
	h, w  int
	bands *BandMap
	power []float64 // per band
	fft   *planeFFT
	buf   []complex128
	gainT []float64
	chw   []float32
	pl    []float32
}

// NewGaussianModel builds the model for a packed h×w latent grid with the
// given per-band powers (len(power) bands, all positive).
func NewGaussianModel(h, w int, power []float64) (*GaussianModel, error) {
	for b, p := range power {
		if !(p > 0) || math.IsInf(p, 0) {
			return nil, fmt.Errorf("cns: gaussian model power[%d] = %v must be positive", b, p)
		}
	}
	bm, err := RadialBands(2*h, 2*w, len(power))
	if err != nil {
		return nil, err
	}
	n := 4 * h * w
	return &GaussianModel{h: h, w: w, bands: bm, power: power, fft: newPlaneFFT(2*h, 2*w),
		buf: make([]complex128, n), gainT: make([]float64, n),
		chw: make([]float32, n*sampler.VAEChannels), pl: make([]float32, n*sampler.VAEChannels)}, nil
}

// WienerGain is the optimal clean-estimate gain of a Gaussian coefficient
// of power p at noise level sigma: (1−σ)·p/((1−σ)²·p + σ²).
func WienerGain(sigma, p float64) float64 {
	return (1 - sigma) * p / ((1-sigma)*(1-sigma)*p + sigma*sigma)
}

// Velocity implements VelocityFunc for one packed sample (1, h·w, 128).
func (m *GaussianModel) Velocity(ctx context.Context, x []float32, sigma float32, dst []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !(sigma > 0) {
		return fmt.Errorf("cns: gaussian model: sigma %v must be positive", sigma)
	}
	H, W := 2*m.h, 2*m.w
	hw := H * W
	for k, b := range m.bands.Band {
		m.gainT[(k%W)*H+k/W] = WienerGain(float64(sigma), m.power[b]) / float64(hw)
	}
	if err := sampler.Unpack(m.chw, x, 1, sampler.PackedChannels, m.h, m.w); err != nil {
		return err
	}
	if err := sampler.Unpatchify(m.pl, m.chw, 1, sampler.VAEChannels, m.h, m.w); err != nil {
		return err
	}
	for c := 0; c < sampler.VAEChannels; c += 2 {
		for k := range m.buf {
			m.buf[k] = complex(float64(m.pl[c*hw+k]), float64(m.pl[(c+1)*hw+k]))
		}
		m.fft.filter(m.buf, m.gainT)
		for k, z := range m.buf {
			m.pl[c*hw+k], m.pl[(c+1)*hw+k] = float32(real(z)), float32(imag(z))
		}
	}
	// m.pl holds x̂0 on the VAE grid: back to tokens, then v = (x − x̂0)/σ.
	if err := sampler.Patchify(m.chw, m.pl, 1, sampler.VAEChannels, m.h, m.w); err != nil {
		return err
	}
	if err := sampler.Pack(dst, m.chw, 1, sampler.PackedChannels, m.h, m.w); err != nil {
		return err
	}
	for k := range dst {
		dst[k] = (x[k] - dst[k]) / sigma
	}
	return nil
}
