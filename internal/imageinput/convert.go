package imageinput

import (
	"fmt"
	"image"
	"image/color"
)

// toRGB converts a decoded image to packed 8-bit RGB the way PIL's
// convert("RGB") converts the image PIL would have opened from the same
// file:
//
//   - alpha is dropped, never composited (PIL's RGBA/LA/PA to RGB), so the
//     colour under a transparent pixel is kept; Go's decoders return
//     non-premultiplied NRGBA/NRGBA64 and NRGBA palettes for images with
//     alpha, which keep that colour too;
//   - 16-bit samples keep their high byte (PIL unpacks RGB;16B, RGBA;16B
//     and LA;16B that way), except 16-bit greyscale, which PIL opens as
//     I;16 and converts by clipping to 255 (clip16Gray);
//   - palette images are looked up, ignoring transparency;
//   - YCbCr (JPEG, lossy WebP) is upsampled and converted as codec's C
//     library does (ycbcr.go);
//   - CMYK follows PIL's cmyk2rgb: v = 255-k - (x*(255-k)+127)/255
//     rounded as PIL's MULDIV255.
func toRGB(img image.Image, clip16Gray bool, codec chromaCodec) ([]uint8, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]uint8, 0, 3*w*h)
	switch m := img.(type) {
	case *image.Gray:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for _, v := range m.Pix[m.PixOffset(b.Min.X, y):][:w] {
				out = append(out, v, v, v)
			}
		}
	case *image.Gray16:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):][:2*w]
			for x := 0; x < w; x++ {
				v := gray16(row[2*x], row[2*x+1], clip16Gray)
				out = append(out, v, v, v)
			}
		}
	case *image.RGBA: // Go's PNG decoder: opaque RGB (premultiplied = straight)
		out = rgbFrom4(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h)
	case *image.NRGBA:
		out = rgbFrom4(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h)
	case *image.RGBA64:
		out = rgbFrom8(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h, false)
	case *image.NRGBA64:
		out = rgbFrom8(out, m.Pix, m.Stride, m.PixOffset(b.Min.X, b.Min.Y), w, h, clip16Gray)
	case *image.Paletted:
		pal := make([][3]uint8, 256)
		for i, c := range m.Palette {
			pal[i] = straightRGB(c)
		}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for _, idx := range m.Pix[m.PixOffset(b.Min.X, y):][:w] {
				c := pal[idx]
				out = append(out, c[0], c[1], c[2])
			}
		}
	case *image.CMYK:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, y):][:4*w]
			for x := 0; x < w; x++ {
				p := row[4*x : 4*x+4]
				nk := 255 - int(p[3])
				out = append(out, cmyk(p[0], nk), cmyk(p[1], nk), cmyk(p[2], nk))
			}
		}
	case *image.YCbCr:
		out = ycbcrRGB(out, m, codec)
	case *image.NYCbCrA:
		out = ycbcrRGB(out, &m.YCbCr, codec)
	default:
		return nil, fmt.Errorf("imageinput: no RGB conversion for %T", img)
	}
	return out, nil
}

// gray16 converts one big-endian 16-bit grey sample.
func gray16(hi, lo uint8, clip bool) uint8 {
	if !clip {
		return hi
	}
	if hi != 0 {
		return 255
	}
	return lo
}

func rgbFrom4(out, pix []uint8, stride, off, w, h int) []uint8 {
	for y := 0; y < h; y++ {
		row := pix[off+y*stride:][:4*w]
		for x := 0; x < w; x++ {
			out = append(out, row[4*x], row[4*x+1], row[4*x+2])
		}
	}
	return out
}

// rgbFrom8 keeps the high byte of 16-bit samples; with clip (16-bit grey
// source, R = G = B) the grey value is clipped to 255 instead.
func rgbFrom8(out, pix []uint8, stride, off, w, h int, clip bool) []uint8 {
	for y := 0; y < h; y++ {
		row := pix[off+y*stride:][:8*w]
		for x := 0; x < w; x++ {
			p := row[8*x:]
			if clip {
				v := gray16(p[0], p[1], true)
				out = append(out, v, v, v)
				continue
			}
			out = append(out, p[0], p[2], p[4])
		}
	}
	return out
}

// straightRGB is a palette colour without alpha premultiplication.
func straightRGB(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.RGBA:
		if c.A == 0xff {
			return [3]uint8{c.R, c.G, c.B}
		}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}

// cmyk is PIL's cmyk2rgb for one channel: CLIP8(nk - MULDIV255(x, nk)).
func cmyk(x uint8, nk int) uint8 {
	t := int(x)*nk + 128
	return uint8(max(nk-((t>>8)+t)>>8, 0))
}

// orient applies EXIF orientation o (2–8) to packed RGB pixels, as PIL's
// exif_transpose does, and returns the new pixels and size.
func orient(pix []uint8, w, h, o int) ([]uint8, int, int) {
	if o < 2 || o > 8 {
		return pix, w, h
	}
	nw, nh := w, h
	if o >= 5 {
		nw, nh = h, w
	}
	out := make([]uint8, len(pix))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var dx, dy int
			switch o {
			case 2: // mirror left-right
				dx, dy = w-1-x, y
			case 3: // rotate 180
				dx, dy = w-1-x, h-1-y
			case 4: // mirror top-bottom
				dx, dy = x, h-1-y
			case 5: // transpose
				dx, dy = y, x
			case 6: // rotate 90 clockwise
				dx, dy = h-1-y, x
			case 7: // transverse
				dx, dy = h-1-y, w-1-x
			case 8: // rotate 90 counter-clockwise
				dx, dy = y, w-1-x
			}
			copy(out[3*(dy*nw+dx):][:3], pix[3*(y*w+x):][:3])
		}
	}
	return out, nw, nh
}
