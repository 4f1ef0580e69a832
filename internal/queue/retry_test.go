package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/queue"
)

func TestAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		crashes, max int
		want         queue.CrashAction
	}{
		{1, 2, queue.CrashRetryFront},
		{2, 2, queue.CrashRetryBack},
		{3, 2, queue.CrashFail},
		{1, 0, queue.CrashFail},
		{1, 1, queue.CrashRetryFront},
		{2, 1, queue.CrashFail},
		{5, 10, queue.CrashRetryBack},
		{11, 10, queue.CrashFail},
	} {
		if got := queue.AfterCrash(tc.crashes, tc.max); got != tc.want {
			t.Errorf("afterCrash(%d crashes, max %d) = %v, want %v", tc.crashes, tc.max, got, tc.want)
		}
	}
	// Property: below the limit a job is always retried, the first time
	// at the front; above it, never.
	for max := 0; max <= 10; max++ {
		for crashes := 1; crashes <= 12; crashes++ {
			got := queue.AfterCrash(crashes, max)
			if (crashes > max) != (got == queue.CrashFail) || (got == queue.CrashRetryFront) != (crashes == 1 && max >= 1) {
				t.Errorf("afterCrash(%d, %d) = %v", crashes, max, got)
			}
		}
	}
}

// crashWhileRunning claims the first n queued jobs of the bolt database
// at path and "kills the process": the store is closed with them running.
func crashWhileRunning(t *testing.T, path string, n int) []string {
	t.Helper()
	ctx := context.Background()
	store := openBolt(t, path)
	var ids []string
	for range n {
		j, err := store.ClaimNext(ctx, time.Now())
		if err != nil || j == nil {
			t.Fatalf("claim: %+v %v", j, err)
		}
		ids = append(ids, j.ID)
	}
	if err := store.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// reopen opens a Queue on the bolt database at path, as a restarted
// process does, and closes it (with Close: nothing runs) at once.
func reopen(t *testing.T, path string, opts queue.Options, check func(q *queue.Queue)) {
	t.Helper()
	store := openBolt(t, path)
	q := openTestQueue(t, store, opts)
	check(q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func position(t *testing.T, q *queue.Queue, id string) string {
	t.Helper()
	j, err := q.Read(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != queue.StatusQueued {
		return string(j.Status)
	}
	return fmt.Sprint(j.Position)
}

// TestPoisonJobEnds (bolt): a job that was running each time the process
// died goes back to the front after the first crash, behind the waiting
// jobs after the second, and fails for good after the third (two retries
// by default), with a stored error that says so.
func TestPoisonJobEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	reopen(t, path, queue.Options{}, func(q *queue.Queue) {
		for _, id := range []string{"poison", "a", "b"} {
			submit(t, q, queue.SubmitRequest{ID: id})
		}
	})
	crashWhileRunning(t, path, 1)
	reopen(t, path, queue.Options{}, func(q *queue.Queue) {
		if got := position(t, q, "poison") + position(t, q, "a"); got != "01" {
			t.Fatalf("after the first crash: positions poison, a = %s, want 0 1", got)
		}
	})
	crashWhileRunning(t, path, 1)
	reopen(t, path, queue.Options{}, func(q *queue.Queue) {
		got := position(t, q, "a") + position(t, q, "b") + position(t, q, "poison")
		if got != "012" {
			t.Fatalf("after the second crash: positions a, b, poison = %s, want 0 1 2", got)
		}
		j, _ := q.Get(context.Background(), "poison")
		if !strings.Contains(fmt.Sprint(j.Logs), "Server restarted while this request was running (2 times); requeued behind the waiting requests") {
			t.Fatalf("second requeue not logged: %+v", j.Logs)
		}
	})
	// The third crash takes a and b down too: their first.
	if ids := crashWhileRunning(t, path, 3); fmt.Sprint(ids) != "[a b poison]" {
		t.Fatalf("claimed %v", ids)
	}
	reopen(t, path, queue.Options{}, func(q *queue.Queue) {
		j, err := q.Get(context.Background(), "poison")
		if err != nil || j.Status != queue.StatusCompleted || j.Failure == nil || j.Crashes != 3 {
			t.Fatalf("poison job after its third crash: %+v %v", j, err)
		}
		want := "the server stopped 3 times while running this request; not retried again"
		if j.Failure.Message != want || j.Failure.HTTPStatus != 500 {
			t.Fatalf("failure %+v, want %q", j.Failure, want)
		}
		if got := position(t, q, "a") + position(t, q, "b"); got != "01" {
			t.Fatalf("a, b after their first crash: %s", got)
		}
	})
}

// TestNoRetries: with NoRetries the first crash fails the job; the error
// is ErrRetriesExhausted for the API's mapping.
func TestNoRetries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	var described error
	opts := queue.Options{MaxRetries: queue.NoRetries, Describe: func(err error) queue.Failure {
		described = err
		return describe(err)
	}}
	reopen(t, path, opts, func(q *queue.Queue) { submit(t, q, queue.SubmitRequest{ID: "once"}) })
	crashWhileRunning(t, path, 1)
	reopen(t, path, opts, func(q *queue.Queue) {
		j, _ := q.Read(context.Background(), "once", 0)
		if j.Status != queue.StatusCompleted || j.Failure == nil ||
			j.Failure.Message != "the server stopped once while running this request; not retried again" {
			t.Fatalf("job after one crash with no retries: %+v", j)
		}
	})
	if !errors.Is(described, queue.ErrRetriesExhausted) {
		t.Fatalf("described error %v is not ErrRetriesExhausted", described)
	}
}

// TestRedisPoisonJobEnds: on Redis a crash is a claim whose worker stopped
// renewing it. A job redelivered after its second crash waits behind the
// jobs submitted after it; one redelivered past MaxRetries fails.
func TestRedisPoisonJobEnds(t *testing.T) {
	ctx := context.Background()
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	for _, id := range []string{"poison", "a", "b"} {
		submit(t, api, queue.SubmitRequest{ID: id})
	}
	const lease = time.Second // openRedisStore's lease is 2s; dead workers use the minimum
	for i, name := range []string{"dead-1", "dead-2"} {
		dead := openRedisStore(t, url, name, lease)
		j, err := dead.ClaimNext(ctx, time.Now())
		if err != nil || j == nil || j.ID != "poison" || j.Crashes != i || j.Redelivered != (i > 0) {
			t.Fatalf("%s claimed %+v %v", name, j, err)
		}
		defer dead.Close(ctx)
		time.Sleep(lease + 100*time.Millisecond) // it dies: no renewal
	}
	var ran runOrder
	worker := openRedisQueue(t, url, "gpu", queue.Options{})
	worker.Start(ran.process)
	j := waitStatus(t, api, "poison", queue.StatusCompleted)
	waitStatus(t, api, "b", queue.StatusCompleted)
	if order := ran.ids(); fmt.Sprint(order) != "[a b poison]" || j.Failure != nil || j.Crashes != 2 {
		t.Fatalf("run order %v (want the redelivered job last), poison %+v", order, j)
	}
	if !strings.Contains(fmt.Sprint(j.Logs), "A worker stopped while running this request (2 times); requeued behind the waiting requests") {
		t.Fatalf("no requeue line: %+v", j.Logs)
	}

	// With no retries, the first redelivery fails the job.
	worker.Shutdown(ctx)
	submit(t, api, queue.SubmitRequest{ID: "fragile"})
	dead := openRedisStore(t, url, "dead-3", lease)
	defer dead.Close(ctx)
	if j, err := dead.ClaimNext(ctx, time.Now()); err != nil || j == nil || j.ID != "fragile" {
		t.Fatalf("claim: %+v %v", j, err)
	}
	time.Sleep(lease + 100*time.Millisecond)
	strict := openRedisQueue(t, url, "strict", queue.Options{MaxRetries: queue.NoRetries})
	strict.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		t.Errorf("job %s ran", job.ID)
		return nil, nil
	})
	j = waitStatus(t, api, "fragile", queue.StatusCompleted)
	if j.Failure == nil || j.Failure.Message != "the server stopped once while running this request; not retried again" || j.Crashes != 1 {
		t.Fatalf("fragile job: %+v", j)
	}
}
