package cns

import "gonum.org/v1/gonum/dsp/fourier"

// planeFFT performs unnormalised 2-D complex FFTs of an h×w row-major plane
// with gonum's mixed-radix transforms (any size, odd and prime included).
// It owns its scratch buffers, so one planeFFT serves one goroutine.
type planeFFT struct {
	h, w       int
	rows, cols *fourier.CmplxFFT // nil for a length-1 axis (identity)
	col        []complex128
}

func newPlaneFFT(h, w int) *planeFFT {
	p := &planeFFT{h: h, w: w, col: make([]complex128, h)}
	if w > 1 {
		p.rows = fourier.NewCmplxFFT(w)
	}
	if h > 1 {
		p.cols = fourier.NewCmplxFFT(h)
	}
	return p
}

// rowPass transforms every row in place (inverse: the unnormalised
// backward transform).
func (p *planeFFT) rowPass(buf []complex128, inverse bool) {
	if p.rows == nil {
		return
	}
	for y := 0; y < p.h; y++ {
		r := buf[y*p.w : (y+1)*p.w]
		if inverse {
			p.rows.Sequence(r, r)
		} else {
			p.rows.Coefficients(r, r)
		}
	}
}

// forward replaces buf by its 2-D DFT, X(ky, kx) = Σ x(y, x)·e^{−2πi(ky·y/h + kx·x/w)}.
func (p *planeFFT) forward(buf []complex128) {
	p.rowPass(buf, false)
	if p.cols == nil {
		return
	}
	for x := 0; x < p.w; x++ {
		p.gather(buf, x)
		p.cols.Coefficients(p.col, p.col)
		p.scatter(buf, x)
	}
}

// filter replaces buf by ifft2(fft2(buf)·gain)·h·w (the gonum transforms are
// unnormalised; fold 1/(h·w) into gain). gain is a real h×w map that must
// be symmetric under k → −k for a real input to stay real. The column pass
// forward, multiply and inverse are fused per column.
func (p *planeFFT) filter(buf []complex128, gain []float64) {
	p.rowPass(buf, false)
	for x := 0; x < p.w; x++ {
		p.gather(buf, x)
		if p.cols != nil {
			p.cols.Coefficients(p.col, p.col)
		}
		for y, c := range p.col {
			g := gain[y*p.w+x]
			p.col[y] = complex(real(c)*g, imag(c)*g)
		}
		if p.cols != nil {
			p.cols.Sequence(p.col, p.col)
		}
		p.scatter(buf, x)
	}
	p.rowPass(buf, true)
}

func (p *planeFFT) gather(buf []complex128, x int) {
	for y := range p.col {
		p.col[y] = buf[y*p.w+x]
	}
}

func (p *planeFFT) scatter(buf []complex128, x int) {
	for y, v := range p.col {
		buf[y*p.w+x] = v
	}
}
