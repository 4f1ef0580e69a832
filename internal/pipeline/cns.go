package pipeline

import (
	"fmt"
	"runtime"

	"github.com/kleinserve/kleinserve/internal/cns"
	"github.com/kleinserve/kleinserve/internal/engine"
)

// gammaSource is the model's CNS "matrix" γ table (its cns_gamma.json, or
// the built-in fit) and the band maps shared between requests.
type gammaSource struct {
	table  cns.GammaTable
	source string
	bands  *cns.BandCache
}

func loadGammaSource(dir string) (*gammaSource, error) {
	table, source, err := cns.ModelGamma(dir)
	if err != nil {
		return nil, fmt.Errorf("cns gamma matrix: %w", err)
	}
	return &gammaSource{table: table, source: source, bands: &cns.BandCache{}}, nil
}

// newCNSStepper builds the CNS sampler of one request: one seed per image,
// the same seeds as the initial noise.
func newCNSStepper(e *Engine, req engine.Request, h, w int, sigmas []float32) (*cns.Sampler, error) {
	seeds := make([]int64, req.NumImages)
	for k := range seeds {
		seeds[k] = req.ImageSeed(k)
	}
	s, err := cns.NewSampler(cns.Config{
		Params: req.CNS, Sigmas: sigmas, Height: h, Width: w, Seeds: seeds,
		Gamma: e.gamma.table, Bands: e.gamma.bands,
		LatentBF16: e.latentBF16(),
		Workers:    runtime.GOMAXPROCS(0),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrInvalidRequest, err)
	}
	return s, nil
}
