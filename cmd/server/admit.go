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

// newAdmission prepares this process's memory admission from the model's
// manifest alone (model.json: a -role api process loads no model) and the
// budget (-memory-budget). nil means no memory check: -memory-budget off,
// or an API process with the budget on auto, which has no machine of the
// workers' to derive it from, or no manifest to estimate with; its workers
// still refuse what they cannot hold when a job starts.
func newAdmission(cfg config.Config, log zerolog.Logger) (*pipeline.Admission, error) {
	if cfg.MemoryBudget == config.MemoryBudgetOff {
		log.Warn().Msg("-memory-budget off: every size the model's limits allow is accepted, whatever memory it needs")
		return nil, nil
	}
	api := cfg.Role == config.RoleAPI
	if api && cfg.MemoryBudget == config.MemoryBudgetAuto {
		log.Warn().Msg("-memory-budget auto on an API process: requests are not checked against memory at submit " +
			"(set -memory-budget to the workers' budget; workers refuse what they cannot hold when a job starts)")
		return nil, nil
	}
	man, err := pipeline.LoadManifest(cfg.ModelDir)
	if err != nil {
		if api {
			log.Warn().Err(err).Str("models", cfg.ModelDir).Msg("no model manifest: requests are not checked against memory at submit")
			return nil, nil
		}
		return nil, fmt.Errorf("load model %s: %w", cfg.ModelDir, err)
	}
	budget := cfg.MemoryBudget
	if budget == config.MemoryBudgetAuto {
		d, err := pipeline.DeriveBudget(pipeline.BudgetConfig{Provider: cfg.Provider, DeviceID: cfg.DeviceID,
			ModelBytes: pipeline.ModelBytes(man), PromptCacheBytes: cfg.PromptCacheBytes})
		if err != nil {
			return nil, fmt.Errorf("%w; set -memory-budget", err)
		}
		budget = d.Bytes
		log.Info().Str("memory_budget", d.String()).Msg("memory budget derived from the machine")
	}
	return pipeline.NewAdmission(man, pipeline.AdmissionConfig{Provider: cfg.Provider, Budget: budget,
		MinSide: wire.MinSide}), nil
}

// admitHook refuses at submit, with fal's 422 naming image_size or
// num_images, a request the memory budget cannot hold.
func admitHook(a *pipeline.Admission) func(wire.Params) error {
	if a == nil {
		return nil
	}
	return func(p wire.Params) error {
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
