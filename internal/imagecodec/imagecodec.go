// Package imagecodec encodes 8-bit RGB images as PNG, JPEG or WebP.
//
// PNG and JPEG use the standard library; WebP uses github.com/gen2brain/webp
// (libwebp compiled to WebAssembly, or the system libwebp when present), so
// the server needs no cgo image library. The package knows file formats, not
// the API's output_format names: internal/engine maps those to a Codec.
package imagecodec

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"github.com/gen2brain/webp"
)

// Quality settings: high enough that JPEG/WebP artefacts stay below what a
// user of a 28-step render would notice.
const (
	JPEGQuality = 95
	WebPQuality = 90
)

// Codec encodes one file format.
type Codec struct {
	ContentType string
	Extension   string // file extension without the dot
	encode      func(w io.Writer, img *image.RGBA) error
}

// PNG is lossless. BestSpeed: a 1024x768 render encodes about 3x faster than
// at the default level, for files roughly 15% larger.
func PNG() Codec {
	return Codec{ContentType: "image/png", Extension: "png", encode: func(w io.Writer, img *image.RGBA) error {
		return (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(w, img)
	}}
}

// JPEG at JPEGQuality.
func JPEG() Codec {
	return Codec{ContentType: "image/jpeg", Extension: "jpg", encode: func(w io.Writer, img *image.RGBA) error {
		return jpeg.Encode(w, img, &jpeg.Options{Quality: JPEGQuality})
	}}
}

// WebP (lossy) at WebPQuality.
func WebP() Codec {
	return Codec{ContentType: "image/webp", Extension: "webp", encode: func(w io.Writer, img *image.RGBA) error {
		return webp.Encode(w, img, webp.Options{Quality: WebPQuality, Method: 4})
	}}
}

// Encode encodes packed RGB pixels (3 bytes per pixel, row-major).
func (c Codec) Encode(pix []uint8, width, height int) ([]byte, error) {
	if c.encode == nil {
		return nil, fmt.Errorf("imagecodec: zero Codec")
	}
	if width <= 0 || height <= 0 || len(pix) != 3*width*height {
		return nil, fmt.Errorf("encode %s: %d bytes for %dx%d RGB", c.Extension, len(pix), width, height)
	}
	var buf bytes.Buffer
	if err := c.encode(&buf, toRGBA(pix, width, height)); err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Extension, err)
	}
	return buf.Bytes(), nil
}

// toRGBA converts packed RGB to the standard library's RGBA layout, which
// every encoder takes through its fast path.
func toRGBA(pix []uint8, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, j := 0, 0; i < w*h; i, j = i+1, j+3 {
		o := 4 * i
		img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = pix[j], pix[j+1], pix[j+2], 255
	}
	return img
}
