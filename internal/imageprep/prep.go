package imageprep

import (
	"errors"
	"fmt"
	"math"

	"github.com/kleinserve/kleinserve/internal/sampler"
)

// RGB is an 8-bit RGB image: Pix holds Width*Height pixels row by row, three
// bytes (R, G, B) each.
type RGB struct {
	Pix           []uint8
	Width, Height int
}

func (m RGB) check() error {
	if m.Width < 1 || m.Height < 1 {
		return fmt.Errorf("imageprep: image size %dx%d: sides must be positive", m.Width, m.Height)
	}
	if len(m.Pix) != 3*m.Width*m.Height {
		return fmt.Errorf("imageprep: %dx%d RGB image needs %d bytes, has %d", m.Width, m.Height, 3*m.Width*m.Height, len(m.Pix))
	}
	return nil
}

// Rules for reference images, those of diffusers' Flux2KleinPipeline
// (docs/editing.md).
const (
	// MinSide is the smallest width or height accepted.
	MinSide = 64
	// MaxAspect bounds max(w/h, h/w).
	MaxAspect = 8
	// MaxArea is the pixel budget: a larger reference is first resized to
	// about this many pixels, keeping its aspect ratio.
	MaxArea = 1024 * 1024
	// MaxReferences is how many reference images one request may carry
	// (fal's edit endpoints take 1 to 4).
	MaxReferences = 4
	// Multiple is what processed sides are floored to: the pixel size of
	// one latent token.
	Multiple = sampler.Downscale
	// ReferenceFilter is the filter of the pixel-budget resize.
	ReferenceFilter = Lanczos
)

// ErrReference is wrapped by every rejection of a reference image's size.
var ErrReference = errors.New("reference image not accepted")

// CheckReference applies the pipeline's check_image_input to a reference of
// w x h pixels: both sides at least MinSide, aspect ratio at most MaxAspect.
func CheckReference(w, h int) error {
	if w < MinSide || h < MinSide {
		return fmt.Errorf("%w: %dx%d is too small, both sides must be at least %d px", ErrReference, w, h, MinSide)
	}
	// The same float64 quotients as Python's true division.
	if r := max(float64(w)/float64(h), float64(h)/float64(w)); r > MaxAspect {
		return fmt.Errorf("%w: %dx%d has aspect ratio %.1f:1, at most %d:1 is allowed", ErrReference, w, h, r, MaxAspect)
	}
	return nil
}

// budgetSize is the size a reference is resized to before anything else
// (_resize_to_target_area): unchanged within MaxArea, else both sides scaled
// by sqrt(MaxArea/(w*h)) and truncated.
func budgetSize(w, h int) (bw, bh int, resized bool) {
	if w*h <= MaxArea {
		return w, h, false
	}
	scale := math.Sqrt(float64(MaxArea) / float64(w*h))
	return int(float64(w) * scale), int(float64(h) * scale), true
}

// ProcessedSize is the size a w x h reference has once prepared: the pixel
// budget applied, then both sides floored to multiples of Multiple. When
// a request gives no output size, the output takes the first reference's
// processed size. The result is only meaningful for sizes CheckReference
// accepts.
func ProcessedSize(w, h int) (pw, ph int) {
	bw, bh, _ := budgetSize(w, h)
	return bw / Multiple * Multiple, bh / Multiple * Multiple
}

// CenterCrop cuts the centred w x h region out of src, at
// ((Width-w)/2, (Height-h)/2) with integer halves: what diffusers'
// Flux2ImageProcessor does for preprocess(resize_mode="crop") (its
// _resize_and_crop crops and does not resize).
func CenterCrop(src RGB, w, h int) (RGB, error) {
	if err := src.check(); err != nil {
		return RGB{}, err
	}
	if w < 1 || h < 1 || w > src.Width || h > src.Height {
		return RGB{}, fmt.Errorf("imageprep: crop %dx%d out of %dx%d: sizes must be positive and fit", w, h, src.Width, src.Height)
	}
	left, top := (src.Width-w)/2, (src.Height-h)/2
	out := RGB{Pix: make([]uint8, 0, 3*w*h), Width: w, Height: h}
	for y := top; y < top+h; y++ {
		out.Pix = append(out.Pix, src.Pix[3*(y*src.Width+left):3*(y*src.Width+left+w)]...)
	}
	return out, nil
}

// PrepareReference turns a reference image into the pixels the VAE encoder
// sees, as Flux2KleinPipeline does before preprocess's normalisation:
// CheckReference, the pixel budget (LANCZOS), both sides floored to
// multiples of Multiple, then CenterCrop to that size. Its size is
// ProcessedSize(src.Width, src.Height).
func PrepareReference(src RGB) (RGB, error) {
	if err := src.check(); err != nil {
		return RGB{}, err
	}
	if err := CheckReference(src.Width, src.Height); err != nil {
		return RGB{}, err
	}
	img := src
	if bw, bh, resized := budgetSize(src.Width, src.Height); resized {
		var err error
		if img, err = Resize(src, bw, bh, ReferenceFilter); err != nil {
			return RGB{}, err
		}
	}
	pw, ph := ProcessedSize(src.Width, src.Height)
	return CenterCrop(img, pw, ph)
}

// Normalize writes img as float32 planes (3, Height, Width) in [-1, 1], the
// VAE encoder's input: v/255 in float32, then 2x-1, as diffusers'
// pil_to_numpy and normalize compute it.
func Normalize(dst []float32, img RGB) error {
	if err := img.check(); err != nil {
		return err
	}
	n := img.Width * img.Height
	if len(dst) != 3*n {
		return fmt.Errorf("imageprep: normalize %dx%d: want %d values, got %d", img.Width, img.Height, 3*n, len(dst))
	}
	for c := range 3 {
		plane := dst[c*n : (c+1)*n]
		for i := range plane {
			v := float32(img.Pix[3*i+c]) / 255
			plane[i] = float32(2*v) - 1
		}
	}
	return nil
}
