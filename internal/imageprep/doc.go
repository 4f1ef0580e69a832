// Package imageprep prepares reference images for FLUX.2 [klein] editing
// exactly as diffusers' Flux2KleinPipeline does, byte for byte: its checks
// (CheckReference), its pixel budget and multiple-of-16 sizes
// (ProcessedSize), PIL's resampling (Resize: Pillow's two-pass fixed-point
// convolution, reproduced in pure Go), the processor's resize-to-cover and
// centre crop (ResizeCrop) and the normalisation to [-1, 1] (Normalize).
//
// Everything here is a pure function on 8-bit RGB images (RGB); decoding,
// EXIF orientation and colour conversion happen before. docs/editing.md
// describes the whole reference path, from the image to the transformer's
// tokens.
package imageprep
