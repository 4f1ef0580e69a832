package cns

import "math"

// sharpnessLinearBelow: below this sharpness the exponential interpolation
// is numerically the linear one and is evaluated as such (docs/cns.md §5).
const sharpnessLinearBelow = 1e-6

// TiltInterp returns E(p), the fraction of the way from alpha_tilt_start to
// alpha_tilt_end at progress p: (exp(s·p) − 1)/(exp(s) − 1) with
// exponential interpolation and sharpness s > 1e-6, else p.
func TiltInterp(p float64, expInterp bool, sharpness float64) float64 {
	if !expInterp || sharpness <= sharpnessLinearBelow {
		return p
	}
	return math.Expm1(sharpness*p) / math.Expm1(sharpness)
}

// TiltAlpha returns α_i = a0 + E(p)·(a1 − a0) at progress p.
func TiltAlpha(p float64, prm Params) float64 {
	e := TiltInterp(p, prm.AlphaExpInterp, prm.AlphaExpSharpness)
	return prm.AlphaTiltStart + e*(prm.AlphaTiltEnd-prm.AlphaTiltStart)
}

// Amplitudes writes the per-band amplitude of docs/cns.md §5 into dst
// (len(dst) = len(gamma) = F):
//
//	T_b = exp(α·f_b) with alpha_use_fnorm, else (1 + α);  f_b = b/(F−1)
//	A_b = max(T_b·(1 − γ_b/d), 0)^pw
//
// The tilt sits inside the power, as in the official code, so the effective
// amplitude tilt is exp(pw·α·f).
func Amplitudes(dst, gamma []float64, alpha float64, prm Params) {
	f := len(dst)
	for b := range dst {
		t := 1 + alpha
		if prm.AlphaUseFnorm {
			t = math.Exp(alpha * bandPosition(b, f))
		}
		base := t * (1 - gamma[b]/prm.GammaDivider)
		if base <= 0 {
			dst[b] = 0
			continue
		}
		dst[b] = math.Pow(base, prm.PowerGamma)
	}
}

// NormalizationZ returns Z = sqrt(mean_k S(k)²) over the grid of bm for the
// band amplitudes amp: the analytic standard deviation of the filtered white
// field (docs/cns.md §6).
func NormalizationZ(bm *BandMap, amp []float64) float64 {
	var sum float64
	for b, n := range bm.Counts {
		sum += float64(n) * amp[b] * amp[b]
	}
	return math.Sqrt(sum / float64(bm.H*bm.W))
}

// whiteBelowZ: a filter whose normalisation falls below this carries no
// usable energy; the noise falls back to white (docs/cns.md §6).
const whiteBelowZ = 1e-12

// isFlat reports whether the filter is the same in every non-empty band, in
// which case the normalised colored noise equals the white field exactly and
// the FFT round trip is skipped.
func isFlat(bm *BandMap, amp []float64) bool {
	first := math.NaN()
	for b, n := range bm.Counts {
		if n == 0 {
			continue
		}
		if math.IsNaN(first) {
			first = amp[b]
		} else if amp[b] != first {
			return false
		}
	}
	return true
}
