package imageinput

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// fixture is one entry of testdata/manifest.json, written by
// scripts/gen_imageinput_fixtures.py with PIL.
type fixture struct {
	Name, File, Format, Mode string
	Lossy                    bool
	Width, Height            int
}

func loadManifest(t *testing.T) []fixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var fs []fixture
	if err := json.Unmarshal(raw, &fs); err != nil {
		t.Fatal(err)
	}
	return fs
}

// wantRGB reads the PIL result of a fixture.
func wantRGB(t *testing.T, name string) (int, int, []uint8) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".want.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	pix, err := toRGB(img, false, libjpeg)
	if err != nil {
		t.Fatal(err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy(), pix
}

// maxJPEGDiff is the largest per-channel difference from PIL allowed for
// JPEG, whose IDCT in Go differs from libjpeg-turbo's (measured: 2, on at
// most 4% of the samples; see docs/imageinput.md). Every other fixture,
// lossy WebP included, must match PIL exactly.
const maxJPEGDiff = 2

func TestMatchesPIL(t *testing.T) {
	for _, fx := range loadManifest(t) {
		t.Run(fx.Name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", fx.File))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			w, h, want := wantRGB(t, fx.Name)
			if got.Width != w || got.Height != h {
				t.Fatalf("size %dx%d, PIL %dx%d", got.Width, got.Height, w, h)
			}
			maxDiff, diffs := 0, 0
			for i := range want {
				d := int(got.Pix[i]) - int(want[i])
				if d < 0 {
					d = -d
				}
				if d > 0 {
					diffs++
				}
				maxDiff = max(maxDiff, d)
			}
			allowed := 0
			if fx.Format == "JPEG" {
				allowed = maxJPEGDiff
			}
			t.Logf("%s %s: max diff %d, %d of %d samples differ", fx.Format, fx.Mode, maxDiff, diffs, len(want))
			if maxDiff > allowed {
				t.Errorf("max diff %d > %d (%d of %d samples differ)", maxDiff, allowed, diffs, len(want))
			}
		})
	}
}
