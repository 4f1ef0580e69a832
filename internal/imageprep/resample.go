package imageprep

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Filter is a resampling filter of PIL's Image.resize (Pillow's
// libImaging/Resample.c). Nearest neighbour, which PIL runs through another
// code path, is not offered.
type Filter int

// The filters, with PIL's names.
const (
	Box Filter = iota
	Bilinear
	Hamming
	Bicubic
	Lanczos
)

func (f Filter) String() string {
	if f < Box || f > Lanczos {
		return fmt.Sprintf("Filter(%d)", int(f))
	}
	return filters[f].name
}

// filterDef is one filter: its kernel and its support (half-width) at
// scale 1, as PIL defines them.
type filterDef struct {
	name    string
	kernel  func(x float64) float64
	support float64
}

var filters = [...]filterDef{
	Box:      {"box", boxKernel, 0.5},
	Bilinear: {"bilinear", bilinearKernel, 1},
	Hamming:  {"hamming", hammingKernel, 1},
	Bicubic:  {"bicubic", bicubicKernel, 2},
	Lanczos:  {"lanczos", lanczosKernel, 3},
}

// The kernels follow PIL's operation order exactly; products that feed a sum
// are rounded explicitly (float64(a*b)) because the Go spec allows fusing
// x*y+z into one FMA, which C compilers for x86-64 do not do here.

func boxKernel(x float64) float64 {
	if x > -0.5 && x <= 0.5 {
		return 1
	}
	return 0
}

func bilinearKernel(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// hammingKernel uses PIL's single-precision constants 0.54f and 0.46f.
func hammingKernel(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x == 0 {
		return 1
	}
	if x >= 1 {
		return 0
	}
	x *= math.Pi
	return sin(x) / x * (float64(float32(0.54)) + float64(float64(float32(0.46))*cos(x)))
}

// bicubicKernel is the Keys cubic with a = -0.5.
func bicubicKernel(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return float64(float64(float64((a+2)*x)-(a+3))*x*x) + 1
	}
	if x < 2 {
		return (float64(float64(float64((x-5)*x)+8)*x) - 4) * a
	}
	return 0
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	x *= math.Pi
	return sin(x) / x
}

// lanczosKernel is the sinc windowed by sinc(x/3) on [-3, 3).
func lanczosKernel(x float64) float64 {
	if -3 <= x && x < 3 {
		return sinc(x) * sinc(x/3)
	}
	return 0
}

// precisionBits is the fixed-point precision of PIL's 8-bit taps: 32 bits
// less 8 for the sample and 2 of headroom for the negative lobes.
const precisionBits = 32 - 8 - 2

// taps are the fixed-point weights of one resampling pass: output sample i
// reads input samples first[i] .. first[i]+count[i]-1 with weights
// weight[i*size : i*size+count[i]].
type taps struct {
	size         int
	first, count []int
	weight       []int32
}

// newTaps computes PIL's weights (precompute_coeffs + normalize_coeffs_8bpc)
// for resizing the whole of an axis of inSize samples to outSize samples.
func newTaps(inSize, outSize int, f filterDef) taps {
	// PIL takes the source box as float32 (0 and inSize here, exact) and
	// computes the scale in double.
	scale := float64(float32(inSize)) / float64(outSize)
	filterScale := max(scale, 1)
	support := f.support * filterScale
	size := int(math.Ceil(support))*2 + 1
	t := taps{size: size, first: make([]int, outSize), count: make([]int, outSize),
		weight: make([]int32, outSize*size)}
	inv := 1 / filterScale
	k := make([]float64, size)
	for xx := range outSize {
		center := float64(float64(float64(xx)+0.5) * scale) // + in0, which is 0
		// C's (int) conversion truncates toward zero, as Go's does.
		xmin := int(center - support + 0.5)
		xmin = max(xmin, 0)
		xmax := min(int(center+support+0.5), inSize) - xmin
		ww := 0.0
		for x := range xmax {
			w := f.kernel((float64(x+xmin) - center + 0.5) * inv)
			k[x] = w
			ww += w
		}
		if ww != 0 {
			for x := range xmax {
				k[x] /= ww
			}
		}
		for x := range xmax {
			p := float64(k[x] * (1 << precisionBits))
			if k[x] < 0 {
				t.weight[xx*size+x] = int32(-0.5 + p)
			} else {
				t.weight[xx*size+x] = int32(0.5 + p)
			}
		}
		t.first[xx], t.count[xx] = xmin, xmax
	}
	return t
}

