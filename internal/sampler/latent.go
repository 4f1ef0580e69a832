package sampler

import "fmt"

// Latent geometry of FLUX.2 [klein].
const (
	// PackedChannels is the channel count of the packed (patchified) latent.
	PackedChannels = 128
	// VAEChannels is the channel count of the VAE latent before patchify.
	VAEChannels = 32
	// PatchSize is the side of the square patch folded into channels.
	PatchSize = 2
	// Downscale is the pixel size of one packed latent token (8x VAE, 2x patch).
	Downscale = 16
)

// Pack reorders a channel-first latent (B, C, h, w) into the token layout
// (B, h*w, C) the transformer consumes: token index row*w + col.
// dst must not alias src.
func Pack(dst, src []float32, batch, channels, h, w int) error {
	if err := checkDims("Pack", len(dst), len(src), batch, channels, h, w); err != nil {
		return err
	}
	hw := h * w
	for b := 0; b < batch; b++ {
		s := src[b*channels*hw : (b+1)*channels*hw]
		d := dst[b*channels*hw : (b+1)*channels*hw]
		for c := 0; c < channels; c++ {
			plane := s[c*hw : (c+1)*hw]
			for t, v := range plane {
				d[t*channels+c] = v
			}
		}
	}
	return nil
}

// Unpack is the inverse of Pack: (B, h*w, C) tokens to (B, C, h, w).
// dst must not alias src.
func Unpack(dst, src []float32, batch, channels, h, w int) error {
	if err := checkDims("Unpack", len(dst), len(src), batch, channels, h, w); err != nil {
		return err
	}
	hw := h * w
	for b := 0; b < batch; b++ {
		s := src[b*channels*hw : (b+1)*channels*hw]
		d := dst[b*channels*hw : (b+1)*channels*hw]
		for c := 0; c < channels; c++ {
			plane := d[c*hw : (c+1)*hw]
			for t := range plane {
				plane[t] = s[t*channels+c]
			}
		}
	}
	return nil
}

// Patchify folds 2x2 spatial patches into channels:
// (B, C, 2h, 2w) -> (B, 4C, h, w) with output channel c*4 + pi*2 + pj
// ("c (i 2) (j 2) -> (c 2 2) i j"). h and w are the output (packed) grid.
// dst must not alias src.
func Patchify(dst, src []float32, batch, channels, h, w int) error {
	if err := checkDims("Patchify", len(dst), len(src), batch, 4*channels, h, w); err != nil {
		return err
	}
	hw := h * w
	W := 2 * w
	for b := 0; b < batch; b++ {
		for c := 0; c < channels; c++ {
			in := src[(b*channels+c)*4*hw : (b*channels+c+1)*4*hw]
			for p := 0; p < 4; p++ {
				pi, pj := p>>1, p&1
				out := dst[(b*4*channels+c*4+p)*hw : (b*4*channels+c*4+p+1)*hw]
				for row := 0; row < h; row++ {
					line := in[(2*row+pi)*W:]
					o := out[row*w : (row+1)*w]
					for col := range o {
						o[col] = line[2*col+pj]
					}
				}
			}
		}
	}
	return nil
}

// Unpatchify is the inverse of Patchify: (B, 4C, h, w) -> (B, C, 2h, 2w).
// dst must not alias src.
func Unpatchify(dst, src []float32, batch, channels, h, w int) error {
	if err := checkDims("Unpatchify", len(dst), len(src), batch, 4*channels, h, w); err != nil {
		return err
	}
	hw := h * w
	W := 2 * w
	for b := 0; b < batch; b++ {
		for c := 0; c < channels; c++ {
			out := dst[(b*channels+c)*4*hw : (b*channels+c+1)*4*hw]
			for p := 0; p < 4; p++ {
				pi, pj := p>>1, p&1
				in := src[(b*4*channels+c*4+p)*hw : (b*4*channels+c*4+p+1)*hw]
				for row := 0; row < h; row++ {
					line := out[(2*row+pi)*W:]
					s := in[row*w : (row+1)*w]
					for col, v := range s {
						line[2*col+pj] = v
					}
				}
			}
		}
	}
	return nil
}

// PackedIndex returns the position in the packed token layout (one sample,
// (h*w, 128)) of the unpacked VAE-grid element (c, y, x) of the (32, 2h, 2w)
// grid. It is the composition Pack∘Patchify used to scatter noise colored on
// the VAE grid straight into the transformer's layout.
func PackedIndex(c, y, x, w int) int {
	row, pi := y>>1, y&1
	col, pj := x>>1, x&1
	return (row*w+col)*PackedChannels + c*4 + pi*2 + pj
}

// ImageIDs returns the (h*w, 4) int64 position ids of an image's tokens,
// rows [t, row, col, 0] in row-major token order. t is 0 for the generated
// image and 10+10k for reference image k.
func ImageIDs(t int64, h, w int) []int64 {
	ids := make([]int64, 0, h*w*4)
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			ids = append(ids, t, int64(r), int64(c), 0)
		}
	}
	return ids
}

// TextIDs returns the (length, 4) int64 position ids of the text tokens,
// rows [0, 0, 0, l].
func TextIDs(length int) []int64 {
	ids := make([]int64, length*4)
	for l := 0; l < length; l++ {
		ids[l*4+3] = int64(l)
	}
	return ids
}

func checkDims(op string, nDst, nSrc, batch, channels, h, w int) error {
	if batch < 1 || channels < 1 || h < 1 || w < 1 {
		return fmt.Errorf("sampler: %s: dimensions must be positive, got batch %d channels %d h %d w %d", op, batch, channels, h, w)
	}
	n := batch * channels * h * w
	if nDst != n || nSrc != n {
		return fmt.Errorf("sampler: %s: want %d values (batch %d, channels %d, %dx%d), got dst %d src %d", op, n, batch, channels, h, w, nDst, nSrc)
	}
	return nil
}
