package imageinput

import (
	"image"
)

// The reference pipeline sees JPEG and lossy WebP pixels as PIL's
// libraries produce them: libjpeg-turbo and libwebp both interpolate the
// subsampled chroma ("fancy upsampling") and convert with their own
// fixed-point formulas. Go's decoders return the planes unconverted, so
// the same interpolation and arithmetic are applied here. Only the JPEG
// IDCT itself still differs from libjpeg-turbo's (by a few levels; see
// docs/imageinput.md).

// chromaCodec selects the upsampling and colour conversion of a codec.
type chromaCodec int

const (
	libjpeg chromaCodec = iota
	libwebp
)

// ycbcrRGB converts m (whose Rect starts at 0,0) to packed RGB.
func ycbcrRGB(out []uint8, m *image.YCbCr, codec chromaCodec) []uint8 {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw, ch := w, h
	fancyH, fancyV := false, false
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio420:
		cw, ch, fancyH, fancyV = (w+1)/2, (h+1)/2, true, true
	case image.YCbCrSubsampleRatio422:
		cw, fancyH = (w+1)/2, true
	case image.YCbCrSubsampleRatio444:
	default: // 4:4:0, 4:1:1, 4:1:0: each luma sample takes the chroma sample covering it
		return ycbcrNearest(out, m, codec)
	}
	cb := make([]int32, w)
	cr := make([]int32, w)
	for y := 0; y < h; y++ {
		switch {
		case !fancyH:
			for x := 0; x < w; x++ {
				cb[x], cr[x] = int32(m.Cb[y*m.CStride+x]), int32(m.Cr[y*m.CStride+x])
			}
		case !fancyV:
			h2v1(cb, m.Cb[y*m.CStride:][:cw])
			h2v1(cr, m.Cr[y*m.CStride:][:cw])
		default:
			near := y >> 1
			far := near - 1
			if y&1 == 1 {
				far = near + 1
			}
			far = min(max(far, 0), ch-1)
			n, f := near*m.CStride, far*m.CStride
			if codec == libwebp {
				webpRow(cb, m.Cb[n:][:cw], m.Cb[f:][:cw])
				webpRow(cr, m.Cr[n:][:cw], m.Cr[f:][:cw])
			} else {
				h2v2(cb, m.Cb[n:][:cw], m.Cb[f:][:cw])
				h2v2(cr, m.Cr[n:][:cw], m.Cr[f:][:cw])
			}
		}
		ys := m.Y[y*m.YStride:][:w]
		for x := 0; x < w; x++ {
			r, g, b := toRGBFunc(codec)(int32(ys[x]), cb[x], cr[x])
			out = append(out, r, g, b)
		}
	}
	return out
}

func ycbcrNearest(out []uint8, m *image.YCbCr, codec chromaCodec) []uint8 {
	conv := toRGBFunc(codec)
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			c := m.COffset(x, y)
			r, g, b := conv(int32(m.Y[m.YOffset(x, y)]), int32(m.Cb[c]), int32(m.Cr[c]))
			out = append(out, r, g, b)
		}
	}
	return out
}

func toRGBFunc(codec chromaCodec) func(y, cb, cr int32) (uint8, uint8, uint8) {
	if codec == libwebp {
		return webpYUVToRGB
	}
	return jpegYCCToRGB
}

// at returns s[i] with the index clamped to the row (edge replication, as
// both libraries do at image borders).
func at(s []uint8, i int) int32 { return int32(s[min(max(i, 0), len(s)-1)]) }

// h2v1 is libjpeg-turbo's h2v1_fancy_upsample: each output sample is 3/4
// of the nearer input sample plus 1/4 of the next one, with alternating
// rounding bias 1, 2.
func h2v1(out []int32, in []uint8) {
	for i := range out {
		c := i >> 1
		if i&1 == 0 {
			out[i] = (3*at(in, c) + at(in, c-1) + 1) >> 2
		} else {
			out[i] = (3*at(in, c) + at(in, c+1) + 2) >> 2
		}
	}
}

// h2v2 is libjpeg-turbo's h2v2_fancy_upsample for one output row: the
// column sums 3*near+far, then 3/4, 1/4 horizontally, bias 8, 7, >>4.
func h2v2(out []int32, near, far []uint8) {
	colsum := func(i int) int32 {
		i = min(max(i, 0), len(near)-1)
		return 3*int32(near[i]) + int32(far[i])
	}
	for i := range out {
		c := i >> 1
		if i&1 == 0 {
			out[i] = (3*colsum(c) + colsum(c-1) + 8) >> 4
		} else {
			out[i] = (3*colsum(c) + colsum(c+1) + 7) >> 4
		}
	}
}

// webpRow is libwebp's fancy upsampler (UPSAMPLE_FUNC) for one output
// row, near being the chroma row closer to it.
func webpRow(out []int32, near, far []uint8) {
	w := len(out)
	out[0] = (3*at(near, 0) + at(far, 0) + 2) >> 2
	for x := 1; 2*x-1 < w; x++ {
		n0, n1, f0, f1 := at(near, x-1), at(near, x), at(far, x-1), at(far, x)
		avg := n0 + n1 + f0 + f1 + 8
		out[2*x-1] = (((avg + 2*(n1+f0)) >> 3) + n0) >> 1
		if 2*x < w {
			out[2*x] = (((avg + 2*(n0+f1)) >> 3) + n1) >> 1
		}
	}
	if w > 1 && w%2 == 0 {
		last := (w - 1) >> 1
		out[w-1] = (3*at(near, last) + at(far, last) + 2) >> 2
	}
}

// jpegYCCToRGB is libjpeg's ycc_rgb_convert: 16-bit fixed point,
// FIX(1.40200) = 91881, FIX(1.77200) = 116130, FIX(0.71414) = 46802,
// FIX(0.34414) = 22554, rounding with ONE_HALF and arithmetic shifts.
func jpegYCCToRGB(y, cb, cr int32) (uint8, uint8, uint8) {
	const half = 1 << 15
	cb, cr = cb-128, cr-128
	r := y + (91881*cr+half)>>16
	g := y + (-22554*cb+half-46802*cr)>>16
	b := y + (116130*cb+half)>>16
	return clip8(r), clip8(g), clip8(b)
}

// webpYUVToRGB is libwebp's VP8YuvToRgb: 14-bit coefficients applied with
// MultHi (>>8), then VP8Clip8 (>>6 with saturation).
func webpYUVToRGB(y, u, v int32) (uint8, uint8, uint8) {
	mh := func(v, c int32) int32 { return (v * c) >> 8 }
	clip := func(v int32) uint8 {
		if v&^(256<<6-1) == 0 {
			return uint8(v >> 6)
		}
		if v < 0 {
			return 0
		}
		return 255
	}
	yy := mh(y, 19077)
	return clip(yy + mh(v, 26149) - 14234), clip(yy - mh(u, 6419) - mh(v, 13320) + 8708), clip(yy + mh(u, 33050) - 17685)
}

func clip8(v int32) uint8 { return uint8(min(max(v, 0), 255)) }
