package imageinput

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"

	"github.com/kleinserve/kleinserve/internal/netguard"
	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Image is a decoded reference image: upright (EXIF orientation applied)
// 8-bit RGB, what the reference pipeline receives from
// diffusers.utils.load_image.
type Image struct {
	Width, Height int
	// Pix is packed RGB, row by row: 3*Width*Height bytes.
	Pix []uint8
	// Format is the format found in the bytes.
	Format Format
	// Source says where the bytes came from.
	Source Source
	// Bytes is the size of the encoded image.
	Bytes int
	// Orientation is the EXIF orientation that was applied (1: none).
	Orientation int
}

// decoder is one accepted format's header reader and decoder.
type decoder struct {
	config func([]byte) (image.Config, error)
	decode func([]byte) (image.Image, error)
	meta   func([]byte) meta
}

var decoders = map[Format]decoder{
	PNG: {
		config: func(b []byte) (image.Config, error) { return png.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) },
		meta:   pngMeta,
	},
	JPEG: {
		config: func(b []byte) (image.Config, error) { return jpeg.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) },
		meta:   jpegMeta,
	},
	WebP: {
		config: func(b []byte) (image.Config, error) { return webp.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) },
		meta:   webpMeta,
	},
	BMP: {
		config: func(b []byte) (image.Config, error) { return bmp.DecodeConfig(bytes.NewReader(b)) },
		decode: func(b []byte) (image.Image, error) { return bmp.Decode(bytes.NewReader(b)) },
		meta:   func([]byte) meta { return meta{} },
	},
}

// Decode turns encoded image bytes into upright RGB. It finds the format
// from the signature, reads the dimensions from the header and refuses
// them against lim before any pixel is decoded (a small file can declare
// a huge image), then decodes, applies the EXIF orientation and converts
// to RGB. Failures are *Error (Index 0).
func Decode(data []byte, lim Limits) (*Image, error) {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, tooLarge(lim)
	}
	format, err := Sniff(data)
	if err != nil {
		return nil, err
	}
	dec := decoders[format]
	cfg, err := dec.config(data)
	if err != nil {
		return nil, newError(ErrUnsupported, err, "not a valid or supported %s image", format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, newError(ErrUnsupported, nil, "the %s image has no pixels", format)
	}
	if cfg.Width > lim.MaxSide || cfg.Height > lim.MaxSide || int64(cfg.Width)*int64(cfg.Height) > lim.MaxPixels {
		return nil, newError(ErrTooManyPixels, nil, "the image is %d×%d; at most %d pixels per side and %d pixels in all are accepted",
			cfg.Width, cfg.Height, lim.MaxSide, lim.MaxPixels)
	}
	img, err := dec.decode(data)
	if err != nil {
		return nil, newError(ErrUnsupported, err, "not a valid or supported %s image", format)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, newError(ErrUnsupported, nil, "not a valid %s image", format)
	}
	codec := libjpeg
	if format == WebP {
		codec = libwebp
	}
	pix, err := toRGB(img, format == PNG && pngGray16(data), codec)
	if err != nil {
		return nil, newError(ErrUnsupported, err, "unsupported %s colour type", format)
	}
	o := dec.meta(data).orientation()
	pix, w, h := orient(pix, cfg.Width, cfg.Height, o)
	return &Image{Width: w, Height: h, Pix: pix, Format: format, Bytes: len(data), Orientation: o}, nil
}

// pngGray16 reports whether a PNG's IHDR declares 16-bit greyscale
// (colour type 0), which PIL opens as I;16 and converts by clipping.
func pngGray16(data []byte) bool {
	// signature (8), chunk length (4), "IHDR" (4), width, height, depth, colour type
	if len(data) < 26 || string(data[12:16]) != "IHDR" {
		return false
	}
	return data[24] == 16 && data[25] == 0
}

func tooLarge(lim Limits) *Error {
	return newError(ErrTooLarge, nil, "the image is larger than %s", netguard.FormatBytes(lim.MaxBytes))
}
