package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// finalLatents runs a short generation and returns its packed latents.
func finalLatents(t *testing.T, e *Engine, w, h int) []float32 {
	t.Helper()
	var final []float32
	e.debugFinalLatents = func(x []float32) { final = append([]float32(nil), x...) }
	defer func() { e.debugFinalLatents = nil }()
	req := engine.Request{Prompt: "a lighthouse at dusk", GuidanceScale: 4, Steps: 2, Width: w, Height: h,
		NumImages: 1, Seed: 7, OutputFormat: engine.FormatPNG, Acceleration: engine.AccelerationNone}
	if _, err := e.Generate(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	return final
}

// The tiled decode against the whole-image decode on the tiny model. The
// decoder's GroupNorm statistics and mid-block attention span the whole
// input, so tiles differ from it; worst is the largest difference measured
// (in 8-bit levels, docs/memory.md), with 3 levels to spare.
func TestTiledDecodeAgainstWhole(t *testing.T) {
	e := openTiny(t)
	for _, tc := range []struct{ w, h, tile, worst int }{
		{1280, 1024, 64, 13}, {1024, 1024, 48, 17}, {1024, 768, 32, 11},
	} {
		packed := finalLatents(t, e, tc.w, tc.h)
		r := &run{e: e}
		r.h, r.w = tc.h/sampler.Downscale, tc.w/sampler.Downscale
		chw := make([]float32, len(packed))
		if err := sampler.Unpack(chw, packed, 1, sampler.PackedChannels, r.h, r.w); err != nil {
			t.Fatal(err)
		}
		whole, err := r.decodeLatents(chw, r.h, r.w, true)
		if err != nil {
			t.Fatal(err)
		}
		tiled, err := r.decodeTiled(chw, r.h, r.w, tc.tile, true)
		if err != nil {
			t.Fatal(err)
		}
		a, b := toRGB8(whole, tc.w, tc.h), toRGB8(tiled, tc.w, tc.h)
		worst, differ := 0, 0
		for i := range a {
			d := int(a[i]) - int(b[i])
			if d != 0 {
				differ++
			}
			worst = max(worst, d, -d)
		}
		var maxErr float64
		for i := range whole {
			maxErr = math.Max(maxErr, math.Abs(float64(whole[i]-tiled[i])))
		}
		t.Logf("%dx%d tiles of %d px: max |diff| %d/255 (%.2g in [-1,1]), %d of %d values differ",
			tc.w, tc.h, tc.tile*16, worst, maxErr, differ, len(a))
		if worst > tc.worst+3 {
			t.Errorf("%dx%d in tiles of %d px: %d levels off the whole decode, measured %d before", tc.w, tc.h,
				tc.tile*16, worst, tc.worst)
		}
	}
}

// localDecoder stands in for the VAE decoder with a purely local one: each
// 16x16 pixel block shows its latent token's first three channels. Tiling
// it must give the whole decode back, whatever the tile and image shape.
func localDecoder(calls *int) tileDecoder {
	return func(chw []float32, h, w int, _ bool) ([]float32, error) {
		*calls++
		const f = sampler.Downscale
		out := make([]float32, 3*h*f*w*f)
		for c := 0; c < 3; c++ {
			for y := 0; y < h*f; y++ {
				for x := 0; x < w*f; x++ {
					out[(c*h*f+y)*w*f+x] = chw[(c*h+y/f)*w+x/f]
				}
			}
		}
		return out, nil
	}
}

func TestTiledDecodeGeometry(t *testing.T) {
	for _, tc := range []struct{ h, w, tile, tiles int }{
		{8, 8, 4, 9},      // 3 x 3 tiles, stride 3
		{96, 96, 64, 4},   // 1536 px in 1024 px tiles: stride 48, a 48-token tail
		{128, 32, 64, 3},  // 2048 x 512: one column
		{20, 100, 16, 18}, // 2 x 9, stride 12
		{64, 64, 64, 4},   // a grid of one tile's size still has a tail past the stride
	} {
		C := sampler.PackedChannels
		chw := make([]float32, C*tc.h*tc.w)
		for i := range chw {
			chw[i] = float32(math.Sin(float64(i)*0.37)) * 0.9
		}
		var wholeCalls, tileCalls int
		whole, _ := localDecoder(&wholeCalls)(chw, tc.h, tc.w, true)
		tiled, err := tiledDecode(chw, tc.h, tc.w, tc.tile, true, localDecoder(&tileCalls))
		if err != nil {
			t.Fatal(err)
		}
		if tileCalls != tc.tiles || tilesAlong(tc.h, tc.tile)*tilesAlong(tc.w, tc.tile) != tc.tiles {
			t.Errorf("%dx%d in tiles of %d: %d decoder calls, want %d", tc.h, tc.w, tc.tile, tileCalls, tc.tiles)
		}
		for i := range whole {
			if d := math.Abs(float64(whole[i] - tiled[i])); d > 1e-6 {
				t.Fatalf("%dx%d in tiles of %d: value %d is %g, whole decode %g", tc.h, tc.w, tc.tile, i, tiled[i], whole[i])
			}
		}
	}
}

// blendRows and blendColumns are diffusers' blend_v and blend_h: a linear
// fade from the neighbour's last rows (columns) into the tile's first.
func TestBlend(t *testing.T) {
	plane := func(h, w int, v float32) imageTile {
		p := make([]float32, 3*h*w)
		for i := range p {
			p[i] = v
		}
		return imageTile{h: h, w: w, planes: p}
	}
	a, b := plane(8, 4, 1), plane(6, 4, 0)
	blendRows(a, b, 4)
	for y, want := range []float32{1, 0.75, 0.5, 0.25, 0, 0} {
		if got := b.planes[(2*b.h+y)*b.w+3]; got != want {
			t.Errorf("blendRows: row %d is %g, want %g", y, got, want)
		}
	}
	a, b = plane(5, 3, 2), plane(5, 2, 0)
	blendColumns(a, b, 4) // the extent shrinks to the narrower tile
	for x, want := range []float32{2, 1} {
		if got := b.planes[(1*b.h+4)*b.w+x]; got != want {
			t.Errorf("blendColumns: column %d is %g, want %g", x, got, want)
		}
	}
}
