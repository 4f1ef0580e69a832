package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/redisstore"
	"github.com/kleinserve/kleinserve/internal/redistest"
)

// startRedis runs a private redis-server for one test.
func startRedis(t *testing.T) string { return redistest.Start(t) }

func openRedisStore(t *testing.T, url, worker string, lease time.Duration) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(context.Background(), redisstore.Options{URL: url, WorkerID: worker, Lease: lease, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// redisClient is a direct connection to the test's Redis, to look at and
// tamper with the store's keys (layout in package redisstore's doc).
func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Keys of the store's default prefix.
const (
	keyStream0 = "kleinserve:stream:0"
	keyJob     = "kleinserve:job:"
	redisGroup = "workers"
)

// openRedisQueue opens one "process": a store and a Queue on it.
func openRedisQueue(t *testing.T, url, worker string, opts queue.Options) *queue.Queue {
	t.Helper()
	store := openRedisStore(t, url, worker, 2*time.Second)
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	return openTestQueue(t, store, opts)
}

func TestRedisPositionsPriorityLimitsAndDuplicates(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{MaxQueued: 3})
	a := submit(t, api, queue.SubmitRequest{ID: "a"})
	low := submit(t, api, queue.SubmitRequest{ID: "low", Priority: queue.PriorityLow})
	b := submit(t, api, queue.SubmitRequest{ID: "b"})
	if a.Position != 0 || low.Position != 1 || b.Position != 1 {
		t.Fatalf("submit positions a=%d low=%d b=%d", a.Position, low.Position, b.Position)
	}
	for id, pos := range map[string]int{"a": 0, "b": 1, "low": 2} {
		j, err := api.Get(context.Background(), id)
		if err != nil || j.Status != queue.StatusQueued || j.Position != pos {
			t.Fatalf("%s: %+v %v, want position %d", id, j, err, pos)
		}
	}
	if _, err := api.Submit(context.Background(), queue.SubmitRequest{ID: "c", Payload: json.RawMessage(`{}`)}); !errors.Is(err, queue.ErrQueueFull) {
		t.Fatalf("fourth submit: %v, want ErrQueueFull", err)
	}
	if api.Depth() != 3 {
		t.Fatalf("depth %d", api.Depth())
	}
	if _, err := api.Get(context.Background(), "nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}

	// A worker in another "process" runs them in priority order.
	var ran runOrder
	worker := openRedisQueue(t, url, "gpu", queue.Options{})
	worker.Start(ran.process)
	waitStatus(t, api, "low", queue.StatusCompleted)
	if order := ran.ids(); strings.Join(order, ",") != "a,b,low" {
		t.Fatalf("run order %v", order)
	}
	if _, err := api.Submit(context.Background(), queue.SubmitRequest{ID: "a", Payload: json.RawMessage(`{}`)}); !errors.Is(err, queue.ErrDuplicateID) {
		t.Fatalf("duplicate submit: %v", err)
	}
}

// TestRedisLiveLogsAndCancelAcrossProcesses: the API process sees the
// worker's log lines while the job runs, and its cancel stops the run on
// the worker.
func TestRedisLiveLogsAndCancelAcrossProcesses(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	worker := openRedisQueue(t, url, "gpu", queue.Options{})
	g := newGate()
	worker.Start(g.process)

	submit(t, api, queue.SubmitRequest{ID: "done"})
	<-g.started
	j := waitStatus(t, api, "done", queue.StatusRunning)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(fmt.Sprint(j.Logs), "step 1/2") {
		if time.Now().After(deadline) {
			t.Fatalf("live log line not visible to the API process: %+v", j.Logs)
		}
		time.Sleep(10 * time.Millisecond)
		j, _ = api.Get(context.Background(), "done")
	}
	if !strings.Contains(fmt.Sprint(j.Logs), "Running on worker gpu-") || j.Worker == "" || j.Attempts != 1 {
		t.Fatalf("claim not recorded: worker %q attempts %d logs %+v", j.Worker, j.Attempts, j.Logs)
	}
	g.release <- struct{}{}
	j = waitStatus(t, api, "done", queue.StatusCompleted)
	if string(j.Result) != `{"ok":"done"}` || j.Failure != nil || !strings.Contains(fmt.Sprint(j.Logs), "step 2/2") {
		t.Fatalf("completed job: %+v", j)
	}

	submit(t, api, queue.SubmitRequest{ID: "cancel-me"})
	<-g.started
	waitStatus(t, api, "cancel-me", queue.StatusRunning)
	if err := api.Cancel(context.Background(), "cancel-me"); err != nil {
		t.Fatal(err)
	}
	j = waitStatus(t, api, "cancel-me", queue.StatusCompleted)
	if j.Failure == nil || j.Failure.HTTPStatus != 400 {
		t.Fatalf("cancelled running job: %+v", j.Failure)
	}
	if err := api.Cancel(context.Background(), "cancel-me"); !errors.Is(err, queue.ErrAlreadyCompleted) {
		t.Fatalf("second cancel: %v", err)
	}

	// Canceling a queued job removes it from the queue; no worker runs it.
	worker.Shutdown(context.Background())
	submit(t, api, queue.SubmitRequest{ID: "queued"})
	if err := api.Cancel(context.Background(), "queued"); err != nil {
		t.Fatal(err)
	}
	if j := waitStatus(t, api, "queued", queue.StatusCompleted); j.Failure == nil || j.Failure.HTTPStatus != 400 {
		t.Fatalf("cancelled queued job: %+v", j)
	}
	if api.Depth() != 0 {
		t.Fatalf("depth after cancel %d", api.Depth())
	}
}

// TestRedisRedeliveryAfterDeadWorker: a worker claims a job and dies (no
// heartbeats); after the lease another worker takes it over and completes
// it, and the dead worker's late outcome is refused.
func TestRedisRedeliveryAfterDeadWorker(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	submit(t, api, queue.SubmitRequest{ID: "job"})

	ctx := context.Background()
	dead := openRedisStore(t, url, "dead", 2*time.Second)
	// A killed process leaves its entry pending (and Close, which leaves the
	// group only without pending entries, keeps it so).
	defer dead.Close(ctx)
	claimed, err := dead.ClaimNext(ctx, time.Now())
	if err != nil || claimed == nil || claimed.ID != "job" || claimed.Attempts != 1 {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	// A second worker gets nothing while the lease runs.
	other := openRedisStore(t, url, "other", 2*time.Second)
	if j, err := other.ClaimNext(ctx, time.Now()); err != nil || j != nil {
		t.Fatalf("claim during lease: %+v %v", j, err)
	}
	other.Close(ctx)

	survivor := openRedisQueue(t, url, "survivor", queue.Options{})
	survivor.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{"by":"` + job.Worker + `"}`), nil
	})
	j := waitStatus(t, api, "job", queue.StatusCompleted)
	if j.Attempts != 2 || !strings.HasPrefix(j.Worker, "survivor-") || !strings.Contains(string(j.Result), "survivor-") {
		t.Fatalf("redelivered job: attempts %d worker %q result %s", j.Attempts, j.Worker, j.Result)
	}
	if !strings.Contains(fmt.Sprint(j.Logs), "Worker "+claimed.Worker+" stopped responding while running this request; redelivered") {
		t.Fatalf("no redelivery line: %+v", j.Logs)
	}

	// The "dead" worker comes back and tries to record its outcome: the
	// guarded completion refuses, the stored result stays the survivor's.
	late := api.FinishIfHeld(claimed, json.RawMessage(`{"by":"dead"}`))
	if !errors.Is(late, queue.ErrStateChanged) {
		t.Fatalf("late completion: %v, want errStateChanged", late)
	}
	if err := dead.AppendLog(ctx, "job", queue.LogEntry{Time: time.Now(), Level: "INFO", Message: "late"}); !errors.Is(err, queue.ErrNotHeld) {
		t.Fatalf("late log line: %v", err)
	}
	j, _ = api.Get(context.Background(), "job")
	if !strings.Contains(string(j.Result), "survivor-") || strings.Contains(fmt.Sprint(j.Logs), "late") {
		t.Fatalf("result overwritten: %s %+v", j.Result, j.Logs)
	}
}

// TestRedisCompletedJobIsNeverRunAgain: a dispatch entry that points at a
// finished job (a duplicate delivery) is acknowledged and dropped.
func TestRedisCompletedJobIsNeverRunAgain(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	w := openRedisQueue(t, url, "w", queue.Options{})
	var runs sync.Map
	w.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		n, _ := runs.LoadOrStore(job.ID, new(int))
		*n.(*int)++
		return json.RawMessage(`{}`), nil
	})
	submit(t, api, queue.SubmitRequest{ID: "once"})
	waitStatus(t, api, "once", queue.StatusCompleted)

	rdb := redisClient(t, url)
	ctx := context.Background()
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keyStream0, Values: []any{"id", "once"}}).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pending, err := rdb.XPending(ctx, keyStream0, redisGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := rdb.XLen(ctx, keyStream0).Result()
		if pending.Count == 0 && n == 0 {
			break // delivered, acknowledged and deleted
		}
		if time.Now().After(deadline) {
			t.Fatalf("duplicate entry not dropped: pending %d, length %d", pending.Count, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := runs.Load("once"); *n.(*int) != 1 {
		t.Fatalf("job ran %d times", *n.(*int))
	}
}

// TestRedisShutdownRequeuesAtTheFront: a worker interrupted by shutdown
// requeues its job, and another worker takes it at once (no lease wait),
// before jobs submitted after it.
//
// The order proves the "at once": had the requeued entry waited for the
// lease, the new entry of "later" would have been read first.
func TestRedisShutdownRequeuesAtTheFront(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	first := openRedisQueue(t, url, "first", queue.Options{})
	g := newGate()
	first.Start(g.process)
	submit(t, api, queue.SubmitRequest{ID: "long", Ephemeral: true})
	<-g.started
	waitStatus(t, api, "long", queue.StatusRunning)
	submit(t, api, queue.SubmitRequest{ID: "later"})

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	first.Shutdown(expired) // no grace: the run is interrupted
	j, err := api.Get(context.Background(), "long")
	if err != nil || j.Status != queue.StatusQueued || j.Position != 0 {
		t.Fatalf("after shutdown: %+v %v", j, err)
	}

	var ran runOrder
	second := openRedisQueue(t, url, "second", queue.Options{})
	second.Start(ran.process)
	j = waitStatus(t, api, "long", queue.StatusCompleted)
	waitStatus(t, api, "later", queue.StatusCompleted)
	if order := ran.ids(); strings.Join(order, ",") != "long,later" || j.Attempts != 2 || j.Failure != nil {
		t.Fatalf("order %v, attempts %d, failure %+v", order, j.Attempts, j.Failure)
	}
	if !strings.Contains(fmt.Sprint(j.Logs), "Interrupted by server shutdown; requeued") {
		t.Fatalf("no requeue line: %+v", j.Logs)
	}
}

// TestRedisHeartbeatKeepsLongJobs: a job that runs for several leases is
// not redelivered while its worker is alive.
func TestRedisHeartbeatKeepsLongJobs(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	holder := openRedisQueue(t, url, "holder", queue.Options{})
	g := newGate()
	holder.Start(g.process)
	ctx := context.Background()
	thief := openRedisStore(t, url, "thief", 2*time.Second)
	defer thief.Close(ctx)

	submit(t, api, queue.SubmitRequest{ID: "long"})
	<-g.started
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if j, err := thief.ClaimNext(ctx, time.Now()); err != nil || j != nil {
			t.Fatalf("a live worker's job was claimed: %+v %v", j, err)
		}
	}
	g.release <- struct{}{}
	if j := waitStatus(t, api, "long", queue.StatusCompleted); j.Attempts != 1 || j.Failure != nil {
		t.Fatalf("long job: attempts %d failure %+v", j.Attempts, j.Failure)
	}
}

// TestRedisLostClaimStopsTheRun: when the job hash names another worker
// (it took the job over after missed heartbeats), the next renewal stops
// the local run and nothing is recorded by it.
func TestRedisLostClaimStopsTheRun(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	w := openRedisQueue(t, url, "w", queue.Options{})
	causes := make(chan error, 1)
	started := make(chan struct{})
	w.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		close(started)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return json.RawMessage(`{"by":"w"}`), nil // a late success must not be recorded
	})
	submit(t, api, queue.SubmitRequest{ID: "job"})
	<-started
	if err := redisClient(t, url).HSet(context.Background(), keyJob+"job", "worker", "other-1234").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, queue.ErrLeaseLost) {
			t.Fatalf("run stopped with %v, want errLeaseLost", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run was not stopped after losing its claim")
	}
	w.Shutdown(context.Background())
	j, err := api.Get(context.Background(), "job")
	if err != nil || j.Status != queue.StatusRunning || j.Result != nil || j.Worker != "other-1234" {
		t.Fatalf("job after the lost claim: %+v %v", j, err)
	}
}

func TestRedisRetentionAndWebhookIndex(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{Retention: time.Hour})
	submit(t, api, queue.SubmitRequest{ID: "old", WebhookURL: "http://127.0.0.1:1/hook"})
	if err := api.Cancel(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store := api.Store()
	hooks, err := store.PendingWebhooks(ctx)
	if err != nil || len(hooks) != 1 || hooks[0].ID != "old" {
		t.Fatalf("pending webhooks: %+v %v", hooks, err)
	}
	done, err := store.List(ctx, queue.StatusCompleted)
	if err != nil || len(done) != 1 {
		t.Fatalf("completed: %+v %v", done, err)
	}
	ttl, err := redisClient(t, url).TTL(ctx, keyJob+"old").Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("job key TTL %v %v, want about 1h", ttl, err)
	}
	if n, err := store.DeleteExpired(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("premature delete: %d %v", n, err)
	}
	if n, err := store.DeleteExpired(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("delete expired: %d %v", n, err)
	}
	if _, err := api.Get(context.Background(), "old"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("expired job: %v", err)
	}
	if hooks, _ := store.PendingWebhooks(ctx); len(hooks) != 0 {
		t.Fatalf("webhook index keeps a deleted job: %+v", hooks)
	}
}
