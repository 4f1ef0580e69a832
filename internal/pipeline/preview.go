package pipeline

import (
	"math"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imagecodec"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// previewScale is how many pixels each latent token covers in a preview:
// a 1024x768 render (64x48 tokens) gives a 256x192 preview.
const previewScale = 4

// preview maps one image's packed latents through the manifest's linear
// latent-to-RGB fit and returns a small JPEG, or nil when the model has no
// fit. It costs microseconds, against seconds for a VAE decode.
func (e *Engine) preview(tokens []float32, h, w int) *engine.Image {
	f, bias := e.man.Preview.RGBFactors, e.man.Preview.RGBBias
	C := sampler.PackedChannels
	if len(f) != C || len(bias) != 3 {
		return nil
	}
	W, H := w*previewScale, h*previewScale
	pix := make([]uint8, 3*W*H)
	for t := 0; t < h*w; t++ {
		var rgb [3]float64
		copy(rgb[:], bias)
		tok := tokens[t*C : (t+1)*C]
		for c, v := range tok {
			row := f[c]
			rgb[0] += float64(v) * row[0]
			rgb[1] += float64(v) * row[1]
			rgb[2] += float64(v) * row[2]
		}
		var px [3]uint8
		for i, v := range rgb {
			px[i] = uint8(math.Round(math.Max(0, math.Min(1, v*0.5+0.5)) * 255))
		}
		ty, tx := t/w, t%w
		for dy := 0; dy < previewScale; dy++ {
			row := (ty*previewScale + dy) * W
			for dx := 0; dx < previewScale; dx++ {
				o := 3 * (row + tx*previewScale + dx)
				pix[o], pix[o+1], pix[o+2] = px[0], px[1], px[2]
			}
		}
	}
	codec := imagecodec.JPEG()
	data, err := codec.Encode(pix, W, H)
	if err != nil {
		return nil
	}
	return &engine.Image{Data: data, ContentType: codec.ContentType, Extension: codec.Extension, Width: W, Height: H}
}
