package cns

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Property 14 (docs/cns.md §10): the γ_fit table (F = 32) of
// docs/cns.md §4, to 1e-4.
func TestBuiltinGammaTable(t *testing.T) {
	bands := []int{0, 4, 8, 16, 31}
	table := map[float64][]float64{
		0.10: {.7086, .2207, .1208, .0903, .0870},
		0.25: {.8978, .5057, .3318, .2640, .2562},
		0.50: {.9695, .7871, .6421, .5645, .5545},
		0.75: {.9914, .9304, .8663, .8241, .8181},
		0.90: {.9976, .9797, .9591, .9442, .9420},
	}
	g := BuiltinGamma()
	for p, row := range table {
		for k, b := range bands {
			if got := g.At(bandPosition(b, 32), p); !closeTo(got, row[k], 1e-4) {
				t.Errorf("γ_fit(b=%d, p=%v) = %.4f, spec %.4f", b, p, got, row[k])
			}
		}
	}
}

func TestBuiltinGammaShape(t *testing.T) {
	for _, g := range []FitGamma{BuiltinGamma(), BuiltinGammaGuided()} {
		for _, f := range []float64{0, 0.3, 1} {
			if g.At(f, 0) != 0 || g.At(f, 1) != 1 {
				t.Errorf("endpoints at f=%v: %v %v", f, g.At(f, 0), g.At(f, 1))
			}
		}
		for pi := 1; pi < 100; pi++ {
			p := float64(pi) / 100
			for fi := 0; fi <= 20; fi++ {
				f := float64(fi) / 20
				v := g.At(f, p)
				if v <= 0 || v >= 1 {
					t.Fatalf("γ(%v,%v) = %v outside (0,1)", f, p, v)
				}
				if fi > 0 && !(v < g.At(f-0.05, p)) {
					t.Fatalf("γ not decreasing in f at (%v,%v)", f, p)
				}
				if !(v > g.At(f, p-0.01)) {
					t.Fatalf("γ not increasing in p at (%v,%v)", f, p)
				}
			}
		}
	}
	// Gamma maps step i to p = i/(n−1), and n = 1 to p = 0.
	dst := make([]float64, 32)
	BuiltinGamma().Gamma(0, 1, dst)
	if dst[0] != 0 {
		t.Errorf("n=1: %v", dst[0])
	}
	BuiltinGamma().Gamma(49, 50, dst)
	if dst[31] != 1 {
		t.Errorf("last step: %v", dst[31])
	}
}

// testMatrix is a 5×4 matrix with distinct, easily interpolated values:
// Γ[r][m] = r/4 · (1 − m/6).
func testMatrix() *GammaMatrix {
	m := &GammaMatrix{Rows: 5, Bands: 4, Values: make([]float64, 20), Sigmas: []float64{1, .8, .5, .2, 0}}
	for r := 0; r < 5; r++ {
		for b := 0; b < 4; b++ {
			m.Values[r*4+b] = float64(r) / 4 * (1 - float64(b)/6)
		}
	}
	return m
}

func TestGammaMatrixLookup(t *testing.T) {
	m := testMatrix()
	dst := make([]float64, 4)
	// N = R: rows verbatim, F = F_m: bands verbatim (bit-exact).
	for i := 0; i < 5; i++ {
		m.Gamma(i, 5, dst)
		for b := range dst {
			if dst[b] != m.Values[i*4+b] {
				t.Errorf("row %d band %d = %v, want %v", i, b, dst[b], m.Values[i*4+b])
			}
		}
	}
	// N = 9: step i sits at row i/2; odd steps interpolate halfway.
	m.Gamma(3, 9, dst)
	for b := range dst {
		want := (m.Values[1*4+b] + m.Values[2*4+b]) / 2
		if !closeTo(dst[b], want, 1e-15) {
			t.Errorf("N=9 step 3 band %d = %v, want %v", b, dst[b], want)
		}
	}
	// N = 1 uses row 0.
	m.Gamma(0, 1, dst)
	if dst[0] != 0 {
		t.Errorf("N=1: %v", dst)
	}
	// Band resampling, align-corners: F = 7 has band b at m = b/2.
	wide := make([]float64, 7)
	m.Gamma(4, 5, wide)
	for b := range wide {
		want := 1 - float64(b)/2/6 // linear in m, so interpolation is exact
		if !closeTo(wide[b], want, 1e-15) {
			t.Errorf("F=7 band %d = %v, want %v", b, wide[b], want)
		}
	}
	// F = 2 reads the first and last bands.
	two := make([]float64, 2)
	m.Gamma(4, 5, two)
	if two[0] != 1 || two[1] != m.Values[4*4+3] {
		t.Errorf("F=2: %v", two)
	}
}

