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
	"github.com/kleinserve/kleinserve/internal/httpserver"
	"github.com/kleinserve/kleinserve/internal/imageinput"
	"github.com/kleinserve/kleinserve/internal/lora"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/pipeline"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/queue/redisstore"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/worker"
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
//
// The role decides what runs: all = API + engine + queue workers; api = the
// API and the queue without an engine; worker = engine + queue workers,
// with only /healthz, /readyz and /metrics on the listener (api.Server
// routes by role).
func runServer(ctx context.Context, stopSignals func(), cfg config.Config, log zerolog.Logger) (err error) {
	files, err := openFileStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	// Every URL the server fetches or calls goes through this guard.
	policy, err := cfg.OutboundPolicy()
	if err != nil {
		return err
	}
	guard := netguard.New(policy)
	defer guard.Close()
	store, ping, err := openQueueStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	retries := cfg.MaxRetries
	if retries == 0 {
		retries = queue.NoRetries // Options takes 0 for its default
	}
	q, err := queue.Open(store, queue.Options{
		Workers:    cfg.Workers,
		MaxQueued:  cfg.MaxQueue,
		Retention:  cfg.Retention,
		MaxRetries: retries,
		Describe:   api.DescribeFailure,
		Webhook: queue.WebhookOptions{Secret: cfg.WebhookSecret, Redact: netguard.Redact,
			Client: guard.Client(netguard.ClientOptions{NoRedirects: true, Timeout: webhookTimeout})},
		Logger: log.With().Str("component", "queue").Logger(),
	})
	if err != nil {
		store.Close(ctx)
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()

	m := metrics.New()
	m.RegisterQueueGauges(q.Depth, q.Running)
	// Live progress travels through the queue, so that a stream answered
	// by one process shows the steps of a job another process runs.
	wk := worker.New(worker.Options{Storage: files, Metrics: m, Events: q,
		Images: &imageinput.Loader{Fetcher: guard, Files: files},
		Logger: log.With().Str("component", "worker").Logger()})
	adm, err := newAdmission(cfg, log)
	if err != nil {
		return err
	}
	ready, readyInfo := readiness(cfg, q, wk, ping, files)
	srv := api.New(api.Options{
		Queue:        q,
		Storage:      files,
		Metrics:      m,
		Events:       q,
		Logger:       log.With().Str("component", "api").Logger(),
		Role:         cfg.Role,
		Ready:        ready,
		ReadyInfo:    readyInfo,
		Keys:         cfg.Keys,
		PrivateFiles: cfg.PrivateFiles,
		CheckURL:     guard.Preflight,
		PublicURL:    cfg.PublicURL,
		MaxBodyBytes: cfg.MaxBodyBytes,
		PreviewEvery: cfg.PreviewEvery,
		Admit:        admitHook(adm),
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	ln = httpserver.LimitPerIP(ln, cfg.MaxConnsPerIP)
	httpServer := httpserver.New(srv.Handler())
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
		storage.RunJanitor(bgCtx, files, min(max(cfg.Retention/10, time.Minute), time.Hour), cfg.Retention,
			func(err error) { log.Error().Err(err).Msg("delete expired files") },
			func(n int) { log.Info().Int("files", n).Msg("deleted expired files") })
	}()
	var eng engine.Engine
	var runErr error
	if cfg.Role == config.RoleAPI {
		log.Info().Str("addr", ln.Addr().String()).Str("public_url", cfg.PublicURL).Str("role", cfg.Role).
			Msg("ready: serving the API; generation runs on worker processes")
	} else {
		log.Info().Str("addr", ln.Addr().String()).Str("public_url", cfg.PublicURL).Str("role", cfg.Role).
			Msg("listening; loading model")
		var loras *lora.Store
		if loras, runErr = newLoRAStore(cfg, guard, files); runErr == nil {
			eng, runErr = loadEngine(ctx, cfg, adm, loras, log)
		}
		if runErr == nil && eng != nil {
			wk.SetEngine(eng)
			q.Start(wk.Process)
			log.Info().Msg("ready")
		}
	}
	if runErr == nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
			log.Info().Msg("shutdown signal received")
		case err := <-serveErr:
			runErr = fmt.Errorf("http server: %w", err)
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
	return runErr
}

// webhookTimeout bounds one webhook delivery attempt.
const webhookTimeout = 30 * time.Second

// readiness is what /readyz checks for the process role: an API process is
// ready while the shared queue and the file store answer; a generating
// process once its model is loaded.
//
// Every role writes files (uploads, generated images), so every role is
// unready while its file store is full.
func readiness(cfg config.Config, q *queue.Queue, wk *worker.Worker, queuePing func(context.Context) error, files storage.Store) ([]api.ReadyCheck, func() map[string]any) {
	full := api.ReadyCheck{Status: "storage_full", Check: files.CheckSpace}
	if cfg.Role == config.RoleAPI {
		var checks []api.ReadyCheck
		if queuePing != nil {
			checks = append(checks, api.ReadyCheck{Status: "queue_unreachable", Check: queuePing})
		}
		checks = append(checks, api.ReadyCheck{Status: "storage_unreachable", Check: files.Ping}, full)
		return checks, func() map[string]any {
			return map[string]any{"role": config.RoleAPI, "queue_depth": q.Depth()}
		}
	}
	loaded := api.ReadyCheck{Status: "loading", Phase: true, Check: func(context.Context) error {
		if wk.Engine() == nil {
			return worker.ErrNotReady
		}
		return nil
	}}
	return []api.ReadyCheck{loaded, full}, func() map[string]any {
		info := wk.Engine().Info()
		return map[string]any{"model": info.Model, "variant": info.Variant, "provider": info.Provider,
			"precision": info.Precision, "queue_depth": q.Depth(), "running": q.Running()}
	}
}

// loadEngine calls newEngine, logging how long the model took to load.
func loadEngine(ctx context.Context, cfg config.Config, adm *pipeline.Admission, loras pipeline.LoRALoader, log zerolog.Logger) (engine.Engine, error) {
	start := time.Now()
	eng, err := newEngine(ctx, cfg, adm, loras, log.With().Str("component", "engine").Logger())
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

// openQueueStore opens the configured queue backend. ping reports whether
// the backend is reachable (nil for the embedded bolt file).
func openQueueStore(ctx context.Context, cfg config.Config, log zerolog.Logger) (queue.Store, func(context.Context) error, error) {
	if !cfg.SharedQueue() {
		store, err := boltstore.Open(ctx, cfg.QueuePath())
		return store, nil, err
	}
	store, err := redisstore.Open(ctx, redisstore.Options{
		URL:      cfg.Queue,
		WorkerID: cfg.WorkerID,
		Lease:    cfg.Lease,
		Logger:   log.With().Str("component", "queue").Logger(),
	})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("consumer", store.Consumer()).Msg("connected to the shared Redis queue")
	return store, store.Ping, nil
}

// openFileStore opens the configured file store. An S3 bucket must exist
// and answer now: a misconfigured store fails the start, not the first
// generation.
func openFileStore(ctx context.Context, cfg config.Config, log zerolog.Logger) (storage.Store, error) {
	opts := storage.Options{PublicURL: cfg.PublicURL, MaxUploadBytes: cfg.MaxUploadBytes}
	if !cfg.SharedStorage() {
		return storage.OpenLocal(cfg.FilesDir(), opts)
	}
	bucket, prefix := cfg.S3Location()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	files, err := storage.OpenS3(ctx, storage.S3Options{
		Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Insecure: cfg.S3Insecure, PathStyle: cfg.S3PathStyle, Bucket: bucket, Prefix: prefix,
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("open the file store %s: %w", cfg.Storage, err)
	}
	log.Info().Str("storage", cfg.Storage).Msg("using the shared S3 file store")
	return files, nil
}
