package imagecodec

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/gen2brain/webp"
)

func gradient(w, h int) []uint8 {
	pix := make([]uint8, 3*w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := 3 * (y*w + x)
			pix[o], pix[o+1], pix[o+2] = uint8(x*255/(w-1)), uint8(y*255/(h-1)), uint8((x+y)%256)
		}
	}
	return pix
}

func TestEncodeRoundTrip(t *testing.T) {
	const w, h = 48, 32
	pix := gradient(w, h)
	for _, tc := range []struct {
		codec       Codec
		contentType string
		decode      func([]byte) (image.Image, error)
		maxErr      int
	}{
		{PNG(), "image/png", func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }, 0},
		{JPEG(), "image/jpeg", func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }, 40},
		{WebP(), "image/webp", func(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) }, 60},
	} {
		t.Run(tc.codec.Extension, func(t *testing.T) {
			data, err := tc.codec.Encode(pix, w, h)
			if err != nil {
				t.Fatal(err)
			}
			if tc.codec.ContentType != tc.contentType {
				t.Fatalf("content type %q", tc.codec.ContentType)
			}
			img, err := tc.decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Fatalf("decoded %v", b)
			}
			worst := 0
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					r, g, b, _ := img.At(x, y).RGBA()
					o := 3 * (y*w + x)
					for i, v := range []uint32{r >> 8, g >> 8, b >> 8} {
						d := int(v) - int(pix[o+i])
						if d < 0 {
							d = -d
						}
						worst = max(worst, d)
					}
				}
			}
			if worst > tc.maxErr {
				t.Fatalf("max channel error %d > %d", worst, tc.maxErr)
			}
		})
	}
}

func TestEncodeRejectsBadInput(t *testing.T) {
	if _, err := PNG().Encode(make([]uint8, 10), 2, 2); err == nil {
		t.Fatal("want error for short pixel buffer")
	}
	if _, err := (Codec{}).Encode(make([]uint8, 12), 2, 2); err == nil {
		t.Fatal("want error for the zero Codec")
	}
}
