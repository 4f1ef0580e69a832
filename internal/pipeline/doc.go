// Package pipeline is the ONNX Runtime implementation of engine.Engine for
// FLUX.2 [klein]: Qwen3 prompt encoding, the flow-matching Euler sampler with
// classifier-free guidance (and optional Colored Noise Sampling), the VAE
// decoder, the safety classifier and image encoding.
//
// Life cycle (as Caddy modules): Open loads and checks the manifest
// (provision), checks every graph's declared inputs and outputs against the
// ONNX files before any session is created (validate: it fails at start,
// loudly, on a mismatch), creates the sessions, and Close releases them
// (cleanup). The model directory format is documented in models/README.md.
package pipeline
