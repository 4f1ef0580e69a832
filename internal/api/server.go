// Package api is the fal-compatible HTTP API of kleinserve for the endpoint
// fal-ai/flux-2/klein/4b/base: queue submit/status/status-stream/result/
// cancel, the synchronous run, the SSE /stream, storage uploads and file
// serving, plus health, readiness and metrics (the protocol is summarised
// in docs/fal-protocol.md).
//
// It is HTTP only. Input decoding lives in package wire, durable state in
// package queue, files in package storage, generation in package worker
// (which runs queued jobs, in this process or another); every error goes
// through one mapping (classify) to its status code and fal-shaped body.
// The synchronous run and the stream are queue jobs too, so one worker pool
// bounds all load.
package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// Subscriber delivers the live events (step progress, previews) that the
// worker running a job publishes, wherever it runs.
type Subscriber interface {
	Subscribe(ctx context.Context, id string) (events <-chan []byte, unsubscribe func(), err error)
}

// ReadyCheck is one condition of readiness. /readyz runs the checks in
// order and answers 503 with the first failing check's Status.
type ReadyCheck struct {
	Status string // e.g. "loading", "queue_unreachable"
	Check  func(ctx context.Context) error
	// Phase marks a failure that is a normal phase (the model loading),
	// logged at debug level rather than as a warning.
	Phase bool
}

// Options configures a Server.
type Options struct {
	// Catalog is the set of endpoints served (default: the 4B Base's).
	Catalog *wire.Catalog
	Queue   *queue.Queue
	Storage storage.Store
	Metrics *metrics.Metrics
	Events  Subscriber
	Logger  zerolog.Logger
	// Role is the process role (config.RoleAll, RoleAPI, RoleWorker). A
	// worker answers only /healthz, /readyz and /metrics.
	Role string
	// Ready are the readiness conditions; ReadyInfo adds fields to the
	// ready answer (model, queue depth, ...).
	Ready     []ReadyCheck
	ReadyInfo func() map[string]any
	// Admit, when set, refuses at submit what this deployment cannot run
	// (a *wire.ValidationError naming the field).
	Admit func(wire.Params) error
	// CheckURL, when set, vets a URL the server will call later (a
	// fal_webhook) at submit: netguard.Guard.Preflight.
	CheckURL func(ctx context.Context, rawURL string) error
	// Keys are the accepted API keys; none means an open server.
	Keys []string
	// PrivateFiles requires a key to download stored files; by default
	// their unguessable URLs are the capability, as fal's CDN URLs are.
	PrivateFiles bool
	// PublicURL is the external base URL (no trailing slash).
	PublicURL string
	// MaxBodyBytes bounds JSON bodies (default 16 MiB).
	MaxBodyBytes int64
	// PreviewEvery is the preview step interval on /stream (0: none).
	PreviewEvery int
	// KeepAlive is the SSE keep-alive comment interval (default 10s).
	KeepAlive time.Duration
	// Pace holds the body-read and response-write deadlines.
	Pace Pace
	// NewSeed picks seeds for requests without one (default: random in
	// [0, 2^53), so JavaScript clients keep the value exact).
	NewSeed func() int64
}

// Server serves the API.
type Server struct {
	opts    Options
	log     zerolog.Logger
	queue   *queue.Queue
	store   storage.Store
	metrics *metrics.Metrics
	keys    [][]byte

	stopping chan struct{} // closed by BeginShutdown
	stopOnce sync.Once
}

// New builds a Server.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 10 * time.Second
	}
	opts.Pace = opts.Pace.withDefaults()
	if opts.NewSeed == nil {
		opts.NewSeed = wire.RandomSeed
	}
	if opts.Role == "" {
		opts.Role = config.RoleAll
	}
	if opts.Catalog == nil {
		opts.Catalog = wire.DefaultCatalog()
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		queue:    opts.Queue,
		store:    opts.Storage,
		metrics:  opts.Metrics,
		stopping: make(chan struct{}),
	}
	for _, k := range opts.Keys {
		s.keys = append(s.keys, []byte(k))
	}
	return s
}

// BeginShutdown marks the server not ready and ends long-lived status
// streams, so that http.Server.Shutdown can complete. Runs and streams
// waiting on a job end when the queue finishes or fails it.
func (s *Server) BeginShutdown() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Handler returns the routed HTTP handler for the process role.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer, s.deadlines, s.observe, s.cors)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, errMethodNotAllowed) })
	r.Get("/healthz", s.handleHealth)
	r.Get("/readyz", s.handleReady)
	r.Method(http.MethodGet, "/metrics", s.metrics.Handler())
	if s.opts.Role == config.RoleWorker {
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, errWorkerOnly) })
		return r
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, errRouteNotFound) })

	// Files and upload PUTs carry no credentials in fal clients; their
	// random ids are the capability.
	r.Group(func(r chi.Router) {
		if s.opts.PrivateFiles {
			r.Use(s.auth)
		}
		r.Get("/files/{key}", s.handleFile)
		r.Head("/files/{key}", s.handleFile)
	})
	r.Put("/storage/upload/{uploadID}", s.handleUploadPut)
	r.Put("/storage/upload/{uploadID}/{partNumber}", s.handlePartPut)
	r.Post("/storage/upload/{uploadID}/complete", s.handleMultipartComplete)
	s.mountOpenAI(r)

	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Post("/storage/upload/initiate", s.handleUploadInitiate)
		r.Post("/storage/upload/initiate-multipart", s.handleMultipartInitiate)
		r.Post("/storage/auth/token", s.handleCDNToken)
		r.Post("/files/upload", s.handleCDNUpload)
		// Clients use owner/alias before /requests/; third-party guides use
		// the full endpoint id. Accept both.
		prefixes := []string{"/queue/" + wire.AppID}
		for _, ep := range s.opts.Catalog.Endpoints() {
			r.Post("/"+ep.ID, s.handleRun(ep))
			r.Post("/"+ep.ID+"/stream", s.handleStream(ep))
			r.Post("/queue/"+ep.ID, s.handleSubmit(ep))
			prefixes = append(prefixes, "/queue/"+ep.ID)
		}
		for _, prefix := range prefixes {
			r.Get(prefix+"/requests/{requestID}", s.handleResult)
			r.Get(prefix+"/requests/{requestID}/status", s.handleStatus)
			r.Get(prefix+"/requests/{requestID}/status/stream", s.handleStatusStream)
			r.Put(prefix+"/requests/{requestID}/cancel", s.handleCancel)
		}
	})
	return r
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.log, http.StatusOK, map[string]string{"status": "ok"})
}

// readyCheckTimeout bounds each readiness check, so /readyz answers quickly
// in an outage.
const readyCheckTimeout = 2 * time.Second

// handleReady is /readyz: 503 while shutting down or while a check fails
// (its status names which), else 200 with ReadyInfo.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.stopping:
		writeJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": "shutting_down"})
		return
	default:
	}
	for _, c := range s.opts.Ready {
		ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
		err := c.Check(ctx)
		cancel()
		if err != nil {
			ev := s.log.Warn()
			if c.Phase {
				ev = s.log.Debug()
			}
			ev.Err(err).Str("status", c.Status).Msg("readiness: not ready")
			writeJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": c.Status})
			return
		}
	}
	body := map[string]any{}
	if s.opts.ReadyInfo != nil {
		body = s.opts.ReadyInfo()
	}
	body["status"] = "ready"
	writeJSON(w, s.log, http.StatusOK, body)
}
