package sampler

import (
	"slices"
	"testing"
)

func arange(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	return x
}

// Digests of diffusers' Flux2KleinPipeline._patchify_latents and
// _pack_latents applied to an arange (2, 32, 6, 10) latent
// (testdata/gen_golden.py).
func TestPatchifyAndPackMatchDiffusers(t *testing.T) {
	const B, h, w = 2, 3, 5
	x := arange(B * VAEChannels * 4 * h * w)
	p := make([]float32, len(x))
	if err := Patchify(p, x, B, VAEChannels, h, w); err != nil {
		t.Fatal(err)
	}
	if d := digest(p); d != "4c8d137e1f9c5d399f90ffd72185b3855114a558f44d046953f3ee51cf8bcfaf" {
		t.Errorf("patchify digest %s", d)
	}
	packed := make([]float32, len(x))
	if err := Pack(packed, p, B, PackedChannels, h, w); err != nil {
		t.Fatal(err)
	}
	if d := digest(packed); d != "1344550653106432e3737ceba8f07b320ca767c5c115d32edf8032c65de70f10" {
		t.Errorf("pack digest %s", d)
	}
	// PackedIndex is Pack∘Patchify for one sample.
	for c := 0; c < VAEChannels; c++ {
		for y := 0; y < 2*h; y++ {
			for xx := 0; xx < 2*w; xx++ {
				src := (c*2*h+y)*2*w + xx
				if got := packed[PackedIndex(c, y, xx, w)]; got != x[src] {
					t.Fatalf("PackedIndex(%d,%d,%d) holds %v, want %v", c, y, xx, got, x[src])
				}
			}
		}
	}
	// Patch channel c*4 + pi*2 + pj at (row, col) is VAE (c, 2row+pi, 2col+pj).
	c, pi, pj, row, col := 7, 1, 0, 2, 3
	got := p[((0*PackedChannels+c*4+pi*2+pj)*h+row)*w+col]
	want := x[(c*2*h+2*row+pi)*2*w+2*col+pj]
	if got != want {
		t.Errorf("patch channel layout: %v, want %v", got, want)
	}
}

func TestRoundTrips(t *testing.T) {
	for _, g := range []struct{ b, h, w int }{{1, 1, 1}, {2, 3, 5}, {1, 48, 64}, {3, 7, 2}} {
		n := g.b * PackedChannels * g.h * g.w
		x := arange(n)
		a, b := make([]float32, n), make([]float32, n)
		if err := Unpatchify(a, x, g.b, VAEChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if err := Patchify(b, a, g.b, VAEChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b, x) {
			t.Errorf("%v: Patchify∘Unpatchify is not the identity", g)
		}
		if err := Patchify(a, x, g.b, VAEChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if err := Unpatchify(b, a, g.b, VAEChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b, x) {
			t.Errorf("%v: Unpatchify∘Patchify is not the identity", g)
		}
		if err := Pack(a, x, g.b, PackedChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if err := Unpack(b, a, g.b, PackedChannels, g.h, g.w); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b, x) {
			t.Errorf("%v: Unpack∘Pack is not the identity", g)
		}
	}
}

func TestLatentDimensionErrors(t *testing.T) {
	x := make([]float32, 128*4)
	if err := Pack(x, x[:10], 1, 128, 2, 2); err == nil {
		t.Error("Pack with short src: want error")
	}
	if err := Patchify(x, x, 1, 32, 0, 2); err == nil {
		t.Error("Patchify with zero height: want error")
	}
	if err := Unpatchify(x[:5], x, 1, 32, 2, 2); err == nil {
		t.Error("Unpatchify with short dst: want error")
	}
}

func TestPositionIDs(t *testing.T) {
	ids := ImageIDs(0, 48, 64)
	if len(ids) != 3072*4 {
		t.Fatalf("len %d", len(ids))
	}
	// Same as diffusers' cartesian_prod(t, arange(h), arange(w), arange(1)).
	if !slices.Equal(ids[:8], []int64{0, 0, 0, 0, 0, 0, 1, 0}) {
		t.Errorf("first rows %v", ids[:8])
	}
	tok := 5*64 + 7
	if !slices.Equal(ids[tok*4:tok*4+4], []int64{0, 5, 7, 0}) {
		t.Errorf("token %d ids %v", tok, ids[tok*4:tok*4+4])
	}
	if !slices.Equal(ImageIDs(10, 1, 2), []int64{10, 0, 0, 0, 10, 0, 1, 0}) {
		t.Error("reference image ids")
	}
	txt := TextIDs(512)
	if len(txt) != 2048 || !slices.Equal(txt[:8], []int64{0, 0, 0, 0, 0, 0, 0, 1}) || txt[511*4+3] != 511 {
		t.Errorf("text ids %v ... %v", txt[:8], txt[len(txt)-4:])
	}
}
