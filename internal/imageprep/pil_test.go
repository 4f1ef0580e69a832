package imageprep

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The fixtures come from scripts/reference_edit.py --resample-out: PIL's
// Image.resize and diffusers' reference preprocessing on seeded images.
const fixtureDir = "testdata"

type fixtureIndex struct {
	Sources []struct {
		Name          string `json:"name"`
		File          string `json:"file"`
		Width, Height int
	} `json:"sources"`
	Resize []struct {
		Source        string `json:"source"`
		Filter        string `json:"filter"`
		Width, Height int
		Offset, Bytes int
		SHA256        string `json:"sha256"`
	} `json:"resize"`
	Prepare []struct {
		Name            string `json:"name"`
		File            string `json:"file"`
		Width, Height   int
		ProcessedWidth  int    `json:"processed_width"`
		ProcessedHeight int    `json:"processed_height"`
		SHA256          string `json:"sha256"`
		ProcessedFile   string `json:"processed_file"`
	} `json:"prepare"`
	Rejected []struct {
		Width, Height int
		Rule          string `json:"rule"`
	} `json:"rejected"`
	Normalize []float64 `json:"normalize"`
}

func loadFixtures(t *testing.T) fixtureIndex {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx fixtureIndex
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// readPNG decodes an 8-bit RGB PNG fixture into RGB.
func readPNG(t *testing.T, file string) RGB {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, file))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rgba, ok := img.(*image.RGBA)
	if !ok {
		// Go decodes 8-bit RGB PNGs as RGBA with opaque alpha.
		t.Fatalf("%s: decoded as %T", file, img)
	}
	b := rgba.Bounds()
	out := RGB{Pix: make([]uint8, 0, 3*b.Dx()*b.Dy()), Width: b.Dx(), Height: b.Dy()}
	for i := 0; i < len(rgba.Pix); i += 4 {
		out.Pix = append(out.Pix, rgba.Pix[i], rgba.Pix[i+1], rgba.Pix[i+2])
	}
	return out
}

func filterByName(t *testing.T, name string) Filter {
	t.Helper()
	for f := Box; f <= Lanczos; f++ {
		if f.String() == name {
			return f
		}
	}
	t.Fatalf("unknown filter %q", name)
	return 0
}

