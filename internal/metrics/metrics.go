// Package metrics defines the server's Prometheus metrics on a registry of
// its own (never the global default), which is passed explicitly to the
// code that records into it and served at /metrics.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "kleinserve"

// Metrics holds every collector of the server.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	queueWait    prometheus.Histogram
	inference    prometheus.Histogram
	stepTime     prometheus.Histogram
	images       prometheus.Counter
	nsfw         prometheus.Counter
	jobs         *prometheus.CounterVec
	modelInfo    *prometheus.GaugeVec
}

// New creates the collectors on a fresh registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to serve an HTTP request (streams: until closed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"route"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "queue_wait_seconds",
			Help:    "Time from submit until a worker started the request.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 12),
		}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "inference_seconds",
			Help:    "Engine time per request, all images and phases.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		stepTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "denoising_step_seconds",
			Help:    "Time of one denoising step.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		images: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "images_generated_total",
			Help: "Images generated.",
		}),
		nsfw: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "nsfw_flagged_total",
			Help: "Images the safety checker flagged (and blacked out).",
		}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_finished_total",
			Help: "Finished generation requests by outcome.",
		}, []string{"outcome"}),
		modelInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "model_info",
			Help: "The loaded model and execution provider (value 1).",
		}, []string{"model", "variant", "provider", "precision"}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.queueWait, m.inference, m.stepTime,
		m.images, m.nsfw, m.jobs, m.modelInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RegisterQueueGauges exposes queue depth and running jobs, read at scrape
// time from the given functions.
func (m *Metrics) RegisterQueueGauges(depth, running func() int) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_depth",
			Help: "Requests waiting in the queue.",
		}, func() float64 { return float64(depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "queue_running",
			Help: "Requests being generated.",
		}, func() float64 { return float64(running()) }),
	)
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveHTTP records one served request.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// ObserveQueueWait records how long a request waited before it started.
func (m *Metrics) ObserveQueueWait(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

// ObserveInference records the engine time of one request.
func (m *Metrics) ObserveInference(d time.Duration) { m.inference.Observe(d.Seconds()) }

// ObserveStep records one denoising step.
func (m *Metrics) ObserveStep(d time.Duration) { m.stepTime.Observe(d.Seconds()) }

// AddImages counts generated images and how many were flagged NSFW.
func (m *Metrics) AddImages(generated, flagged int) {
	m.images.Add(float64(generated))
	m.nsfw.Add(float64(flagged))
}

// Request outcomes for FinishRequest.
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"
	OutcomeCanceled = "canceled"
)

// FinishRequest counts a finished generation request.
func (m *Metrics) FinishRequest(outcome string) { m.jobs.WithLabelValues(outcome).Inc() }

// SetModelInfo publishes the loaded model's identity.
func (m *Metrics) SetModelInfo(model, variant, provider, precision string) {
	m.modelInfo.Reset()
	m.modelInfo.WithLabelValues(model, variant, provider, precision).Set(1)
}
