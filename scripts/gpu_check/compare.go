package main

import (
	"fmt"
	"image"
	_ "image/png" // the server's default output format
	"io"
	"math"
	"os"
)

// ImageDiff compares two images of the same size over their RGB channels.
type ImageDiff struct {
	PSNR    float64 `json:"psnr_db"` // +Inf when identical
	MaxDiff int     `json:"max_channel_diff"`
}

// compareImages returns the PSNR (peak 255) and the largest difference of
// any 8-bit channel.
func compareImages(a, b image.Image) (ImageDiff, error) {
	ra, rb := a.Bounds(), b.Bounds()
	if ra.Dx() != rb.Dx() || ra.Dy() != rb.Dy() {
		return ImageDiff{}, fmt.Errorf("sizes differ: %v vs %v", ra.Size(), rb.Size())
	}
	var sse float64
	d := ImageDiff{}
	for y := 0; y < ra.Dy(); y++ {
		for x := 0; x < ra.Dx(); x++ {
			r1, g1, b1, _ := a.At(ra.Min.X+x, ra.Min.Y+y).RGBA()
			r2, g2, b2, _ := b.At(rb.Min.X+x, rb.Min.Y+y).RGBA()
			for _, p := range [][2]uint32{{r1, r2}, {g1, g2}, {b1, b2}} {
				e := int(p[0]>>8) - int(p[1]>>8)
				sse += float64(e * e)
				d.MaxDiff = max(d.MaxDiff, e, -e)
			}
		}
	}
	mse := sse / float64(3*ra.Dx()*ra.Dy())
	d.PSNR = 10 * math.Log10(255*255/mse)
	return d, nil
}

func readImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

func compareCmd(args []string, out io.Writer) (int, error) {
	if len(args) != 2 {
		return 2, fmt.Errorf("compare: want two PNG files")
	}
	a, err := readImage(args[0])
	if err != nil {
		return 1, err
	}
	b, err := readImage(args[1])
	if err != nil {
		return 1, err
	}
	d, err := compareImages(a, b)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(out, `{"psnr_db": %s, "max_channel_diff": %d}`+"\n", jsonFloat(d.PSNR), d.MaxDiff)
	return 0, nil
}

// jsonFloat writes +Inf (identical images) as a large finite number JSON can hold.
func jsonFloat(v float64) string {
	if math.IsInf(v, 1) {
		return "999"
	}
	return fmt.Sprintf("%.2f", v)
}
