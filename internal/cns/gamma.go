package cns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// GammaTable is a γ source for the "matrix" gamma_source: the per-band
// progress γ_b ∈ [0, 1] (0 = unresolved, 1 = final) of step i of an n-step
// schedule, written into dst, whose length is the band count F.
// Implementations map step i to progress p_i = i/(n−1) (p = 0 when n = 1).
type GammaTable interface {
	Gamma(i, n int, dst []float64)
}

// progress returns p_i = i/(n−1), the step progress of docs/cns.md §4.
func progress(i, n int) float64 {
	if n <= 1 {
		return 0
	}
	return float64(i) / float64(n-1)
}

// bandPosition returns f_b = b/(F−1), the normalised radius of band b.
func bandPosition(b, f int) float64 {
	if f <= 1 {
		return 0
	}
	return float64(b) / float64(f-1)
}

// FitGamma is the closed-form γ of docs/cns.md §4:
//
//	γ(f, p) = 1 / (1 + exp(−K·(ln(p/(1−p)) − λ50(f)))),  λ50(f) = C0 − A·exp(−f/Tau)
//
// with γ(f, 0) = 0 and γ(f, 1) = 1. It is monotone in p (up) and f (down).
type FitGamma struct {
	K, C0, A, Tau float64
}

// BuiltinGamma is the fit to the official unguided SiT matrix
// (gamma_matrix_scaled.pt, RMSE 0.031): the default "matrix" source when
// the model directory has no cns_gamma.json.
func BuiltinGamma() FitGamma { return FitGamma{K: 1.1693, C0: -0.1865, A: 2.7707, Tau: 0.1184} }

// BuiltinGammaGuided is the same fit to the official cfg-1.5 matrix.
func BuiltinGammaGuided() FitGamma { return FitGamma{K: 1.123, C0: -0.198, A: 2.809, Tau: 0.122} }

// At returns γ at normalised radius f ∈ [0, 1] and progress p ∈ [0, 1].
func (g FitGamma) At(f, p float64) float64 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	lambda := g.C0 - g.A*math.Exp(-f/g.Tau)
	return 1 / (1 + math.Exp(-g.K*(math.Log(p/(1-p))-lambda)))
}

// Gamma implements GammaTable.
func (g FitGamma) Gamma(i, n int, dst []float64) {
	p := progress(i, n)
	for b := range dst {
		dst[b] = g.At(bandPosition(b, len(dst)), p)
	}
}

// GammaMatrix is a measured γ table: Rows rows from noise (row 0, progress
// 0) to data (row Rows−1, progress 1) by Bands bands (band m at normalised
// radius m/(Bands−1)). Lookup interpolates linearly between rows at
// u = p·(Rows−1) and then between bands (align-corners), both evaluated
// with exact integer ratios so that a schedule with n = Rows steps reads
// row i verbatim and F = Bands reads the bands verbatim.
type GammaMatrix struct {
	Rows, Bands int
	Values      []float64 // Rows×Bands, row-major
	// Sigmas holds the noise level of each row in the measuring runs
	// (informational; lookup is by progress).
	Sigmas   []float64
	Metadata GammaMetadata
}

// GammaMetadata describes how a matrix was measured.
type GammaMetadata struct {
	Model         string   `json:"model,omitempty"`
	Steps         int      `json:"steps"`
	GuidanceScale float64  `json:"guidance_scale"`
	Mu            float64  `json:"mu"`
	Width         int      `json:"width"`  // reference resolution, pixels
	Height        int      `json:"height"` // (that of Sigmas and Mu)
	Resolutions   []string `json:"resolutions,omitempty"`
	Samples       int      `json:"samples"`
	Created       string   `json:"created,omitempty"` // RFC 3339
	Tool          string   `json:"tool,omitempty"`
}

// Row returns row r (no copy).
func (m *GammaMatrix) Row(r int) []float64 { return m.Values[r*m.Bands : (r+1)*m.Bands] }

