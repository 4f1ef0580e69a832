// Package storetest is the behaviour every queue.Store must have, as one
// test suite that each store's tests run against their own store.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// Run runs the suite; open returns a new, empty store for one subtest and
// arranges for it to be closed.
func Run(t *testing.T, open func(t *testing.T) queue.Store) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, queue.Store)
	}{
		{"PositionsPriorityLimits", positionsPriorityLimits},
		{"PartsOnlyWhenAsked", partsOnlyWhenAsked},
		{"RequeueFrontAndBack", requeueFrontAndBack},
		{"UpdateAbortsOnFnError", updateAbortsOnFnError},
		{"ListsAndWebhookIndex", listsAndWebhookIndex},
		{"DeleteExpiredRemovesEveryPart", deleteExpiredRemovesEveryPart},
		{"HonoursContext", honoursContext},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}

var ctx = context.Background()

func add(t *testing.T, s queue.Store, j *queue.Job, maxQueued int) *queue.Job {
	t.Helper()
	if j.Payload == nil {
		j.Payload = json.RawMessage(`{"prompt":"` + j.ID + `"}`)
	}
	if err := s.Add(ctx, j, maxQueued); err != nil {
		t.Fatalf("add %s: %v", j.ID, err)
	}
	return j
}

func get(t *testing.T, s queue.Store, id string, parts queue.Part) *queue.Job {
	t.Helper()
	j, err := s.Get(ctx, id, parts)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return j
}

func update(t *testing.T, s queue.Store, id string, fn func(*queue.Job)) *queue.Job {
	t.Helper()
	j, err := s.Update(ctx, id, func(j *queue.Job) error { fn(j); return nil })
	if err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
	return j
}

func claim(t *testing.T, s queue.Store) *queue.Job {
	t.Helper()
	j, err := s.ClaimNext(ctx, time.Now())
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return j
}

// positionsPriorityLimits: positions follow priority then submit order;
// duplicates and a full queue are refused.
func positionsPriorityLimits(t *testing.T, s queue.Store) {
	a := add(t, s, &queue.Job{ID: "a"}, 3)
	low := add(t, s, &queue.Job{ID: "low", Priority: queue.PriorityLow}, 3)
	b := add(t, s, &queue.Job{ID: "b"}, 3)
	if a.Position != 0 || low.Position != 1 || b.Position != 1 || a.Status != queue.StatusQueued {
		t.Fatalf("add positions a=%d low=%d b=%d, status %s", a.Position, low.Position, b.Position, a.Status)
	}
	for id, pos := range map[string]int{"a": 0, "b": 1, "low": 2} {
		if j := get(t, s, id, 0); j.Status != queue.StatusQueued || j.Position != pos {
			t.Fatalf("%s: %+v, want position %d", id, j, pos)
		}
	}
	if n, err := s.QueuedCount(ctx); err != nil || n != 3 {
		t.Fatalf("queued count %d %v", n, err)
	}
	if err := s.Add(ctx, &queue.Job{ID: "c", Payload: json.RawMessage(`{}`)}, 3); !errors.Is(err, queue.ErrQueueFull) {
		t.Fatalf("add to a full queue: %v", err)
	}
	if err := s.Add(ctx, &queue.Job{ID: "a", Payload: json.RawMessage(`{}`)}, 0); !errors.Is(err, queue.ErrDuplicateID) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := s.Get(ctx, "nope", queue.PartAll); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := s.Update(ctx, "nope", func(*queue.Job) error { return nil }); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("update unknown id: %v", err)
	}
	for _, want := range []string{"a", "b", "low"} {
		if j := claim(t, s); j == nil || j.ID != want {
			t.Fatalf("claimed %+v, want %s", j, want)
		}
	}
	if j := claim(t, s); j != nil {
		t.Fatalf("claim of an empty queue: %+v", j)
	}
}

