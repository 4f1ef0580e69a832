// Package sampler holds the host-side math of FLUX.2 [klein]'s flow-matching
// sampler: the empirical-mu sigma schedule, the timestep value fed to the
// transformer graph, classifier-free-guidance combination, the Euler update,
// latent packing/patchifying, position ids and the deterministic Philox
// noise generator.
//
// Everything here is a pure function or a small value type operating on flat
// []float32 buffers; nothing talks to ONNX Runtime. Functions that run once
// per denoising step write into caller-provided destination buffers and never
// allocate, so that the pipeline's work outside the model stays negligible.
//
// Buffer layouts (all C order, float32 unless noted):
//
//	packed latent     (B, S, 128)     S = h*w tokens, token = row*w + col
//	channel-first     (B, 128, h, w)  what the initial noise and the VAE use
//	unpacked VAE grid (B, 32, 2h, 2w) patch channel c*4 + pi*2 + pj of the
//	                                  channel-first latent sits at
//	                                  (c, 2*row+pi, 2*col+pj)
//
// The arithmetic replicates diffusers 0.42 (Flux2KleinPipeline with
// FlowMatchEulerDiscreteScheduler) operation by operation, including float32
// rounding, so that a float32 host loop reproduces the reference exactly.
// Products that feed a sum are rounded explicitly (float32(a*b)) because the
// Go spec allows fusing x*y+z into one FMA otherwise.
package sampler
