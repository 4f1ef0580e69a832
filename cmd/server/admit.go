package main

import (
	"errors"
	"fmt"
	"math"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/imageprep"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// newAdmission prepares this process's memory admission, one per served
// model sharing one budget, from the manifests alone (a -role api process
// loads no model) and the budget (-memory-budget). nil means no memory
// check: -memory-budget off, or an API process with the budget on auto,
// which has no machine of the workers' to derive it from; its workers still
// refuse what they cannot hold when a job starts.
func newAdmission(cfg config.Config, models []servedModel, log zerolog.Logger) (map[string]*pipeline.Admission, error) {
	if cfg.MemoryBudget == config.MemoryBudgetOff {
		log.Warn().Msg("-memory-budget off: every size the model's limits allow is accepted, whatever memory it needs")
		return nil, nil
	}
	if cfg.Role == config.RoleAPI && cfg.MemoryBudget == config.MemoryBudgetAuto {
		log.Warn().Msg("-memory-budget auto on an API process: requests are not checked against memory at submit " +
			"(set -memory-budget to the workers' budget; workers refuse what they cannot hold when a job starts)")
		return nil, nil
	}
	mans := make([]*pipeline.Manifest, len(models))
	for i, sm := range models {
		mans[i] = sm.man
	}
	budget := cfg.MemoryBudget
	if budget == config.MemoryBudgetAuto {
		// Every model's weights (shared graphs once) and every model's
		// prompt cache come off the machine's memory.
		d, err := pipeline.DeriveBudget(pipeline.BudgetConfig{Provider: cfg.Provider, DeviceID: cfg.DeviceID,
			ModelBytes: pipeline.ModelBytes(mans...), PromptCacheBytes: cfg.PromptCacheBytes * int64(len(models))})
		if err != nil {
			return nil, fmt.Errorf("%w; set -memory-budget", err)
		}
		budget = d.Bytes
		log.Info().Str("memory_budget", d.String()).Msg("memory budget derived from the machine")
	}
	first := pipeline.NewAdmission(mans[0], pipeline.AdmissionConfig{Provider: cfg.Provider, Budget: budget,
		MinSide: wire.MinSide})
	adm := map[string]*pipeline.Admission{}
	for _, sm := range models {
		adm[sm.model.ID] = first.ForModel(sm.man)
	}
	return adm, nil
}

// admitHook refuses at submit, with fal's 422 naming image_size or
// num_images, a request the memory budget cannot hold.
func admitHook(adm map[string]*pipeline.Admission, cat *wire.Catalog) func(wire.Params) error {
	if adm == nil {
		return nil
	}
	return func(p wire.Params) error {
		ep, ok := cat.Lookup(p.Endpoint)
		a := adm[ep.Model]
		if !ok || a == nil {
			return nil
		}
		req := p.Request()
		// An edit's references are loaded only when its job runs: charge
		// each as the largest a reference becomes (imageprep.MaxArea), and
		// an output size taken from them likewise.
		side := int(math.Sqrt(imageprep.MaxArea))
		for range p.ImageURLs {
			req.References = append(req.References, engine.ReferenceImage{Width: side, Height: side})
		}
		if req.Width == 0 || req.Height == 0 {
			req.Width, req.Height = side, side
		}
		_, err := a.Check(&req)
		var refused *pipeline.AdmissionError
		if !errors.As(err, &refused) {
			return err
		}
		field := "image_size"
		if refused.Field == pipeline.FieldNumImages {
			field = "num_images"
		}
		return wire.NewValidationError([]any{"body", field}, "Value error, "+refused.Error(), "value_error")
	}
}
