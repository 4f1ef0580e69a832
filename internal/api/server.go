// Package api is the fal-compatible HTTP API of kleinserve for the endpoint
// fal-ai/flux-2/klein/4b/base: queue submit/status/status-stream/result/
// cancel, the synchronous run, the SSE /stream, storage uploads and file
// serving, plus health, readiness and metrics (see fal-api.md §12).
//
// Handlers are thin: input decoding lives in package wire, durable state in
// package queue, files in package storage, and every error goes through one
// mapping (classify) to its status code and fal-shaped body. Generation runs
// on queue workers through Server.Process; the synchronous run and the
// stream are queue jobs too, so one worker pool bounds all load.
package api

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/engine"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/storage"
	"github.com/kleinserve/kleinserve/internal/wire"
)

// Options configures a Server.
type Options struct {
	Queue   *queue.Queue
	Storage storage.Store
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Keys are the accepted API keys; none means an open server.
	Keys []string
	// PublicURL is the external base URL (no trailing slash).
	PublicURL string
	// MaxBodyBytes bounds JSON bodies (default 16 MiB).
	MaxBodyBytes int64
	// PreviewEvery is the preview step interval on /stream (0: none).
	PreviewEvery int
	// KeepAlive is the SSE keep-alive comment interval (default 10s).
	KeepAlive time.Duration
	// NewSeed picks seeds for requests without one (default: random in
	// [0, 2^53), so JavaScript clients keep the value exact).
	NewSeed func() int64
}

// Server serves the API. Create it with New, give it an engine with
// SetEngine once loaded, and register Process as the queue's processor.
type Server struct {
	opts    Options
	log     zerolog.Logger
	queue   *queue.Queue
	store   storage.Store
	metrics *metrics.Metrics
	keys    [][]byte

	engine   atomic.Pointer[engineRef]
	live     liveHub
	stopping chan struct{} // closed by BeginShutdown
	stopOnce sync.Once
}

type engineRef struct{ e engine.Engine }

// New builds a Server.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 10 * time.Second
	}
	if opts.NewSeed == nil {
		opts.NewSeed = randomSeed
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		queue:    opts.Queue,
		store:    opts.Storage,
		metrics:  opts.Metrics,
		stopping: make(chan struct{}),
		live:     liveHub{subs: map[string]chan engine.Progress{}},
	}
	for _, k := range opts.Keys {
		s.keys = append(s.keys, []byte(k))
	}
	return s
}

// SetEngine installs the loaded engine; the server reports ready from then on.
func (s *Server) SetEngine(e engine.Engine) {
	s.engine.Store(&engineRef{e: e})
	info := e.Info()
	s.metrics.SetModelInfo(info.Model, info.Variant, info.Provider, info.Precision)
}

func (s *Server) currentEngine() engine.Engine {
	if ref := s.engine.Load(); ref != nil {
		return ref.e
	}
	return nil
}

// BeginShutdown marks the server not ready and ends long-lived status
// streams, so that http.Server.Shutdown can complete. Runs and streams
// waiting on a job end when the queue finishes or fails it.
func (s *Server) BeginShutdown() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// Handler returns the routed HTTP handler.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer, s.observe, s.cors)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, errRouteNotFound) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, errMethodNotAllowed) })

	r.Get("/healthz", s.handleHealth)
	r.Get("/readyz", s.handleReady)
	r.Method(http.MethodGet, "/metrics", s.metrics.Handler())
	// Files and upload PUTs carry no credentials in fal clients; their
	// random ids are the capability.
	r.Get("/files/{key}", s.handleFile)
	r.Head("/files/{key}", s.handleFile)
	r.Put("/storage/upload/{uploadID}", s.handleUploadPut)
	r.Put("/storage/upload/{uploadID}/{partNumber}", s.handlePartPut)
	r.Post("/storage/upload/{uploadID}/complete", s.handleMultipartComplete)
	s.mountOpenAI(r)

	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Post("/storage/upload/initiate", s.handleUploadInitiate)
		r.Post("/storage/upload/initiate-multipart", s.handleMultipartInitiate)
		r.Post("/"+wire.EndpointID, s.handleRun)
		r.Post("/"+wire.EndpointID+"/stream", s.handleStream)
		r.Post("/queue/"+wire.EndpointID, s.handleSubmit)
		// Clients use owner/alias before /requests/; third-party guides use
		// the full endpoint id. Accept both.
		for _, prefix := range []string{"/queue/" + wire.AppID, "/queue/" + wire.EndpointID} {
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

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.stopping:
		writeJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": "shutting_down"})
		return
	default:
	}
	e := s.currentEngine()
	if e == nil {
		writeJSON(w, s.log, http.StatusServiceUnavailable, map[string]string{"status": "loading"})
		return
	}
	info := e.Info()
	writeJSON(w, s.log, http.StatusOK, map[string]any{
		"status": "ready", "model": info.Model, "variant": info.Variant, "provider": info.Provider,
		"precision": info.Precision, "queue_depth": s.queue.Depth(), "running": s.queue.Running(),
	})
}
