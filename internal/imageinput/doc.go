// Package imageinput turns the reference images of an edit request
// (image_urls: data: URIs, http(s) URLs, or this server's own /files/ URLs)
// into upright 8-bit RGB pixels, the same pixels diffusers' load_image
// hands the reference pipeline: EXIF orientation applied as PIL's
// ImageOps.exif_transpose does, then PIL's convert("RGB").
//
// URLs are fetched only through internal/netguard; this server's files are
// read from storage through LocalFiles. The format is taken from the
// bytes; the dimensions are checked against Limits before any pixel is
// decoded. Resizing to the pipeline's pixel budget is not done here.
//
// docs/imageinput.md records the formats, the limits and how closely each
// decoder matches PIL.
package imageinput
