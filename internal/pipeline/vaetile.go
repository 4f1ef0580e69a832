package pipeline

import (
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Tiled VAE decoding bounds the decoder's peak, whose mid-block attention
// grows with the square of the latent pixels. It follows diffusers'
// AutoencoderKL.tiled_decode: square tiles of `tile` latent tokens start
// every 3/4 tile; each is decoded alone; then, row by row and left to
// right, a tile's first quarter-tile of pixel rows is blended linearly into
// the (already blended) tile above, its first quarter-tile of columns into
// the tile on its left, and it contributes its first 3/4 tile of rows and
// columns to the image. The decoder is convolutional except for that
// attention, so tiles differ from the whole-image decode only through it;
// docs/memory.md has the measured difference.

// imageTile is one decoded tile: planes [3, h, w] in pixels.
type imageTile struct {
	h, w   int
	planes []float32
}

// tilesAlong is how many tiles cover n latent tokens: one starts every
// 3/4 tile while there are tokens left.
func tilesAlong(n, tile int) int {
	stride := tile * 3 / 4
	return (n + stride - 1) / stride
}

// decodeTiled decodes [128, h, w] latents in tiles of tile x tile tokens
// and returns the image planes [3, 16h, 16w].
func (r *run) decodeTiled(chw []float32, h, w, tile int, final bool) ([]float32, error) {
	return tiledDecode(chw, h, w, tile, final, r.decodeLatents)
}

// tileDecoder decodes [128, h, w] latents to [3, 16h, 16w] planes.
type tileDecoder func(chw []float32, h, w int, final bool) ([]float32, error)

// tiledDecode runs decode tile by tile and blends the tiles.
func tiledDecode(chw []float32, h, w, tile int, final bool, decode tileDecoder) ([]float32, error) {
	const f = sampler.Downscale
	C := sampler.PackedChannels
	stride := tile * 3 / 4
	blend, limit := tile*f/4, stride*f
	H, W := h*f, w*f
	out := make([]float32, 3*H*W)
	nI, nJ := tilesAlong(h, tile), tilesAlong(w, tile)
	var above []imageTile
	for ti := 0; ti < nI; ti++ {
		i := ti * stride
		row := make([]imageTile, nJ)
		for tj := 0; tj < nJ; tj++ {
			j := tj * stride
			th, tw := min(tile, h-i), min(tile, w-j)
			planes, err := decode(cropCHW(chw, C, h, w, i, j, th, tw), th, tw,
				final && ti == nI-1 && tj == nJ-1)
			if err != nil {
				return nil, err
			}
			t := imageTile{h: th * f, w: tw * f, planes: planes}
			if ti > 0 {
				blendRows(above[tj], t, blend)
			}
			if tj > 0 {
				blendColumns(row[tj-1], t, blend)
			}
			row[tj] = t
			pasteCHW(out, H, W, t, i*f, j*f, min(limit, t.h), min(limit, t.w))
		}
		above = row
	}
	return out, nil
}

// cropCHW copies the th x tw window at (i, j) of a [c, h, w] array.
func cropCHW(src []float32, c, h, w, i, j, th, tw int) []float32 {
	dst := make([]float32, c*th*tw)
	for k := 0; k < c; k++ {
		for y := 0; y < th; y++ {
			copy(dst[(k*th+y)*tw:(k*th+y+1)*tw], src[(k*h+i+y)*w+j:])
		}
	}
	return dst
}

// pasteCHW copies the top-left rows x cols of tile t into the [3, H, W]
// image at (y0, x0).
func pasteCHW(dst []float32, H, W int, t imageTile, y0, x0, rows, cols int) {
	for k := 0; k < 3; k++ {
		for y := 0; y < rows; y++ {
			copy(dst[(k*H+y0+y)*W+x0:(k*H+y0+y)*W+x0+cols], t.planes[(k*t.h+y)*t.w:])
		}
	}
}

// blendRows fades tile a (above) into tile b over b's first rows, in place
// (diffusers' blend_v): row y of b becomes a's row h-e+y weighted 1-y/e
// plus b's weighted y/e. The tiles have the same width.
func blendRows(a, b imageTile, extent int) {
	e := min(a.h, b.h, extent)
	for k := 0; k < 3; k++ {
		for y := 0; y < e; y++ {
			wa, wb := float32(1-float64(y)/float64(e)), float32(float64(y)/float64(e))
			ra := a.planes[(k*a.h+a.h-e+y)*a.w:][:b.w]
			rb := b.planes[(k*b.h+y)*b.w:][:b.w]
			for x := range rb {
				rb[x] = ra[x]*wa + rb[x]*wb
			}
		}
	}
}

// blendColumns fades tile a (left) into tile b over b's first columns, in
// place (diffusers' blend_h). The tiles have the same height.
func blendColumns(a, b imageTile, extent int) {
	e := min(a.w, b.w, extent)
	for k := 0; k < 3; k++ {
		for y := 0; y < b.h; y++ {
			ra := a.planes[(k*a.h+y)*a.w:][:a.w]
			rb := b.planes[(k*b.h+y)*b.w:][:b.w]
			for x := 0; x < e; x++ {
				wa, wb := float32(1-float64(x)/float64(e)), float32(float64(x)/float64(e))
				rb[x] = ra[a.w-e+x]*wa + rb[x]*wb
			}
		}
	}
}
