package cns

import (
	"math"
	"math/cmplx"
	"testing"

	"gonum.org/v1/gonum/dsp/fourier"
)

// The Stockham transform against gonum's fftpack, for every length up to
// 130 and some larger ones (powers of two, 3·2^k, 5-smooth, primes), forward
// and inverse, on single lines and on batches of blocks.
func TestFFTPlanMatchesGonum(t *testing.T) {
	lengths := []int{192, 243, 250, 256, 257, 360}
	for n := 1; n <= 130; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		plan := newFFTPlan(n)
		ref := fourier.NewCmplxFFT(n)
		for _, block := range []int{1, 3} {
			x := make([]complex128, n*block)
			for k := range x {
				x[k] = complex(math.Sin(float64(k)*0.9+1), math.Cos(float64(k)*0.31))
			}
			for _, inverse := range []bool{false, true} {
				got := append([]complex128(nil), x...)
				plan.transform(got, make([]complex128, len(got)), block, inverse)
				for u := 0; u < block; u++ {
					line := make([]complex128, n)
					for j := range line {
						line[j] = x[j*block+u]
					}
					var want []complex128
					if inverse {
						want = ref.Sequence(nil, line)
					} else {
						want = ref.Coefficients(nil, line)
					}
					for k := range want {
						if d := cmplx.Abs(got[k*block+u] - want[k]); d > 1e-9*float64(n) {
							t.Fatalf("n=%d block=%d inverse=%v [%d]: %v, gonum %v", n, block, inverse, k, got[k*block+u], want[k])
						}
					}
				}
			}
		}
	}
}

// forward followed by an inverse filter with gain 1/(HW) is the identity.
func TestPlaneFFTRoundTrip(t *testing.T) {
	for _, g := range [][2]int{{96, 128}, {1, 1}, {13, 34}, {2, 250}} {
		H, W := g[0], g[1]
		p := newPlaneFFT(H, W)
		x := make([]complex128, H*W)
		for k := range x {
			x[k] = complex(math.Sin(float64(k)), math.Cos(float64(k)*1.7))
		}
		buf := append([]complex128(nil), x...)
		gain := make([]float64, H*W)
		for k := range gain {
			gain[k] = 1 / float64(H*W)
		}
		p.filter(buf, gain)
		for k := range buf {
			if cmplx.Abs(buf[k]-x[k]) > 1e-12 {
				t.Fatalf("%dx%d [%d]: %v, want %v", H, W, k, buf[k], x[k])
			}
		}
	}
}
