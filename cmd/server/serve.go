package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/api"
	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/storage"
)

// serveHelp is the flag list of `server serve`.
func serveHelp() string { return config.HelpText() }

// serve runs the HTTP server until SIGINT/SIGTERM and returns the exit code.
func serve(args []string) int {
	cfg, err := config.Load(args, os.Getenv, nil)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stdout, "usage: server [serve] [flags]\n\nflags (env KLEINSERVE_<FLAG>, dashes as underscores):")
		fmt.Fprint(os.Stdout, serveHelp())
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := newLogger(cfg.LogLevel)
	log.Info().Interface("config", cfg.Redacted()).Msg("starting kleinserve")
	if len(cfg.Keys) == 0 {
		log.Warn().Msg("no API keys configured (-keys / KLEINSERVE_KEYS): anyone who can reach the server can use it")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runServer(ctx, stop, cfg, log); err != nil {
		log.Error().Err(err).Msg("server stopped with an error")
		return 1
	}
	log.Info().Msg("server stopped")
	return 0
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(os.Stderr).Level(lvl).With().Timestamp().Logger()
}

// runServer wires the components, serves until ctx ends and shuts down in
// order: stop accepting, let running jobs finish within the grace period
// (then interrupt and requeue them), close the engine and the queue.
// stopSignals restores default signal handling, so a second Ctrl-C kills.
func runServer(ctx context.Context, stopSignals func(), cfg config.Config, log zerolog.Logger) (err error) {
	store, err := queue.OpenBolt(cfg.QueuePath())
	if err != nil {
		return err
	}
	q, err := queue.Open(store, queue.Options{
		Workers:   cfg.Workers,
		MaxQueued: cfg.MaxQueue,
		Retention: cfg.Retention,
		Describe:  api.DescribeFailure,
		Logger:    log.With().Str("component", "queue").Logger(),
	})
	if err != nil {
		store.Close()
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()

	files, err := storage.Open(cfg.FilesDir(), storage.Options{PublicURL: cfg.PublicURL, MaxUploadBytes: cfg.MaxUploadBytes})
	if err != nil {
		return err
	}
	m := metrics.New()
	m.RegisterQueueGauges(q.Depth, q.Running)
	srv := api.New(api.Options{
		Queue:        q,
		Storage:      files,
		Metrics:      m,
		Logger:       log.With().Str("component", "api").Logger(),
		Keys:         cfg.Keys,
		PublicURL:    cfg.PublicURL,
		MaxBodyBytes: cfg.MaxBodyBytes,
		PreviewEvery: cfg.PreviewEvery,
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	httpServer := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	var background sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	background.Add(2)
	go func() {
		defer background.Done()
		if err := httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	go func() {
		defer background.Done()
		files.RunJanitor(bgCtx, min(max(cfg.Retention/10, time.Minute), time.Hour), cfg.Retention,
			func(err error) { log.Error().Err(err).Msg("delete expired files") },
			func(n int) { log.Info().Int("files", n).Msg("deleted expired files") })
	}()
	log.Info().Str("addr", ln.Addr().String()).Str("public_url", cfg.PublicURL).Msg("listening; loading model")

	eng, loadErr := loadEngine(ctx, cfg, log)
	if loadErr == nil && eng != nil {
		srv.SetEngine(eng)
		q.Start(srv.Process)
		info := eng.Info()
		log.Info().Str("model", info.Model).Str("variant", info.Variant).Str("provider", info.Provider).
			Str("precision", info.Precision).Msg("ready")
		select {
		case <-ctx.Done():
			log.Info().Msg("shutdown signal received")
		case err := <-serveErr:
			loadErr = fmt.Errorf("http server: %w", err)
		}
	}
	stopSignals()

	// Shutdown: readiness off and status streams closed, listener closed,
	// running jobs get the grace period.
	srv.BeginShutdown()
	grace, cancelGrace := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancelGrace()
	httpDone := make(chan error, 1)
	go func() {
		drain, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+10*time.Second)
		defer cancel()
		httpDone <- httpServer.Shutdown(drain)
	}()
	if err := q.Shutdown(grace); err != nil {
		log.Error().Err(err).Msg("queue shutdown")
	}
	if err := <-httpDone; err != nil {
		log.Warn().Err(err).Msg("forcing open connections closed")
		httpServer.Close()
	}
	stopBackground()
	background.Wait()
	if eng != nil {
		if err := eng.Close(); err != nil {
			log.Error().Err(err).Msg("close engine")
		}
	}
	return loadErr
}

// loadEngine calls newEngine, logging how long the model took to load.
func loadEngine(ctx context.Context, cfg config.Config, log zerolog.Logger) (engine.Engine, error) {
	start := time.Now()
	eng, err := newEngine(ctx, cfg, log.With().Str("component", "engine").Logger())
	if err != nil {
		return nil, fmt.Errorf("load engine: %w", err)
	}
	if ctx.Err() != nil {
		// A shutdown signal arrived while loading.
		eng.Close()
		return nil, nil
	}
	log.Info().Dur("load_time", time.Since(start)).Msg("engine loaded")
	return eng, nil
}