// clip8 turns a fixed-point sum into a byte as PIL does: an arithmetic
// shift (floor) and a clamp to [0, 255].
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resize resizes an RGB image to w x h exactly as PIL's Image.resize(
// (w, h), filter) does on an 8-bit RGB image with the default box and no
// reducing_gap (Pillow 13): the same size is a copy; otherwise one pass per
// axis whose size changes, with 22-bit fixed-point taps and rounding. The
// horizontal pass comes first, over just the source rows the vertical pass
// reads, unless the height shrinks by more than twice as many pixels as the
// width does; then the vertical pass comes first.
func Resize(src RGB, w, h int, f Filter) (RGB, error) {
	if err := src.check(); err != nil {
		return RGB{}, err
	}
	if w < 1 || h < 1 {
		return RGB{}, fmt.Errorf("imageprep: resize to %dx%d: sizes must be positive", w, h)
	}
	if f < Box || f > Lanczos {
		return RGB{}, fmt.Errorf("imageprep: unknown filter %d", int(f))
	}
	if w == src.Width && h == src.Height {
		return RGB{Pix: append([]uint8(nil), src.Pix...), Width: w, Height: h}, nil
	}
	def := filters[f]
	needH, needV := w != src.Width, h != src.Height
	if shrink := src.Height - h; shrink > 0 && shrink > 2*(src.Width-w) {
		img := src
		if needV {
			img = vertical(img, newTaps(src.Height, h, def))
		}
		if needH {
			img = horizontal(img, 0, h, newTaps(src.Width, w, def))
		}
		return img, nil
	}
	img := src
	vert := newTaps(src.Height, h, def)
	if needH {
		rowFirst := vert.first[0]
		rowLast := vert.first[h-1] + vert.count[h-1]
		img = horizontal(src, rowFirst, rowLast, newTaps(src.Width, w, def))
		for i := range vert.first {
			vert.first[i] -= rowFirst
		}
	}
	if needV {
		img = vertical(img, vert)
	}
	return img, nil
}

// parallelRows splits rows [0, n) into contiguous chunks, one per
// processor, and runs fn on each; it returns when all are done. Rows are
// independent in both passes, so the result does not depend on the split.
func parallelRows(n, workPerRow int, fn func(lo, hi int)) {
	// Below this much work a goroutine costs more than it saves.
	const minWork = 1 << 16
	chunks := min(runtime.GOMAXPROCS(0), max(1, n*workPerRow/minWork), n)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for c := range chunks {
		lo, hi := n*c/chunks, n*(c+1)/chunks
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func horizontal(src RGB, rowFirst, rowLast int, t taps) RGB {
	w := len(t.first)
	out := RGB{Pix: make([]uint8, 3*w*(rowLast-rowFirst)), Width: w, Height: rowLast - rowFirst}
	parallelRows(rowLast-rowFirst, 3*w*t.size, func(lo, hi int) {
		for y := rowFirst + lo; y < rowFirst+hi; y++ {
			line := src.Pix[3*src.Width*y : 3*src.Width*(y+1)]
			dst := out.Pix[3*w*(y-rowFirst) : 3*w*(y-rowFirst+1)]
			for xx := range w {
				k := t.weight[xx*t.size : xx*t.size+t.count[xx]]
				in := line[3*t.first[xx] : 3*(t.first[xx]+t.count[xx])]
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				for x, kx := range k {
					p := in[3*x : 3*x+3]
					s0 += int32(p[0]) * kx
					s1 += int32(p[1]) * kx
					s2 += int32(p[2]) * kx
				}
				dst[3*xx], dst[3*xx+1], dst[3*xx+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
	})
	return out
}

func vertical(src RGB, t taps) RGB {
	h := len(t.first)
	stride := 3 * src.Width
	out := RGB{Pix: make([]uint8, stride*h), Width: src.Width, Height: h}
	parallelRows(h, stride*t.size, func(lo, hi int) {
		acc := make([]int32, stride)
		for yy := lo; yy < hi; yy++ {
			for i := range acc {
				acc[i] = 1 << (precisionBits - 1)
			}
			k := t.weight[yy*t.size : yy*t.size+t.count[yy]]
			for y, ky := range k {
				line := src.Pix[stride*(t.first[yy]+y) : stride*(t.first[yy]+y+1)]
				for i, v := range line {
					acc[i] += int32(v) * ky
				}
			}
			dst := out.Pix[stride*yy : stride*(yy+1)]
			for i, v := range acc {
				dst[i] = clip8(v)
			}
		}
	})
	return out
}
