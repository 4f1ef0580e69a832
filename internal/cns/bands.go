package cns

import (
	"fmt"
	"math"
	"math/bits"
	"sync"
)

// BandMap assigns every coefficient of an unshifted H×W FFT grid to one of
// F radial bands with the official code's convention (docs/cns.md §3):
//
//	fy = fftfreq(H), fx = fftfreq(W), r = sqrt(fx² + fy²)
//	band = clamp(floor(r/max(r) · (F−1)), 0, F−1)
//
// The floor is evaluated exactly in integer arithmetic, so coefficients that
// sit on a band edge in exact arithmetic land in the upper band. Band F−1
// holds only the maximum-radius coefficients; small grids can leave bands
// empty. A grid whose maximum radius is 0 (1×1) puts everything in band 0.
type BandMap struct {
	H, W, F int
	// Band holds the band of coefficient (ky, kx) at ky*W + kx.
	Band []int32
	// Counts holds the number of coefficients per band.
	Counts []int
}

// fftFreqNum returns the signed numerator of numpy's fftfreq(n)[i] (the
// frequency is fftFreqNum/n).
func fftFreqNum(i, n int) int64 {
	if i < (n+1)/2 {
		return int64(i)
	}
	return int64(i - n)
}

// maxBandGrid bounds H and W so that the exact 128-bit comparisons below
// cannot overflow (r² numerators stay below 2^60).
const maxBandGrid = 1 << 14

// maxBands bounds F for the same reason (F² < 2^32).
const maxBands = 1 << 16

// RadialBands computes the band map of an H×W grid with F bands.
func RadialBands(H, W, F int) (*BandMap, error) {
	if H < 1 || W < 1 || H > maxBandGrid || W > maxBandGrid {
		return nil, fmt.Errorf("cns: band grid %dx%d out of range [1, %d]", H, W, maxBandGrid)
	}
	if F < 1 || F > maxBands {
		return nil, fmt.Errorf("cns: band count must be in [1, %d], got %d", maxBands, F)
	}
	bm := &BandMap{H: H, W: W, F: F, Band: make([]int32, H*W), Counts: make([]int, F)}
	// With everything scaled by H²W²: r² ∝ N = ky²W² + kx²H², and the
	// maximum radius has D = (H/2)²W² + (W/2)²H².
	h2, w2 := uint64(H)*uint64(H), uint64(W)*uint64(W)
	kyMax, kxMax := uint64(H/2), uint64(W/2)
	d := kyMax*kyMax*w2 + kxMax*kxMax*h2
	f1 := uint64(F - 1)
	for y := 0; y < H; y++ {
		ky := fftFreqNum(y, H)
		ny := uint64(ky*ky) * w2
		for x := 0; x < W; x++ {
			kx := fftFreqNum(x, W)
			n := ny + uint64(kx*kx)*h2
			var b int
			if d > 0 && f1 > 0 {
				b = exactBand(n, d, f1)
			}
			bm.Band[y*W+x] = int32(b)
			bm.Counts[b]++
		}
	}
	return bm, nil
}

// exactBand returns min(F−1, floor(sqrt(n/d)·f1)): the largest b with
// b²·d ≤ n·f1², found from a float64 estimate and corrected exactly.
func exactBand(n, d, f1 uint64) int {
	b := uint64(math.Sqrt(float64(n)/float64(d)) * float64(f1))
	if b > f1 {
		b = f1
	}
	rhsHi, rhsLo := bits.Mul64(n, f1*f1)
	le := func(b uint64) bool { // b²·d ≤ n·f1²
		hi, lo := bits.Mul64(b*b, d)
		return hi < rhsHi || (hi == rhsHi && lo <= rhsLo)
	}
	for b > 0 && !le(b) {
		b--
	}
	for b < f1 && le(b+1) {
		b++
	}
	return int(b)
}

// BandCache memoises band maps per (H, W, F). It is safe for concurrent use;
// the pipeline keeps one for the life of the engine.
type BandCache struct {
	mu   sync.Mutex
	maps map[[3]int]*BandMap
}

// Get returns the cached band map of (H, W, F), computing it on first use.
// The returned map is shared and must not be modified.
func (c *BandCache) Get(H, W, F int) (*BandMap, error) {
	key := [3]int{H, W, F}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.maps[key]; ok {
		return m, nil
	}
	m, err := RadialBands(H, W, F)
	if err != nil {
		return nil, err
	}
	if c.maps == nil {
		c.maps = make(map[[3]int]*BandMap)
	}
	c.maps[key] = m
	return m, nil
}
