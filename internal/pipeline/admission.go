package pipeline

import (
	"context"
	"fmt"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/semaphore"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// Admission decides from a request's size whether it fits the memory
// budget, and makes admitted generations share that budget while they run:
// each holds its estimated peak (MemoryEstimate.Peak) for its whole run, so
// concurrent generations never add up past the budget; a generation that
// does not fit next to the running ones waits. It reads the manifest only,
// so an API process that loads no model can refuse at submit what the
// workers' budget cannot hold.
type Admission struct {
	model    memoryModel
	provider string
	budget   int64
	minSide  int
	bytes    *semaphore.Weighted // nil without a budget; shared by ForModel
}

// AdmissionConfig configures an Admission.
type AdmissionConfig struct {
	// Provider is the execution provider the model runs on (the estimate
	// is of device memory on CUDA, host memory on CPU).
	Provider string
	// Budget is the memory generations may use, in bytes, beyond the idle
	// process (see DeriveBudget); 0 admits every size the model's limits
	// allow.
	Budget int64
	// MinSide is the smallest side a suggested size may have (default
	// engine.MinSide).
	MinSide int
}

// NewAdmission prepares admission for a model.
func NewAdmission(m *Manifest, cfg AdmissionConfig) *Admission {
	a := &Admission{model: newMemoryModel(m, cfg.Provider), provider: cfg.Provider, budget: max(cfg.Budget, 0),
		minSide: cfg.MinSide}
	if a.minSide < engine.MinSide {
		a.minSide = engine.MinSide
	}
	if a.budget > 0 {
		a.bytes = semaphore.NewWeighted(a.budget)
	}
	return a
}

// ForModel is admission for another model of the same process: its own
// estimates, the same budget, shared by the generations of every model.
func (a *Admission) ForModel(m *Manifest) *Admission {
	if a == nil {
		return nil
	}
	b := *a
	b.model = newMemoryModel(m, a.provider)
	return &b
}

// Estimate is the request's estimated memory (with the decoder tiles the
// budget calls for).
func (a *Admission) Estimate(req *engine.Request) MemoryEstimate {
	return a.model.estimate(shapeOf(req), a.budget)
}

// Check returns the request's estimate, and an *AdmissionError when it
// cannot fit the budget even alone.
func (a *Admission) Check(req *engine.Request) (MemoryEstimate, error) {
	s := shapeOf(req)
	est := a.model.estimate(s, a.budget)
	if a.budget == 0 || est.Peak <= a.budget {
		return est, nil
	}
	e := &AdmissionError{Width: s.width, Height: s.height, Images: s.images, Need: est.Peak, Budget: a.budget}
	for n := s.images - 1; n >= 1; n-- {
		fewer := s
		fewer.images = n
		if a.fits(fewer) {
			e.Field, e.FitImages = FieldNumImages, n
			return est, e
		}
	}
	e.Field = FieldImageSize
	e.FitWidth, e.FitHeight = a.largestFitting(s)
	return est, e
}

func (a *Admission) fits(s requestShape) bool {
	return a.model.estimate(s, a.budget).Peak <= a.budget
}

// largestFitting is the largest size of s's aspect ratio, in multiples of
// the latent token, that fits with one image; 0, 0 when none does.
func (a *Admission) largestFitting(s requestShape) (w, h int) {
	const q = sampler.Downscale
	s.images = 1
	long, short := max(s.width, s.height), min(s.width, s.height)
	for units := long / q; units*q >= a.minSide; units-- {
		other := int(float64(units)*float64(short)/float64(long)+0.5) * q
		if other < a.minSide {
			break
		}
		c := s
		if s.width >= s.height {
			c.width, c.height = units*q, other
		} else {
			c.width, c.height = other, units*q
		}
		if a.fits(c) {
			return c.width, c.height
		}
	}
	return 0, 0
}

// reserve holds bytes of the budget until release is called, waiting while
// running generations hold too much of it; it gives up when ctx ends.
func (a *Admission) reserve(ctx context.Context, bytes int64) (release func(), err error) {
	if a.bytes == nil {
		return func() {}, nil
	}
	bytes = min(bytes, a.budget)
	if err := a.bytes.Acquire(ctx, bytes); err != nil {
		return nil, fmt.Errorf("%w: waiting for memory: %w", engine.ErrCanceled, err)
	}
	return func() { a.bytes.Release(bytes) }, nil
}

// AdmissionField is the request field an AdmissionError is about.
type AdmissionField int

// The fields a refusal names.
const (
	FieldImageSize AdmissionField = iota
	FieldNumImages
)

// AdmissionError is a request that cannot fit the memory budget, with what
// would fit.
type AdmissionError struct {
	Field         AdmissionField
	Width, Height int
	Images        int
	Need, Budget  int64
	// FitImages is how many images of this size fit (Field ==
	// FieldNumImages).
	FitImages int
	// FitWidth x FitHeight is the largest size of this aspect ratio that
	// fits with one image (0 x 0: none does).
	FitWidth, FitHeight int
}

func (e *AdmissionError) Error() string {
	what := fmt.Sprintf("%dx%d needs", e.Width, e.Height)
	if e.Images > 1 {
		what = fmt.Sprintf("%d images of %dx%d need", e.Images, e.Width, e.Height)
	}
	msg := fmt.Sprintf("%s an estimated %s of memory, more than this server's memory budget of %s", what,
		humanize.IBytes(uint64(e.Need)), humanize.IBytes(uint64(e.Budget)))
	switch {
	case e.Field == FieldNumImages:
		return msg + fmt.Sprintf("; at most %d images of this size fit", e.FitImages)
	case e.FitWidth > 0 && e.Images > 1:
		return msg + fmt.Sprintf("; the largest size of this aspect ratio that fits one image is %dx%d", e.FitWidth, e.FitHeight)
	case e.FitWidth > 0:
		return msg + fmt.Sprintf("; the largest size of this aspect ratio that fits is %dx%d", e.FitWidth, e.FitHeight)
	}
	return msg + "; no size of this aspect ratio fits"
}
