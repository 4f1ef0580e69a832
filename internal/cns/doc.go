// Package cns implements Colored Noise Sampling for FLUX.2 [klein]: a
// stochastic flow-matching sampler that, after each deterministic update,
// re-injects fresh Gaussian noise whose spectrum is shaped per radial
// frequency band by how far each band has already been resolved
// (γ(f, t)), with a tilt that moves from high to low frequencies over the
// schedule.
//
// The method, its sources and the numbers the tests check are described in
// docs/cns.md:
//
//   - bands: radial bins floor(r/rmax·(F−1)) over the unshifted FFT grid of
//     the unpacked VAE latent (32, 2h, 2w) (docs/cns.md §2, §3);
//   - γ: "approximation" (1 − σ_i/σ_0 in every band) or "matrix" (a per-model
//     table loaded from cns_gamma.json, else the built-in closed-form fit of
//     the official SiT matrix), looked up by step progress i/(N−1)
//     (docs/cns.md §4);
//   - amplitude A_b = max(T_b·(1 − γ_b/d), 0)^pw with the tilt T_b = exp(α·f_b)
//     or (1+α) and α interpolated from start to end (docs/cns.md §5);
//   - noise ξ = e·real(ifft2(fft2(w)·S))/Z with the analytic normalisation
//     Z = sqrt(mean S²), white fallback when Z vanishes, and white fields w
//     drawn from a Philox stream keyed by (seed_b, "CNS", step)
//     (docs/cns.md §6);
//   - the SDE-exact step x = (1−σ')·x̂0 + σ'·(keep·ε̂ + fresh·ξ) with
//     keep = (σ'/σ)^c, fresh = sqrt(1 − keep²) (docs/cns.md §7).
//
// The package is pure Go math on flat float32 buffers with its own batched
// mixed-radix FFT (checked against gonum's in the tests); the pipeline calls
// Sampler.Step after it has the CFG-combined velocity of a step.
// GammaAccumulator / ComputeGammaMatrix measure a model-specific γ matrix
// offline from deterministic runs of any velocity function (docs/cns.md §9);
// GaussianModel is an analytic velocity function for tests.
package cns