// Gamma implements GammaTable.
func (m *GammaMatrix) Gamma(i, n int, dst []float64) {
	// Row position u = i·(R−1)/(n−1) as an exact fraction j + rem/den.
	j, rem, den := 0, 0, 1
	if n > 1 {
		num := i * (m.Rows - 1)
		den = n - 1
		j, rem = num/den, num%den
	}
	if j >= m.Rows-1 {
		j, rem = m.Rows-1, 0
	}
	lo := m.Row(j)
	hi := lo
	if rem != 0 {
		hi = m.Row(j + 1)
	}
	t := float64(rem) / float64(den)
	at := func(k int) float64 { return lerp(lo[k], hi[k], t) }
	f := len(dst)
	for b := range dst {
		k, r, d := 0, 0, 1
		if f > 1 {
			num := b * (m.Bands - 1)
			d = f - 1
			k, r = num/d, num%d
		}
		if r == 0 || k >= m.Bands-1 {
			dst[b] = at(min(k, m.Bands-1))
			continue
		}
		dst[b] = lerp(at(k), at(k+1), float64(r)/float64(d))
	}
}

func lerp(a, b, t float64) float64 {
	if t == 0 {
		return a
	}
	return a + t*(b-a)
}

// approximationGamma is the "approximation" source: γ = clamp(1 − σ_i/σ_0)
// in every band.
func approximationGamma(sigmas []float32, i int, dst []float64) {
	g := 1 - float64(sigmas[i])/float64(sigmas[0])
	g = math.Min(1, math.Max(0, g))
	for b := range dst {
		dst[b] = g
	}
}

// cns_gamma.json, the per-model matrix file.
const (
	// GammaFileName is looked up in the model directory.
	GammaFileName = "cns_gamma.json"
	// GammaFormat and GammaVersion identify the file format.
	GammaFormat  = "kleinserve.cns_gamma"
	GammaVersion = 1
	// BinningConvention and GridConvention are the only conventions this
	// package measures and applies; files declaring others are rejected.
	BinningConvention = "floor(r/rmax*(F-1))"
	GridConvention    = "unpacked-32ch"
	// RowMapping states that row r is step progress r/(rows-1).
	RowMapping = "progress"
)

// gammaFile is the JSON layout of cns_gamma.json:
//
//	{
//	  "format": "kleinserve.cns_gamma", "version": 1,
//	  "rows": R, "bands": F,
//	  "binning": "floor(r/rmax*(F-1))", "grid": "unpacked-32ch",
//	  "row_mapping": "progress",
//	  "sigmas": [R noise levels of the reference run],
//	  "gamma": [[F values in [0,1]] × R rows, row 0 = noise],
//	  "metadata": {"model": ..., "steps": N, "guidance_scale": ..., "mu": ...,
//	               "width": ..., "height": ..., "resolutions": [...],
//	               "samples": ..., "created": ..., "tool": ...}
//	}
type gammaFile struct {
	Format     string        `json:"format"`
	Version    int           `json:"version"`
	Rows       int           `json:"rows"`
	Bands      int           `json:"bands"`
	Binning    string        `json:"binning"`
	Grid       string        `json:"grid"`
	RowMapping string        `json:"row_mapping"`
	Sigmas     []float64     `json:"sigmas"`
	Gamma      [][]float64   `json:"gamma"`
	Metadata   GammaMetadata `json:"metadata"`
}

