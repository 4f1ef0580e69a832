package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// newEngine opens the ONNX Runtime pipeline on the configured model
// directory, sharing the API's memory admission (nil: none) and loading
// LoRA files through loras. It fails, naming every mismatch, when the
// model's graphs are not what the pipeline runs.
func newEngine(ctx context.Context, cfg config.Config, adm *pipeline.Admission, loras pipeline.LoRALoader, log zerolog.Logger) (engine.Engine, error) {
	cache := cfg.PromptCacheBytes
	if cache == 0 {
		cache = -1 // pipeline.Config's "none"
	}
	e, err := pipeline.Open(ctx, pipeline.Config{
		ModelDir:       cfg.ModelDir,
		LibraryPath:    cfg.ORTLib,
		Provider:       cfg.Provider,
		DeviceID:       cfg.DeviceID,
		IntraOpThreads: cfg.Threads,
		Noise:          sampler.NoiseSource(cfg.Noise),
		LoRA:           loras,
		// -workers requests run at once; those of one size share each
		// transformer call.
		MaxConcurrent:    cfg.Workers,
		Admission:        adm,
		PromptCacheBytes: cache,
		Logger:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", cfg.ModelDir, err)
	}
	info := e.Info()
	log.Info().Str("model", info.Model).Str("variant", info.Variant).Str("provider", info.Provider).
		Str("precision", info.Precision).Str("onnxruntime", e.ORTVersion()).Msg("model ready")
	return e, nil
}
