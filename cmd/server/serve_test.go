package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/api"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
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
	for _, tc := range []struct {
		name                string
		queuePing, filePing func(context.Context) error
		stopping            bool
		code                int
		status              string
	}{
		{"ready", up, up, false, http.StatusOK, "ready"},
		{"ready without a queue ping", nil, up, false, http.StatusOK, "ready"},
		{"queue down", down, up, false, http.StatusServiceUnavailable, "queue_unreachable"},
		{"file store down", up, down, false, http.StatusServiceUnavailable, "storage_unreachable"},
		{"both down: the queue is named", down, down, false, http.StatusServiceUnavailable, "queue_unreachable"},
		{"shutting down", up, up, true, http.StatusServiceUnavailable, "shutting_down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stopping atomic.Bool
			stopping.Store(tc.stopping)
			h := apiReadiness(q, tc.queuePing, tc.filePing, &stopping, zerolog.Nop())
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
