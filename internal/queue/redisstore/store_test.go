package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/storetest"
	"github.com/kleinserve/kleinserve/internal/redistest"
)

func TestStoreBehaviour(t *testing.T) {
	url := redistest.Start(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) queue.Store {
		// One server; a prefix per subtest keeps them apart.
		s, err := Open(context.Background(), Options{URL: url, Prefix: fmt.Sprintf("t%d", n.Add(1)),
			WorkerID: "w", Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	})
}

func TestJobFieldsRoundTrip(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	in := &queue.Job{
		ID: "x", Endpoint: "e", Payload: json.RawMessage(`{"seed":9007199254740991}`), Priority: queue.PriorityLow,
		Owner: "fp", Ephemeral: true, Status: queue.StatusCompleted, QueueKey: queue.MakeQueueKey(queue.PriorityLow, 258),
		SubmittedAt: now, StartedAt: now.Add(time.Second), FinishedAt: now.Add(2 * time.Second), ExpiresAt: now.Add(time.Hour),
		StartDeadline: now.Add(time.Minute), CancelRequested: true, Attempts: 3, Crashes: 2, Worker: "w-1",
		Result: json.RawMessage(`{"ok":true}`), Failure: &queue.Failure{HTTPStatus: 400, Body: json.RawMessage(`{}`), Message: "m", Type: "t"},
		Webhook: &queue.Webhook{URL: "http://h", Attempts: 2}, Logs: []queue.LogEntry{{Time: now, Level: "INFO", Message: "hi"}},
	}
	fields, err := jobFields(in)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for i := 0; i < len(fields); i += 2 {
		h[fields[i].(string)] = fields[i+1].(string)
	}
	if _, ok := h[fieldResult]; ok {
		t.Fatal("the status fields include the result")
	}
	h[fieldPayload], h[fieldResult] = string(in.Payload), string(in.Result)
	raw, _ := json.Marshal(in.Logs[0])
	out, _, err := decodeJob(h, []string{string(raw)})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(in)
	b, _ := json.Marshal(out)
	if string(a) != string(b) {
		t.Fatalf("round trip:\n%s\n%s", a, b)
	}
	if _, _, err := decodeJob(map[string]string{"id": "x", "status": "IN_QUEUE", "priority": "0", "submitted_at": "yesterday"}, nil); err == nil {
		t.Fatal("bad timestamp decoded without error")
	}
	if got, want := queueScore(queue.MakeQueueKey(queue.PriorityLow, 5)), float64(uint64(1)<<44|5); got != want {
		t.Fatalf("queue score %v, want %v", got, want)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(context.Background(), Options{URL: "http://x"}); err == nil {
		t.Fatal("bad scheme accepted")
	}
	if _, err := Open(context.Background(), Options{URL: "redis://127.0.0.1:1/0", Lease: 10 * time.Millisecond}); err == nil {
		t.Fatal("tiny lease accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := Open(ctx, Options{URL: "redis://127.0.0.1:1/0"}); err == nil {
		t.Fatal("unreachable redis accepted")
	}
}