// Validate checks the matrix's shape and values.
func (m *GammaMatrix) Validate() error {
	if m.Rows < 2 || m.Bands < 2 {
		return fmt.Errorf("cns: gamma matrix needs at least 2 rows and 2 bands, has %dx%d", m.Rows, m.Bands)
	}
	if len(m.Values) != m.Rows*m.Bands {
		return fmt.Errorf("cns: gamma matrix has %d values for %dx%d", len(m.Values), m.Rows, m.Bands)
	}
	for k, v := range m.Values {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fmt.Errorf("cns: gamma[%d][%d] = %v outside [0, 1]", k/m.Bands, k%m.Bands, v)
		}
	}
	if m.Sigmas != nil && len(m.Sigmas) != m.Rows {
		return fmt.Errorf("cns: gamma matrix has %d sigmas for %d rows", len(m.Sigmas), m.Rows)
	}
	for r, s := range m.Sigmas {
		if math.IsNaN(s) || s < 0 || s > 1 {
			return fmt.Errorf("cns: gamma sigma[%d] = %v outside [0, 1]", r, s)
		}
	}
	return nil
}

// MarshalJSON writes the cns_gamma.json layout.
func (m *GammaMatrix) MarshalJSON() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	f := gammaFile{
		Format: GammaFormat, Version: GammaVersion, Rows: m.Rows, Bands: m.Bands,
		Binning: BinningConvention, Grid: GridConvention, RowMapping: RowMapping,
		Sigmas: m.Sigmas, Metadata: m.Metadata, Gamma: make([][]float64, m.Rows),
	}
	for r := range f.Gamma {
		f.Gamma[r] = m.Row(r)
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads and validates the cns_gamma.json layout. Unknown
// fields, other formats, versions or conventions are errors.
func (m *GammaMatrix) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f gammaFile
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("cns: gamma file: %w", err)
	}
	switch {
	case f.Format != GammaFormat:
		return fmt.Errorf("cns: gamma file format %q, want %q", f.Format, GammaFormat)
	case f.Version != GammaVersion:
		return fmt.Errorf("cns: gamma file version %d, want %d", f.Version, GammaVersion)
	case f.Binning != BinningConvention:
		return fmt.Errorf("cns: gamma file binning %q, want %q", f.Binning, BinningConvention)
	case f.Grid != GridConvention:
		return fmt.Errorf("cns: gamma file grid %q, want %q", f.Grid, GridConvention)
	case f.RowMapping != RowMapping:
		return fmt.Errorf("cns: gamma file row_mapping %q, want %q", f.RowMapping, RowMapping)
	case len(f.Gamma) != f.Rows:
		return fmt.Errorf("cns: gamma file has %d rows, header says %d", len(f.Gamma), f.Rows)
	}
	g := GammaMatrix{Rows: f.Rows, Bands: f.Bands, Sigmas: f.Sigmas, Metadata: f.Metadata,
		Values: make([]float64, 0, f.Rows*max(f.Bands, 0))}
	for r, row := range f.Gamma {
		if len(row) != f.Bands {
			return fmt.Errorf("cns: gamma file row %d has %d bands, header says %d", r, len(row), f.Bands)
		}
		g.Values = append(g.Values, row...)
	}
	if err := g.Validate(); err != nil {
		return err
	}
	*m = g
	return nil
}

// LoadGammaFile reads a cns_gamma.json file.
func LoadGammaFile(path string) (*GammaMatrix, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cns: %w", err)
	}
	var m GammaMatrix
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cns: %s: %w", path, err)
	}
	return &m, nil
}

// WriteGammaFile writes m to path atomically (temporary file, then rename).
func WriteGammaFile(path string, m *GammaMatrix) error {
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("cns: encode gamma matrix: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cns_gamma-*.json")
	if err != nil {
		return fmt.Errorf("cns: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("cns: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cns: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cns: %w", err)
	}
	return nil
}

// ModelGamma returns the "matrix" γ source for a model directory: the
// matrix in dir/cns_gamma.json when the file exists, otherwise the built-in
// fit. source says which ("file:<path>" or "builtin-fit"). A file that exists
// but cannot be read or is malformed is an error, not a silent fallback.
func ModelGamma(dir string) (table GammaTable, source string, err error) {
	path := filepath.Join(dir, GammaFileName)
	m, err := LoadGammaFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return BuiltinGamma(), "builtin-fit", nil
	}
	if err != nil {
		return nil, "", err
	}
	return m, "file:" + path, nil
}