// firstDiff describes where two images first differ, for failure messages.
func firstDiff(got, want []uint8, w int) string {
	n := 0
	first := -1
	for i := range want {
		if got[i] != want[i] {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if first < 0 {
		return "identical"
	}
	p := first / 3
	return "first at x=" + itoa(p%w) + " y=" + itoa(p/w) + " channel " + itoa(first%3) +
		": got " + itoa(int(got[first])) + " want " + itoa(int(want[first])) + "; " + itoa(n) + " bytes differ"
}

func itoa(v int) string { return string(appendInt(nil, v)) }

func appendInt(b []byte, v int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	if v >= 10 {
		b = appendInt(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// TestResizeMatchesPIL: every filter, many sizes (up, down, one axis, odd
// ratios, down to one pixel), identical bytes.
func TestResizeMatchesPIL(t *testing.T) {
	idx := loadFixtures(t)
	blob, err := os.ReadFile(filepath.Join(fixtureDir, "resize.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]RGB{}
	for _, s := range idx.Sources {
		sources[s.Name] = readPNG(t, s.File)
		if sources[s.Name].Width != s.Width || sources[s.Name].Height != s.Height {
			t.Fatalf("%s: PNG is %dx%d, index says %dx%d", s.Name, sources[s.Name].Width, sources[s.Name].Height, s.Width, s.Height)
		}
	}
	if len(idx.Resize) < 30 {
		t.Fatalf("only %d resize cases", len(idx.Resize))
	}
	for _, c := range idx.Resize {
		src := sources[c.Source]
		name := c.Source + "/" + c.Filter + "/" + itoa(c.Width) + "x" + itoa(c.Height)
		t.Run(name, func(t *testing.T) {
			got, err := Resize(src, c.Width, c.Height, filterByName(t, c.Filter))
			if err != nil {
				t.Fatal(err)
			}
			want := blob[c.Offset : c.Offset+c.Bytes]
			if got.Width != c.Width || got.Height != c.Height || !bytes.Equal(got.Pix, want) {
				t.Fatalf("differs from PIL: %s", firstDiff(got.Pix, want, c.Width))
			}
		})
	}
}

// TestPrepareReferenceMatchesDiffusers runs the whole reference path on
// images below, at and above the pixel budget and at the largest aspect
// ratio, against diffusers' preprocessing.
func TestPrepareReferenceMatchesDiffusers(t *testing.T) {
	idx := loadFixtures(t)
	budget := false
	for _, c := range idx.Prepare {
		t.Run(c.Name, func(t *testing.T) {
			src := readPNG(t, c.File)
			if pw, ph := ProcessedSize(c.Width, c.Height); pw != c.ProcessedWidth || ph != c.ProcessedHeight {
				t.Fatalf("ProcessedSize(%d, %d) = %dx%d, want %dx%d", c.Width, c.Height, pw, ph, c.ProcessedWidth, c.ProcessedHeight)
			}
			got, err := PrepareReference(src)
			if err != nil {
				t.Fatal(err)
			}
			if got.Width != c.ProcessedWidth || got.Height != c.ProcessedHeight {
				t.Fatalf("prepared %dx%d, want %dx%d", got.Width, got.Height, c.ProcessedWidth, c.ProcessedHeight)
			}
			if c.ProcessedFile != "" {
				want, err := os.ReadFile(filepath.Join(fixtureDir, c.ProcessedFile))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Pix, want) {
					t.Fatalf("differs from diffusers: %s", firstDiff(got.Pix, want, got.Width))
				}
			}
			sum := sha256.Sum256(got.Pix)
			if hex.EncodeToString(sum[:]) != c.SHA256 {
				t.Fatalf("sha256 of the prepared pixels differs from diffusers'")
			}
		})
		budget = budget || c.Width*c.Height > MaxArea
	}
	if !budget {
		t.Fatal("no fixture exercises the pixel budget")
	}
}

func TestCheckReference(t *testing.T) {
	idx := loadFixtures(t)
	for _, c := range idx.Rejected { // diffusers refuses these
		err := CheckReference(c.Width, c.Height)
		if !errors.Is(err, ErrReference) {
			t.Errorf("%dx%d (%s): got %v, want an ErrReference", c.Width, c.Height, c.Rule, err)
		}
	}
	for _, c := range []struct {
		w, h int
		ok   bool
	}{
		{64, 64, true}, {64, 512, true}, {512, 64, true}, {4000, 3000, true},
		{63, 64, false}, {64, 63, false}, {0, 100, false},
		{513, 64, false}, {64, 513, false}, {8 * 65, 65, true}, {8*65 + 1, 65, false},
	} {
		if err := CheckReference(c.w, c.h); (err == nil) != c.ok {
			t.Errorf("CheckReference(%d, %d) = %v, want ok=%v", c.w, c.h, err, c.ok)
		}
	}
}

func TestProcessedSize(t *testing.T) {
	for _, c := range []struct{ w, h, pw, ph int }{
		{64, 64, 64, 64},
		{100, 72, 96, 64},
		{1024, 1024, 1024, 1024}, // exactly the budget: kept
		{1025, 1024, 1024, 1008}, // scale sqrt(2^20/(1025*1024)) -> 1024x1023
		{1100, 1000, 1072, 976},
		{4000, 3000, 1168, 880}, // 1182x886
		{2896, 362, 2896, 352},  // aspect 8 at the budget
	} {
		if pw, ph := ProcessedSize(c.w, c.h); pw != c.pw || ph != c.ph {
			t.Errorf("ProcessedSize(%d, %d) = %dx%d, want %dx%d", c.w, c.h, pw, ph, c.pw, c.ph)
		}
	}
	// Properties over a sweep of accepted sizes.
	for w := MinSide; w < 3000; w += 37 {
		for h := MinSide; h < 3000; h += 53 {
			if CheckReference(w, h) != nil {
				continue
			}
			pw, ph := ProcessedSize(w, h)
			if pw%Multiple != 0 || ph%Multiple != 0 || pw < MinSide || ph < Multiple || pw > w || ph > h || pw*ph > MaxArea {
				t.Fatalf("ProcessedSize(%d, %d) = %dx%d", w, h, pw, ph)
			}
		}
	}
}

func TestNormalizeMatchesDiffusers(t *testing.T) {
	idx := loadFixtures(t)
	if len(idx.Normalize) != 256 {
		t.Fatalf("%d normalisation values, want 256", len(idx.Normalize))
	}
	img := RGB{Pix: make([]uint8, 3*256), Width: 16, Height: 16}
	for u := range 256 {
		img.Pix[3*u], img.Pix[3*u+1], img.Pix[3*u+2] = uint8(u), uint8(u), uint8(u)
	}
	dst := make([]float32, 3*256)
	if err := Normalize(dst, img); err != nil {
		t.Fatal(err)
	}
	for c := range 3 {
		for u := range 256 {
			if want := float32(idx.Normalize[u]); math.Float32bits(dst[c*256+u]) != math.Float32bits(want) {
				t.Fatalf("channel %d, byte %d: %v, want %v", c, u, dst[c*256+u], want)
			}
		}
	}
	if err := Normalize(dst[:10], img); err == nil {
		t.Fatal("Normalize accepted a short destination")
	}
}

// Resizing to the same size is a copy, as in PIL; resizing one axis leaves
// the other's rows and columns in place for a constant image.
func TestResizeProperties(t *testing.T) {
	src := RGB{Pix: make([]uint8, 3*40*30), Width: 40, Height: 30}
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7)
	}
	same, err := Resize(src, 40, 30, Lanczos)
	if err != nil || !bytes.Equal(same.Pix, src.Pix) {
		t.Fatalf("same-size resize is not a copy: %v", err)
	}
	same.Pix[0]++
	if src.Pix[0] == same.Pix[0] {
		t.Fatal("same-size resize shares the source's pixels")
	}
	flat := RGB{Pix: bytes.Repeat([]uint8{200, 10, 99}, 40*30), Width: 40, Height: 30}
	for f := Box; f <= Lanczos; f++ {
		for _, size := range [][2]int{{13, 7}, {90, 30}, {40, 71}, {1, 1}} {
			out, err := Resize(flat, size[0], size[1], f)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(out.Pix); i += 3 {
				if out.Pix[i] != 200 || out.Pix[i+1] != 10 || out.Pix[i+2] != 99 {
					t.Fatalf("%v to %v: a constant image changed at byte %d", f, size, i)
				}
			}
		}
	}
	for _, bad := range []struct {
		img  RGB
		w, h int
		f    Filter
	}{
		{src, 0, 5, Lanczos}, {src, 5, -1, Lanczos}, {src, 5, 5, Filter(9)},
		{RGB{Pix: make([]uint8, 5), Width: 2, Height: 2}, 5, 5, Lanczos},
	} {
		if _, err := Resize(bad.img, bad.w, bad.h, bad.f); err == nil {
			t.Errorf("Resize(%dx%d -> %dx%d, %v) accepted", bad.img.Width, bad.img.Height, bad.w, bad.h, bad.f)
		}
	}
}

func TestCenterCrop(t *testing.T) {
	src := RGB{Pix: make([]uint8, 3*7*5), Width: 7, Height: 5}
	for i := range src.Pix {
		src.Pix[i] = uint8(i)
	}
	got, err := CenterCrop(src, 4, 2) // left (7-4)/2 = 1, top (5-2)/2 = 1
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56}
	if !bytes.Equal(got.Pix, want) {
		t.Fatalf("CenterCrop = %v, want %v", got.Pix, want)
	}
	if same, _ := CenterCrop(src, 7, 5); !bytes.Equal(same.Pix, src.Pix) {
		t.Fatal("a full-size crop is not the image")
	}
	for _, s := range [][2]int{{8, 5}, {7, 6}, {0, 1}} {
		if _, err := CenterCrop(src, s[0], s[1]); err == nil {
			t.Errorf("CenterCrop to %v accepted", s)
		}
	}
}