// partsOnlyWhenAsked: the status record carries no payload, logs or
// result; each comes with its Part; Update's fn never sees them and
// appends log lines.
func partsOnlyWhenAsked(t *testing.T, s queue.Store) {
	payload := json.RawMessage(`{"prompt":"p","seed":9007199254740991}`)
	add(t, s, &queue.Job{ID: "j", Payload: payload, Owner: "owner-fp", Endpoint: "e"}, 0)
	if j := get(t, s, "j", 0); j.Payload != nil || j.Logs != nil || j.Result != nil || j.Owner != "owner-fp" || j.Endpoint != "e" {
		t.Fatalf("status record: %+v", j)
	}
	if j := get(t, s, "j", queue.PartPayload); string(j.Payload) != string(payload) {
		t.Fatalf("payload %s", j.Payload)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	claimed, err := s.ClaimNext(ctx, now)
	if err != nil || claimed == nil {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	if string(claimed.Payload) != string(payload) || claimed.Attempts != 1 || !claimed.StartedAt.Equal(now) ||
		claimed.Status != queue.StatusRunning || claimed.Owner != "owner-fp" {
		t.Fatalf("claimed job: %+v", claimed)
	}
	lines := []queue.LogEntry{
		{Time: now, Level: "INFO", Message: "one"},
		{Time: now.Add(time.Second), Level: "WARN", Message: "two"},
		{Time: now.Add(2 * time.Second), Level: "INFO", Message: "three"},
	}
	for i, l := range lines {
		_, err := s.Update(ctx, "j", func(j *queue.Job) error {
			if j.Logs != nil || j.Result != nil || j.Payload != nil {
				return fmt.Errorf("fn sees parts: %+v", j)
			}
			j.Logs = []queue.LogEntry{l}
			j.Crashes = i
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	result := json.RawMessage(`{"images":[{"url":"data:image/png;base64,AAAA"}]}`)
	done := update(t, s, "j", func(j *queue.Job) {
		j.Status = queue.StatusCompleted
		j.FinishedAt = now
		j.ExpiresAt = now.Add(time.Hour)
		j.Result = result
	})
	if done.Result != nil || done.Logs != nil || done.Status != queue.StatusCompleted {
		t.Fatalf("update returned %+v, want the status record", done)
	}
	if j := get(t, s, "j", 0); j.Result != nil || j.Logs != nil || j.Crashes != 2 || j.Attempts != 1 {
		t.Fatalf("status record after completion: %+v", j)
	}
	if j := get(t, s, "j", queue.PartResult); string(j.Result) != string(result) || j.Logs != nil {
		t.Fatalf("result part: %+v", j)
	}
	j := get(t, s, "j", queue.PartAll)
	if string(j.Result) != string(result) || string(j.Payload) != string(payload) || len(j.Logs) != 3 {
		t.Fatalf("all parts: %+v", j)
	}
	for i, l := range j.Logs {
		if l.Message != lines[i].Message || l.Level != lines[i].Level || !l.Time.Equal(lines[i].Time) {
			t.Fatalf("log line %d: %+v, want %+v", i, l, lines[i])
		}
	}
}

// requeueFrontAndBack: a running job requeued with its QueueKey goes back
// first; with a cleared QueueKey it gets a new one behind the waiting jobs.
func requeueFrontAndBack(t *testing.T, s queue.Store) {
	for _, id := range []string{"a", "b", "c"} {
		add(t, s, &queue.Job{ID: id}, 0)
	}
	requeue := func(back bool) *queue.Job {
		return update(t, s, "a", func(j *queue.Job) {
			j.Status = queue.StatusQueued
			j.StartedAt = time.Time{}
			if back {
				j.QueueKey = nil
			}
		})
	}
	if j := claim(t, s); j.ID != "a" {
		t.Fatalf("claimed %s", j.ID)
	}
	if j := requeue(false); j.Position != 0 {
		t.Fatalf("requeued at the front: position %d", j.Position)
	}
	if j := claim(t, s); j.ID != "a" || j.Attempts != 2 {
		t.Fatalf("claimed %s (attempts %d), want a again", j.ID, j.Attempts)
	}
	if j := requeue(true); j.Position != 2 {
		t.Fatalf("requeued at the back: position %d, want 2", j.Position)
	}
	if j := get(t, s, "a", 0); j.Position != 2 || len(j.QueueKey) == 0 {
		t.Fatalf("stored: position %d, queue key %v", j.Position, j.QueueKey)
	}
	var order []string
	for j := claim(t, s); j != nil; j = claim(t, s) {
		order = append(order, j.ID)
	}
	if fmt.Sprint(order) != "[b c a]" {
		t.Fatalf("claim order %v, want [b c a]", order)
	}
}

// updateAbortsOnFnError: fn's error comes back (matched by errors.Is) and
// nothing is written.
func updateAbortsOnFnError(t *testing.T, s queue.Store) {
	add(t, s, &queue.Job{ID: "j"}, 0)
	sentinel := errors.New("no thanks")
	_, err := s.Update(ctx, "j", func(j *queue.Job) error {
		j.Status = queue.StatusCompleted
		j.Logs = []queue.LogEntry{{Message: "never"}}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("update error %v, want the fn's", err)
	}
	if j := get(t, s, "j", queue.PartLogs); j.Status != queue.StatusQueued || len(j.Logs) != 0 {
		t.Fatalf("aborted update was written: %+v", j)
	}
}

// listsAndWebhookIndex: List by state, and PendingWebhooks of completed
// jobs until their webhook is delivered.
func listsAndWebhookIndex(t *testing.T, s queue.Store) {
	for _, id := range []string{"q1", "q2", "run", "hook", "plain"} {
		add(t, s, &queue.Job{ID: id, Webhook: &queue.Webhook{URL: "http://receiver.example/" + id}}, 0)
	}
	// Claim in queue order: q1, q2 are claimed and requeued so that "run"
	// is the one left running.
	for range 3 {
		claim(t, s)
	}
	for _, id := range []string{"q1", "q2"} {
		update(t, s, id, func(j *queue.Job) { j.Status = queue.StatusQueued })
	}
	exp := time.Now().Add(time.Hour)
	for _, id := range []string{"hook", "plain"} {
		update(t, s, id, func(j *queue.Job) {
			j.Status = queue.StatusCompleted
			j.ExpiresAt = exp
			if id == "plain" {
				j.Webhook.Delivered = true
			}
		})
	}
	ids := func(jobs []*queue.Job, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range jobs {
			if j.Payload != nil || j.Result != nil {
				t.Fatalf("list returned parts: %+v", j)
			}
			out = append(out, fmt.Sprintf("%s@%d", j.ID, j.Position))
		}
		return fmt.Sprint(out)
	}
	if got := ids(s.List(ctx, queue.StatusQueued)); got != "[q1@0 q2@1]" {
		t.Fatalf("queued %s", got)
	}
	if got := ids(s.List(ctx, queue.StatusRunning)); got != "[run@0]" {
		t.Fatalf("running %s", got)
	}
	if got := ids(s.PendingWebhooks(ctx)); got != "[hook@0]" {
		t.Fatalf("pending webhooks %s", got)
	}
	update(t, s, "hook", func(j *queue.Job) { j.Webhook.Delivered = true })
	if got := ids(s.PendingWebhooks(ctx)); got != "[]" {
		t.Fatalf("pending webhooks after delivery %s", got)
	}
}

// deleteExpiredRemovesEveryPart: an expired job is gone with its payload,
// logs and result; its id can be used again from scratch.
func deleteExpiredRemovesEveryPart(t *testing.T, s queue.Store) {
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	add(t, s, &queue.Job{ID: "old"}, 0)
	add(t, s, &queue.Job{ID: "young"}, 0)
	for _, id := range []string{"old", "young"} {
		claim(t, s)
		update(t, s, id, func(j *queue.Job) {
			j.Status = queue.StatusCompleted
			j.ExpiresAt = exp
			if id == "young" {
				j.ExpiresAt = exp.Add(time.Hour)
			}
			j.Logs = []queue.LogEntry{{Message: "line of " + id}}
			j.Result = json.RawMessage(`{"id":"` + id + `"}`)
		})
	}
	if n, err := s.DeleteExpired(ctx, exp.Add(-time.Second)); err != nil || n != 0 {
		t.Fatalf("premature delete: %d %v", n, err)
	}
	if n, err := s.DeleteExpired(ctx, exp); err != nil || n != 1 {
		t.Fatalf("delete expired: %d %v", n, err)
	}
	if _, err := s.Get(ctx, "old", 0); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("expired job: %v", err)
	}
	if j := get(t, s, "young", queue.PartResult); string(j.Result) != `{"id":"young"}` {
		t.Fatalf("young job: %+v", j)
	}
	add(t, s, &queue.Job{ID: "old", Payload: json.RawMessage(`{"new":true}`)}, 0)
	if j := get(t, s, "old", queue.PartAll); j.Logs != nil || j.Result != nil || string(j.Payload) != `{"new":true}` {
		t.Fatalf("a new job under an expired id inherits parts: %+v", j)
	}
}

// honoursContext: an ended context fails the call with its error.
func honoursContext(t *testing.T, s queue.Store) {
	add(t, s, &queue.Job{ID: "j"}, 0)
	done, cancel := context.WithCancel(ctx)
	cancel()
	calls := map[string]error{}
	_, calls["Get"] = s.Get(done, "j", 0)
	_, calls["Update"] = s.Update(done, "j", func(*queue.Job) error { return nil })
	_, calls["ClaimNext"] = s.ClaimNext(done, time.Now())
	_, calls["QueuedCount"] = s.QueuedCount(done)
	_, calls["List"] = s.List(done, queue.StatusQueued)
	calls["Add"] = s.Add(done, &queue.Job{ID: "k", Payload: json.RawMessage(`{}`)}, 0)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v", name, err)
		}
	}
	if j := get(t, s, "j", 0); !reflect.DeepEqual(j.Status, queue.StatusQueued) {
		t.Fatalf("job changed: %+v", j)
	}
}
