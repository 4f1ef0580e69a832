package pipeline

import (
	"context"
	"math"
	"testing"

	"github.com/kleinserve/kleinserve/internal/engine"
)

func TestComputePlan(t *testing.T) {
	count := func(p []bool) (n int) {
		for _, c := range p {
			if c {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		level        engine.Acceleration
		steps, calls int
	}{
		{engine.AccelerationNone, 28, 28},
		{engine.AccelerationRegular, 28, 23},
		{engine.AccelerationHigh, 28, 18},
		{engine.AccelerationRegular, 50, 40},
		{engine.AccelerationHigh, 50, 33},
		{engine.AccelerationHigh, 4, 4}, // too short to skip anything
		{engine.AccelerationHigh, 1, 1},
	} {
		p := computePlan(tc.level, tc.steps)
		if got := count(p); got != tc.calls {
			t.Errorf("%s, %d steps: %d transformer calls, want %d (%v)", tc.level, tc.steps, got, tc.calls, p)
		}
		// The first two and last two steps always run, and no two
		// consecutive steps are skipped.
		for i := range p {
			if (i < 2 || i >= tc.steps-2) && !p[i] {
				t.Errorf("%s, %d steps: step %d skipped", tc.level, tc.steps, i)
			}
			if i > 0 && !p[i] && !p[i-1] {
				t.Errorf("%s, %d steps: steps %d and %d both skipped", tc.level, tc.steps, i-1, i)
			}
		}
	}
}

// psnr of two 8-bit images in dB.
func psnr(a, b []uint8) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(len(a))))
}

// TestAccelerationFidelity measures each level's PSNR against "none" on
// the tiny model (28 steps, CFG 5, several seeds and sizes) and holds it to
// the floors the README states. The figures are logged for the README.
func TestAccelerationFidelity(t *testing.T) {
	e := openTiny(t)
	floors := map[engine.Acceleration]float64{engine.AccelerationRegular: 35, engine.AccelerationHigh: 30}
	worst := map[engine.Acceleration]float64{engine.AccelerationRegular: math.Inf(1), engine.AccelerationHigh: math.Inf(1)}
	for _, size := range [][2]int{{128, 128}, {192, 128}} {
		for seed := int64(0); seed < 3; seed++ {
			req := engine.Request{Prompt: "a lighthouse on a cliff at dusk", GuidanceScale: 5, Steps: 28,
				Width: size[0], Height: size[1], NumImages: 1, Seed: seed, OutputFormat: engine.FormatPNG,
				Acceleration: engine.AccelerationNone}
			ref, err := e.Generate(context.Background(), req, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := decodePNG(t, ref.Images[0].Data)
			for level := range floors {
				req.Acceleration = level
				res, err := e.Generate(context.Background(), req, nil)
				if err != nil {
					t.Fatal(err)
				}
				worst[level] = math.Min(worst[level], psnr(base, decodePNG(t, res.Images[0].Data)))
			}
		}
	}
	for level, floor := range floors {
		t.Logf("acceleration %s: worst PSNR against none %.1f dB (floor %.0f dB)", level, worst[level], floor)
		if worst[level] < floor {
			t.Errorf("acceleration %s: PSNR %.1f dB below %.0f dB", level, worst[level], floor)
		}
	}
}
