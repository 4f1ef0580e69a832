package queue_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// checkReadParts: Read leaves out what is not asked for, Get has it all,
// and the owner comes back with the status.
func checkReadParts(t *testing.T, api, worker *queue.Queue) {
	t.Helper()
	ctx := context.Background()
	worker.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		log("INFO", "working")
		return json.RawMessage(`{"images":["big"]}`), nil
	})
	submit(t, api, queue.SubmitRequest{ID: "job", Owner: "key-fingerprint", Payload: json.RawMessage(`{"prompt":"p"}`)})
	waitStatus(t, api, "job", queue.StatusCompleted)
	j, err := api.Read(ctx, "job", 0)
	if err != nil || j.Result != nil || j.Logs != nil || j.Payload != nil || j.Owner != "key-fingerprint" ||
		j.Status != queue.StatusCompleted {
		t.Fatalf("status read: %+v %v", j, err)
	}
	if j, _ := api.Read(ctx, "job", queue.PartLogs); len(j.Logs) == 0 || j.Result != nil {
		t.Fatalf("status read with logs: %+v", j)
	}
	if j, _ := api.Read(ctx, "job", queue.PartResult); string(j.Result) != `{"images":["big"]}` || j.Logs != nil {
		t.Fatalf("result read: %+v", j)
	}
	if j, _ := api.Get(ctx, "job"); string(j.Result) != `{"images":["big"]}` || len(j.Logs) == 0 ||
		string(j.Payload) != `{"prompt":"p"}` || j.Owner != "key-fingerprint" {
		t.Fatalf("get: %+v", j)
	}
}

func TestReadParts(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	checkReadParts(t, q, q)
}

func TestRedisReadParts(t *testing.T) {
	url := startRedis(t)
	checkReadParts(t, openRedisQueue(t, url, "api", queue.Options{}), openRedisQueue(t, url, "gpu", queue.Options{}))
}
