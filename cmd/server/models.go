package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// servedModel is one model directory of -models: its manifest and the
// protocol's view of it.
type servedModel struct {
	dir   string
	man   *pipeline.Manifest
	model wire.Model
}

// loadCatalog reads the manifest of every -models directory (no sessions:
// an API process serves the catalog without loading a model) and builds the
// catalog of endpoints they serve. Two directories of the same variant are
// refused: each endpoint has one model.
func loadCatalog(cfg config.Config) ([]servedModel, *wire.Catalog, error) {
	dirs, err := cfg.ModelDirs()
	if err != nil {
		return nil, nil, err
	}
	var models []servedModel
	var wm []wire.Model
	for _, dir := range dirs {
		man, err := pipeline.LoadManifest(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("load model %s: %w", dir, err)
		}
		m := wireModel(man)
		models = append(models, servedModel{dir: dir, man: man, model: m})
		wm = append(wm, m)
	}
	cat, err := wire.NewCatalog(wm...)
	if err != nil {
		return nil, nil, fmt.Errorf("-models: %w", err)
	}
	return models, cat, nil
}

// wireModel is the protocol's view of a model directory: its endpoint id
// (the 4B Base's for manifests from before checkpoints named theirs),
// whether it is distilled and whether it takes LoRAs.
func wireModel(man *pipeline.Manifest) wire.Model {
	m := wire.Model{ID: wire.Base4B.ID, Distilled: man.Distilled(), LoRA: man.TakesLoRA()}
	if man.Checkpoint != nil && man.Checkpoint.EndpointPrefix != "" {
		m.ID = man.Checkpoint.EndpointPrefix
	}
	return m
}

// loadEngines opens the engine of every model, sharing graph sessions
// whose files are byte-identical (a variant's text encoder) through one
// pool. On failure the engines opened so far are closed.
func loadEngines(ctx context.Context, cfg config.Config, models []servedModel, adm map[string]*pipeline.Admission,
	loras pipeline.LoRALoader, log zerolog.Logger) (_ map[string]engine.Engine, err error) {
	pool := pipeline.NewSessionPool()
	engines := map[string]engine.Engine{}
	defer func() {
		if err != nil {
			err = errors.Join(err, closeEngines(engines))
		}
	}()
	for _, sm := range models {
		start := time.Now()
		e, err := newEngine(ctx, cfg, sm.dir, adm[sm.model.ID], loras, pool,
			log.With().Str("component", "engine").Str("model", sm.model.ID).Logger())
		if err != nil {
			return nil, err
		}
		engines[sm.model.ID] = e
		if ctx.Err() != nil { // a shutdown signal arrived while loading
			return nil, ctx.Err()
		}
		log.Info().Str("model", sm.model.ID).Dur("load_time", time.Since(start)).Msg("engine loaded")
	}
	log.Info().Int("models", len(engines)).Int("sessions", pool.Len()).Msg("models loaded (shared graphs loaded once)")
	return engines, nil
}

func closeEngines(engines map[string]engine.Engine) error {
	var err error
	for _, e := range engines {
		err = errors.Join(err, e.Close())
	}
	return err
}
