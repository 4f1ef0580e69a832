package cns

import (
	"slices"
	"testing"
)

// Property 6 (docs/cns.md §10): radial binning, with the exact maps and
// counts of docs/cns.md §3.
func TestRadialBandsSpecVectors(t *testing.T) {
	cases := []struct {
		H, W, F    int
		head, tail []int // first and last six counts, or
		full       []int // the full vector
		fullMap    []int32
	}{
		{H: 4, W: 4, F: 4, full: []int{1, 8, 6, 1},
			fullMap: []int32{0, 1, 2, 1, 1, 1, 2, 1, 2, 2, 3, 2, 1, 1, 2, 1}},
		{H: 5, W: 5, F: 4, full: []int{1, 8, 12, 4}},
		{H: 4, W: 6, F: 8, full: []int{1, 2, 6, 2, 6, 6, 0, 1}},
		{H: 32, W: 32, F: 32, head: []int{1, 8, 4, 12, 20, 16}, tail: []int{20, 16, 12, 8, 4, 1}},
		{H: 48, W: 64, F: 32, head: []int{5, 16, 26, 36, 42, 52}, tail: []int{62, 44, 34, 20, 6, 1}},
		{H: 96, W: 128, F: 32, head: []int{21, 62, 94, 142, 178, 228}, tail: []int{268, 188, 136, 78, 26, 1}},
	}
	for _, c := range cases {
		m, err := RadialBands(c.H, c.W, c.F)
		if err != nil {
			t.Fatal(err)
		}
		if c.full != nil && !slices.Equal(m.Counts, c.full) {
			t.Errorf("%dx%d F=%d counts %v, spec %v", c.H, c.W, c.F, m.Counts, c.full)
		}
		if c.head != nil && (!slices.Equal(m.Counts[:6], c.head) || !slices.Equal(m.Counts[c.F-6:], c.tail)) {
			t.Errorf("%dx%d F=%d counts %v, spec head %v tail %v", c.H, c.W, c.F, m.Counts, c.head, c.tail)
		}
		if c.fullMap != nil && !slices.Equal(m.Band, c.fullMap) {
			t.Errorf("%dx%d F=%d map %v, spec %v", c.H, c.W, c.F, m.Band, c.fullMap)
		}
	}
}

func TestRadialBandsProperties(t *testing.T) {
	for _, g := range [][3]int{{4, 4, 4}, {5, 5, 4}, {4, 6, 8}, {7, 12, 8}, {33, 17, 16}, {96, 128, 32}, {10, 3, 128}} {
		H, W, F := g[0], g[1], g[2]
		m, err := RadialBands(H, W, F)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Band) != H*W || len(m.Counts) != F {
			t.Fatalf("%v: shape %d/%d", g, len(m.Band), len(m.Counts))
		}
		if m.Band[0] != 0 {
			t.Errorf("%v: DC in band %d", g, m.Band[0])
		}
		total := 0
		for _, n := range m.Counts {
			total += n
		}
		if total != H*W {
			t.Errorf("%v: counts sum to %d", g, total)
		}
		for y := 0; y < H; y++ {
			for x := 0; x < W; x++ {
				b := m.Band[y*W+x]
				if b < 0 || int(b) >= F {
					t.Fatalf("%v: band %d out of range", g, b)
				}
				// Symmetric under k -> -k (needed for a real filtered field).
				if mb := m.Band[((H-y)%H)*W+(W-x)%W]; mb != b {
					t.Fatalf("%v: band(%d,%d)=%d but band(-k)=%d", g, y, x, b, mb)
				}
			}
		}
		// Band F−1 holds only the maximum radius: 1 coefficient when both
		// sides are even, 4 when both are odd.
		want := 0
		switch {
		case H%2 == 0 && W%2 == 0:
			want = 1
		case H%2 == 1 && W%2 == 1:
			want = 4
		}
		if want != 0 && m.Counts[F-1] != want {
			t.Errorf("%v: last band has %d members, want %d", g, m.Counts[F-1], want)
		}
	}
}

func TestRadialBandsDegenerateGrids(t *testing.T) {
	m, err := RadialBands(1, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	if m.Band[0] != 0 || m.Counts[0] != 1 {
		t.Errorf("1x1: %v %v", m.Band, m.Counts)
	}
	m, err = RadialBands(1, 9, 8)
	if err != nil {
		t.Fatal(err)
	}
	if m.Counts[0] != 1 || m.Counts[7] != 2 { // 1×9: kx = ±4 are the maximum radius
		t.Errorf("1x9 counts %v", m.Counts)
	}
	if _, err := RadialBands(0, 4, 8); err == nil {
		t.Error("0 rows: want error")
	}
	if _, err := RadialBands(4, 4, 0); err == nil {
		t.Error("0 bands: want error")
	}
}

func TestBandCache(t *testing.T) {
	var c BandCache
	a, err := c.Get(48, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Get(48, 64, 32)
	if a != b {
		t.Error("cache returned a different map for the same key")
	}
	d, _ := c.Get(48, 64, 16)
	if d == a || d.F != 16 {
		t.Error("cache mixed up keys")
	}
	if _, err := c.Get(-1, 4, 4); err == nil {
		t.Error("bad grid: want error")
	}
}
