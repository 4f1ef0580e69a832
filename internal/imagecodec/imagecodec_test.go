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
		format, contentType string
		decode              func([]byte) (image.Image, error)
		maxErr              int
	}{
		{"png", "image/png", func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }, 0},
		{"jpeg", "image/jpeg", func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }, 40},
		{"webp", "image/webp", func(b []byte) (image.Image, error) { return webp.Decode(bytes.NewReader(b)) }, 60},
	} {
		t.Run(tc.format, func(t *testing.T) {
			data, f, err := Encode(pix, w, h, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if f.ContentType != tc.contentType {
				t.Fatalf("content type %q", f.ContentType)
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
	if _, _, err := Encode(make([]uint8, 10), 2, 2, "png"); err == nil {
		t.Fatal("want error for short pixel buffer")
	}
	if _, _, err := Encode(make([]uint8, 12), 2, 2, "gif"); err == nil {
		t.Fatal("want error for unknown format")
	}
}
