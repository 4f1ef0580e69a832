package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/queue/storetest"
)

var _ queue.Store = (*boltstore.Store)(nil)

func TestStoreBehaviour(t *testing.T) {
	storetest.Run(t, func(t *testing.T) queue.Store {
		s, err := boltstore.Open(context.Background(), filepath.Join(t.TempDir(), "queue.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	})
}

// TestOpensLayoutOneDatabase: a queue.db written by the code before the
// status record was split off (testdata/README.md) opens, and every job
// reads back whole, by parts, and through the indexes.
func TestOpensLayoutOneDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	copyFile(t, filepath.Join("testdata", "legacy-v1-queue.db"), path)
	for open := range 2 { // the second open finds the layout current
		s, err := boltstore.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		checkLegacyJobs(t, s)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// The status records no longer hold the parts.
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket([]byte("meta")).Get([]byte("schema")); string(v) != "2" {
				t.Errorf("open %d: schema %q", open, v)
			}
			return tx.Bucket([]byte("jobs")).ForEach(func(k, v []byte) error {
				for _, field := range []string{`"result"`, `"logs"`, `"payload"`} {
					if strings.Contains(string(v), field) {
						t.Errorf("open %d: record %s still holds %s: %s", open, k, field, v)
					}
				}
				return nil
			})
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func checkLegacyJobs(t *testing.T, s *boltstore.Store) {
	t.Helper()
	ctx := context.Background()
	get := func(id string, parts queue.Part) *queue.Job {
		t.Helper()
		j, err := s.Get(ctx, id, parts)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return j
	}
	payload := func(id string) string { return `{"prompt":"` + id + `","seed":7}` }
	for _, id := range []string{"done", "hooked"} {
		j := get(id, queue.PartAll)
		want := `{"images":[{"url":"data:image/png;base64,iVBORw0KGgo=","width":64,"height":64}],"seed":7,"id":"` + id + `"}`
		if j.Status != queue.StatusCompleted || string(j.Result) != want || string(j.Payload) != payload(id) ||
			len(j.Logs) != 2 || j.Logs[1].Message != "Step 2/2" || j.Failure != nil || j.Attempts != 1 ||
			j.Endpoint != "fal-ai/flux-2/klein/4b/base" || !j.FinishedAt.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("%s: %+v", id, j)
		}
		if j := get(id, 0); j.Result != nil || j.Logs != nil || j.Payload != nil {
			t.Fatalf("%s status record holds parts: %+v", id, j)
		}
	}
	if j := get("failed", queue.PartAll); j.Failure == nil || j.Failure.Message != "engine exploded" ||
		j.Failure.HTTPStatus != 500 || j.Result != nil || len(j.Logs) != 3 || j.Logs[2].Level != "ERROR" {
		t.Fatalf("failed: %+v", j)
	}
	hooks, err := s.PendingWebhooks(ctx)
	if err != nil || len(hooks) != 1 || hooks[0].ID != "hooked" || hooks[0].Webhook.URL != "http://127.0.0.1:1/hook" {
		t.Fatalf("pending webhooks: %+v %v", hooks, err)
	}
	running, err := s.List(ctx, queue.StatusRunning)
	if err != nil || len(running) != 1 || running[0].ID != "crashed" || running[0].Attempts != 1 {
		t.Fatalf("running: %+v %v", running, err)
	}
	if j := get("crashed", queue.PartPayload); string(j.Payload) != payload("crashed") {
		t.Fatalf("crashed: %+v", j)
	}
	queued, err := s.List(ctx, queue.StatusQueued)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, j := range queued {
		order = append(order, j.ID)
	}
	if fmt.Sprint(order) != "[queued queued-eph queued-low]" {
		t.Fatalf("queue order %v", order)
	}
	if j := get("queued", queue.PartPayload); j.Position != 0 || string(j.Payload) != payload("queued") ||
		j.StartDeadline.Year() != 2126 {
		t.Fatalf("queued: %+v", j)
	}
	if j := get("queued-eph", 0); !j.Ephemeral || j.Position != 1 {
		t.Fatalf("queued-eph: %+v", j)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeSpansBatches: a layout-1 database with more jobs than one
// upgrade transaction takes is split whole.
func TestUpgradeSpansBatches(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*256 + 3
	err = db.Update(func(tx *bolt.Tx) error {
		jobs, err := tx.CreateBucket([]byte("jobs"))
		if err != nil {
			return err
		}
		for i := range n {
			id := fmt.Sprintf("job-%04d", i)
			rec := fmt.Sprintf(`{"id":%q,"payload":{"i":%d},"status":"COMPLETED","attempts":1,`+
				`"logs":[{"time":"2026-03-01T12:00:00Z","level":"INFO","message":"line %d"}],"result":{"r":%d}}`, id, i, i, i)
			if err := jobs.Put([]byte(id), []byte(rec)); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := boltstore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for i := range n {
		j, err := s.Get(ctx, fmt.Sprintf("job-%04d", i), queue.PartAll)
		if err != nil {
			t.Fatal(err)
		}
		if string(j.Payload) != fmt.Sprintf(`{"i":%d}`, i) || string(j.Result) != fmt.Sprintf(`{"r":%d}`, i) ||
			len(j.Logs) != 1 || j.Logs[0].Message != fmt.Sprintf("line %d", i) {
			t.Fatalf("job %d after the upgrade: %+v", i, j)
		}
	}
}