func TestGammaFileRoundTrip(t *testing.T) {
	m := testMatrix()
	m.Metadata = GammaMetadata{Model: "toy", Steps: 5, GuidanceScale: 4, Mu: 1.9, Width: 64, Height: 64,
		Resolutions: []string{"64x64"}, Samples: 3, Tool: "test"}
	dir := t.TempDir()
	path := filepath.Join(dir, GammaFileName)
	if err := WriteGammaFile(path, m); err != nil {
		t.Fatal(err)
	}
	got, err := LoadGammaFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != 5 || got.Bands != 4 || got.Metadata.Model != "toy" || len(got.Sigmas) != 5 {
		t.Fatalf("round trip: %+v", got)
	}
	for k := range m.Values {
		if got.Values[k] != m.Values[k] {
			t.Fatalf("value %d: %v vs %v", k, got.Values[k], m.Values[k])
		}
	}
	raw, _ := os.ReadFile(path)
	for _, key := range []string{`"format": "kleinserve.cns_gamma"`, `"binning": "floor(r/rmax*(F-1))"`, `"grid": "unpacked-32ch"`, `"row_mapping": "progress"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("file lacks %s", key)
		}
	}
	table, source, err := ModelGamma(dir)
	if err != nil || source != "file:"+path {
		t.Fatalf("ModelGamma: %v %q", err, source)
	}
	if _, ok := table.(*GammaMatrix); !ok {
		t.Errorf("ModelGamma returned %T", table)
	}
	table, source, err = ModelGamma(t.TempDir())
	if err != nil || source != "builtin-fit" {
		t.Fatalf("ModelGamma without file: %v %q", err, source)
	}
	if _, ok := table.(FitGamma); !ok {
		t.Errorf("fallback is %T", table)
	}
}

func TestGammaFileRejectsBadContent(t *testing.T) {
	good := `{"format":"kleinserve.cns_gamma","version":1,"rows":2,"bands":2,"binning":"floor(r/rmax*(F-1))","grid":"unpacked-32ch","row_mapping":"progress","sigmas":[1,0],"gamma":[[0,0],[1,1]],"metadata":{"steps":2,"guidance_scale":4,"mu":1,"width":16,"height":16,"samples":1}}`
	var m GammaMatrix
	if err := json.Unmarshal([]byte(good), &m); err != nil {
		t.Fatalf("good file: %v", err)
	}
	bad := map[string]string{
		"format":      strings.Replace(good, "kleinserve.cns_gamma", "other", 1),
		"version":     strings.Replace(good, `"version":1`, `"version":2`, 1),
		"binning":     strings.Replace(good, "floor(r/rmax*(F-1))", "digitize", 1),
		"grid":        strings.Replace(good, "unpacked-32ch", "packed-128ch", 1),
		"row mapping": strings.Replace(good, `"row_mapping":"progress"`, `"row_mapping":"sigma"`, 1),
		"row count":   strings.Replace(good, `"rows":2`, `"rows":3`, 1),
		"band count":  strings.Replace(good, `[[0,0],[1,1]]`, `[[0,0],[1]]`, 1),
		"range":       strings.Replace(good, `[[0,0],[1,1]]`, `[[0,0],[1,1.5]]`, 1),
		"one row":     strings.Replace(strings.Replace(good, `"rows":2`, `"rows":1`, 1), `[[0,0],[1,1]]`, `[[0,0]]`, 1),
		"sigmas":      strings.Replace(good, `"sigmas":[1,0]`, `"sigmas":[1]`, 1),
		"unknown key": strings.Replace(good, `"rows":2`, `"rows":2,"extra":1`, 1),
		"syntax":      good[:40],
	}
	for name, doc := range bad {
		if err := json.Unmarshal([]byte(doc), &m); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, GammaFileName), []byte(bad["range"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ModelGamma(dir); err == nil {
		t.Error("malformed model file must be an error, not a silent fallback")
	}
	if _, err := LoadGammaFile(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
