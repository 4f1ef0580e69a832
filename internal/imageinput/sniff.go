package imageinput

import "bytes"

// Format is an accepted image format, found from the bytes themselves
// (never from a declared content type or file name).
type Format string

// The accepted formats. GIF is not among them: Go's GIF decoder replaces
// the colour of the transparent palette entry, which PIL keeps, so its
// pixels would differ from the reference pipeline's.
const (
	PNG  Format = "png"
	JPEG Format = "jpeg"
	WebP Format = "webp"
	BMP  Format = "bmp"
)

// Sniff returns the format of data from its signature, or an *Error
// (ErrUnsupported) whose reason names a known format that is not accepted.
func Sniff(data []byte) (Format, error) {
	if format := sniff(data); format != "" {
		return format, nil
	}
	if name := describe(data); name != "" {
		return "", newError(ErrUnsupported, nil, "%s images are not supported (use PNG, JPEG, WebP or BMP)", name)
	}
	return "", newError(ErrUnsupported, nil, "not a PNG, JPEG, WebP or BMP image")
}

// sniff returns the format of data from its signature, or "".
func sniff(data []byte) Format {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return PNG
	case bytes.HasPrefix(data, []byte{0xFF, 0xD8, 0xFF}):
		return JPEG
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return WebP
	case bytes.HasPrefix(data, []byte("BM")):
		return BMP
	}
	return ""
}

// describe names a rejected signature for the user, when it is a known
// image format that is not accepted.
func describe(data []byte) string {
	for _, k := range []struct{ sig, name string }{
		{"GIF87a", "GIF"}, {"GIF89a", "GIF"}, {"II*\x00", "TIFF"}, {"MM\x00*", "TIFF"},
		{"\x00\x00\x01\x00", "ICO"}, {"8BPS", "PSD"}, {"%PDF", "PDF"}, {"<svg", "SVG"}, {"<?xml", "SVG or XML"},
	} {
		if bytes.HasPrefix(data, []byte(k.sig)) {
			return k.name
		}
	}
	if len(data) >= 12 && string(data[4:8]) == "ftyp" {
		return "HEIC/AVIF"
	}
	return ""
}
