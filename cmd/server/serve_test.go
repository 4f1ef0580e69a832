package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/api"
	"github.com/kleinserve/kleinserve/internal/config"
	"github.com/kleinserve/kleinserve/internal/metrics"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/storage"
)

// TestAPIReadiness: an API process is ready while its queue and file store
// answer and no shutdown has begun, and says which one is down otherwise.
func TestAPIReadiness(t *testing.T) {
	store, err := boltstore.Open(context.Background(), filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(store, queue.Options{Describe: api.DescribeFailure, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	up := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	full := func(context.Context) error { return storage.ErrNoSpace }
	for _, tc := range []struct {
		name                string
		queuePing, filePing func(context.Context) error
		space               func(context.Context) error
		stopping            bool
		code                int
		status              string
	}{
		{"ready", up, up, up, false, http.StatusOK, "ready"},
		{"ready without a queue ping", nil, up, up, false, http.StatusOK, "ready"},
		{"queue down", down, up, up, false, http.StatusServiceUnavailable, "queue_unreachable"},
		{"file store down", up, down, up, false, http.StatusServiceUnavailable, "storage_unreachable"},
		{"both down: the queue is named", down, down, up, false, http.StatusServiceUnavailable, "queue_unreachable"},
		{"file store full", up, up, full, false, http.StatusServiceUnavailable, "storage_full"},
		{"shutting down", up, up, up, true, http.StatusServiceUnavailable, "shutting_down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := probeStore{ping: tc.filePing, space: tc.space}
			ready, info := readiness(config.Config{Role: config.RoleAPI}, q, nil, tc.queuePing, files)
			srv := api.New(api.Options{Queue: q, Metrics: metrics.New(), Logger: zerolog.Nop(), Role: config.RoleAPI,
				Ready: ready, ReadyInfo: info})
			if tc.stopping {
				srv.BeginShutdown()
			}
			h := srv.Handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if rec.Code != tc.code || body["status"] != tc.status {
				t.Fatalf("got %d %v, want %d %s", rec.Code, body, tc.code, tc.status)
			}
			if tc.code == http.StatusOK && (body["role"] != "api" || body["queue_depth"] != float64(0)) {
				t.Fatalf("ready body %v", body)
			}
		})
	}
}

// probeStore is a file store that only answers readiness probes.
type probeStore struct {
	storage.Store
	ping, space func(context.Context) error
}

func (p probeStore) Ping(ctx context.Context) error       { return p.ping(ctx) }
func (p probeStore) CheckSpace(ctx context.Context) error { return p.space(ctx) }
