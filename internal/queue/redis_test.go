package queue

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

	"github.com/kleinserve/kleinserve/internal/redistest"
)

// startRedis runs a private redis-server for one test.
func startRedis(t *testing.T) string { return redistest.Start(t) }

func openRedisStore(t *testing.T, url, worker string, lease time.Duration) *RedisStore {
	t.Helper()
	s, err := OpenRedis(context.Background(), RedisOptions{URL: url, WorkerID: worker, Lease: lease, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openRedisQueue opens one "process": a store and a Queue on it.
func openRedisQueue(t *testing.T, url, worker string, opts Options) *Queue {
	t.Helper()
	store := openRedisStore(t, url, worker, 2*time.Second)
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	return openTestQueue(t, store, opts)
}

func TestRedisPositionsPriorityLimitsAndDuplicates(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", Options{MaxQueued: 3})
	a := submit(t, api, SubmitRequest{ID: "a"})
	low := submit(t, api, SubmitRequest{ID: "low", Priority: PriorityLow})
	b := submit(t, api, SubmitRequest{ID: "b"})
	if a.Position != 0 || low.Position != 1 || b.Position != 1 {
		t.Fatalf("submit positions a=%d low=%d b=%d", a.Position, low.Position, b.Position)
	}
	for id, pos := range map[string]int{"a": 0, "b": 1, "low": 2} {
		j, err := api.Get(context.Background(), id)
		if err != nil || j.Status != StatusQueued || j.Position != pos {
			t.Fatalf("%s: %+v %v, want position %d", id, j, err, pos)
		}
	}
	if _, err := api.Submit(context.Background(), SubmitRequest{ID: "c", Payload: json.RawMessage(`{}`)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("fourth submit: %v, want ErrQueueFull", err)
	}
	if api.Depth() != 3 {
		t.Fatalf("depth %d", api.Depth())
	}
	if _, err := api.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}

	// A worker in another "process" runs them in priority order.
	var ran runOrder
	worker := openRedisQueue(t, url, "gpu", Options{})
	worker.Start(ran.process)
	waitStatus(t, api, "low", StatusCompleted)
	if order := ran.ids(); strings.Join(order, ",") != "a,b,low" {
		t.Fatalf("run order %v", order)
	}
	if _, err := api.Submit(context.Background(), SubmitRequest{ID: "a", Payload: json.RawMessage(`{}`)}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate submit: %v", err)
	}
}

// TestRedisLiveLogsAndCancelAcrossProcesses: the API process sees the
// worker's log lines while the job runs, and its cancel stops the run on
// the worker.
func TestRedisLiveLogsAndCancelAcrossProcesses(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", Options{})
	worker := openRedisQueue(t, url, "gpu", Options{})
	g := newGate()
	worker.Start(g.process)

	submit(t, api, SubmitRequest{ID: "done"})
	<-g.started
	j := waitStatus(t, api, "done", StatusRunning)
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
	j = waitStatus(t, api, "done", StatusCompleted)
	if string(j.Result) != `{"ok":"done"}` || j.Failure != nil || !strings.Contains(fmt.Sprint(j.Logs), "step 2/2") {
		t.Fatalf("completed job: %+v", j)
	}

	submit(t, api, SubmitRequest{ID: "cancel-me"})
	<-g.started
	waitStatus(t, api, "cancel-me", StatusRunning)
	if err := api.Cancel(context.Background(), "cancel-me"); err != nil {
		t.Fatal(err)
	}
	j = waitStatus(t, api, "cancel-me", StatusCompleted)
	if j.Failure == nil || j.Failure.HTTPStatus != 400 {
		t.Fatalf("cancelled running job: %+v", j.Failure)
	}
	if err := api.Cancel(context.Background(), "cancel-me"); !errors.Is(err, ErrAlreadyCompleted) {
		t.Fatalf("second cancel: %v", err)
	}

	// Canceling a queued job removes it from the queue; no worker runs it.
	worker.Shutdown(context.Background())
	submit(t, api, SubmitRequest{ID: "queued"})
	if err := api.Cancel(context.Background(), "queued"); err != nil {
		t.Fatal(err)
	}
	if j := waitStatus(t, api, "queued", StatusCompleted); j.Failure == nil || j.Failure.HTTPStatus != 400 {
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
	api := openRedisQueue(t, url, "api", Options{})
	submit(t, api, SubmitRequest{ID: "job"})

	dead := openRedisStore(t, url, "dead", 2*time.Second)
	defer dead.rdb.Close() // no Close: a killed process leaves its entry pending
	claimed, err := dead.ClaimNext(time.Now())
	if err != nil || claimed == nil || claimed.ID != "job" || claimed.Attempts != 1 {
		t.Fatalf("claim: %+v %v", claimed, err)
	}
	// A second worker gets nothing while the lease runs.
	other := openRedisStore(t, url, "other", 2*time.Second)
	if j, err := other.ClaimNext(time.Now()); err != nil || j != nil {
		t.Fatalf("claim during lease: %+v %v", j, err)
	}
	other.Close()

	survivor := openRedisQueue(t, url, "survivor", Options{})
	survivor.Start(func(ctx context.Context, job *Job, log LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{"by":"` + job.Worker + `"}`), nil
	})
	j := waitStatus(t, api, "job", StatusCompleted)
	if j.Attempts != 2 || !strings.HasPrefix(j.Worker, "survivor-") || !strings.Contains(string(j.Result), "survivor-") {
		t.Fatalf("redelivered job: attempts %d worker %q result %s", j.Attempts, j.Worker, j.Result)
	}
	if !strings.Contains(fmt.Sprint(j.Logs), "Worker "+claimed.Worker+" stopped responding while running this request; redelivered") {
		t.Fatalf("no redelivery line: %+v", j.Logs)
	}

	// The "dead" worker comes back and tries to record its outcome: the
	// guarded completion refuses, the stored result stays the survivor's.
	late := api.finishIf("job", heldBy(claimed), nil, json.RawMessage(`{"by":"dead"}`), nil)
	if !errors.Is(late, errStateChanged) {
		t.Fatalf("late completion: %v, want errStateChanged", late)
	}
	if err := dead.AppendLog("job", LogEntry{Time: time.Now(), Level: "INFO", Message: "late"}); !errors.Is(err, errStateChanged) {
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
	api := openRedisQueue(t, url, "api", Options{})
	w := openRedisQueue(t, url, "w", Options{})
	var runs sync.Map
	w.Start(func(ctx context.Context, job *Job, log LogFunc) (json.RawMessage, error) {
		n, _ := runs.LoadOrStore(job.ID, new(int))
		*n.(*int)++
		return json.RawMessage(`{}`), nil
	})
	submit(t, api, SubmitRequest{ID: "once"})
	waitStatus(t, api, "once", StatusCompleted)

	store := api.store.(*RedisStore)
	ctx := context.Background()
	if err := store.rdb.XAdd(ctx, &redis.XAddArgs{Stream: store.keys.streams[0], Values: []any{"id", "once"}}).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pending, err := store.rdb.XPending(ctx, store.keys.streams[0], redisGroup).Result()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := store.rdb.XLen(ctx, store.keys.streams[0]).Result()
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
	api := openRedisQueue(t, url, "api", Options{})
	first := openRedisQueue(t, url, "first", Options{})
	g := newGate()
	first.Start(g.process)
	submit(t, api, SubmitRequest{ID: "long", Ephemeral: true})
	<-g.started
	waitStatus(t, api, "long", StatusRunning)
	submit(t, api, SubmitRequest{ID: "later"})

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	first.Shutdown(expired) // no grace: the run is interrupted
	j, err := api.Get(context.Background(), "long")
	if err != nil || j.Status != StatusQueued || j.Position != 0 {
		t.Fatalf("after shutdown: %+v %v", j, err)
	}

	var ran runOrder
	second := openRedisQueue(t, url, "second", Options{})
	second.Start(ran.process)
	j = waitStatus(t, api, "long", StatusCompleted)
	waitStatus(t, api, "later", StatusCompleted)
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
	api := openRedisQueue(t, url, "api", Options{})
	holder := openRedisQueue(t, url, "holder", Options{})
	g := newGate()
	holder.Start(g.process)
	thief := openRedisStore(t, url, "thief", 2*time.Second)
	defer thief.Close()

	submit(t, api, SubmitRequest{ID: "long"})
	<-g.started
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if j, err := thief.ClaimNext(time.Now()); err != nil || j != nil {
			t.Fatalf("a live worker's job was claimed: %+v %v", j, err)
		}
	}
	g.release <- struct{}{}
	if j := waitStatus(t, api, "long", StatusCompleted); j.Attempts != 1 || j.Failure != nil {
		t.Fatalf("long job: attempts %d failure %+v", j.Attempts, j.Failure)
	}
}

// TestRedisLostClaimStopsTheRun: when the job hash names another worker
// (it took the job over after missed heartbeats), the next renewal stops
// the local run and nothing is recorded by it.
func TestRedisLostClaimStopsTheRun(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", Options{})
	w := openRedisQueue(t, url, "w", Options{})
	causes := make(chan error, 1)
	started := make(chan struct{})
	w.Start(func(ctx context.Context, job *Job, log LogFunc) (json.RawMessage, error) {
		close(started)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return json.RawMessage(`{"by":"w"}`), nil // a late success must not be recorded
	})
	submit(t, api, SubmitRequest{ID: "job"})
	<-started
	store := api.store.(*RedisStore)
	if err := store.rdb.HSet(context.Background(), store.keys.job("job"), "worker", "other-1234").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, errLeaseLost) {
			t.Fatalf("run stopped with %v, want errLeaseLost", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run was not stopped after losing its claim")
	}
	w.Shutdown(context.Background())
	j, err := api.Get(context.Background(), "job")
	if err != nil || j.Status != StatusRunning || j.Result != nil || j.Worker != "other-1234" {
		t.Fatalf("job after the lost claim: %+v %v", j, err)
	}
}

func TestRedisRetentionAndWebhookIndex(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", Options{Retention: time.Hour})
	submit(t, api, SubmitRequest{ID: "old", WebhookURL: "http://127.0.0.1:1/hook"})
	if err := api.Cancel(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	store := api.store.(*RedisStore)
	hooks, err := store.PendingWebhooks()
	if err != nil || len(hooks) != 1 || hooks[0].ID != "old" {
		t.Fatalf("pending webhooks: %+v %v", hooks, err)
	}
	done, err := store.List(StatusCompleted)
	if err != nil || len(done) != 1 {
		t.Fatalf("completed: %+v %v", done, err)
	}
	ttl, err := store.rdb.TTL(context.Background(), store.keys.job("old")).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("job key TTL %v %v, want about 1h", ttl, err)
	}
	if n, err := store.DeleteExpired(time.Now()); err != nil || n != 0 {
		t.Fatalf("premature delete: %d %v", n, err)
	}
	if n, err := store.DeleteExpired(time.Now().Add(2 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("delete expired: %d %v", n, err)
	}
	if _, err := api.Get(context.Background(), "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired job: %v", err)
	}
	if hooks, _ := store.PendingWebhooks(); len(hooks) != 0 {
		t.Fatalf("webhook index keeps a deleted job: %+v", hooks)
	}
}

func TestRedisJobFieldsRoundTrip(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	in := &Job{
		ID: "x", Endpoint: "e", Payload: json.RawMessage(`{"seed":9007199254740991}`), Priority: PriorityLow,
		Ephemeral: true, Status: StatusCompleted, QueueKey: queueKey(PriorityLow, 258), SubmittedAt: now,
		StartedAt: now.Add(time.Second), FinishedAt: now.Add(2 * time.Second), ExpiresAt: now.Add(time.Hour),
		StartDeadline: now.Add(time.Minute), CancelRequested: true, Attempts: 3, Worker: "w-1",
		Result: json.RawMessage(`{"ok":true}`), Failure: &Failure{HTTPStatus: 400, Body: json.RawMessage(`{}`), Message: "m", Type: "t"},
		Webhook: &Webhook{URL: "http://h", Attempts: 2}, Logs: []LogEntry{{Time: now, Level: "INFO", Message: "hi"}},
	}
	fields, err := jobFields(in)
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{}
	for i := 0; i < len(fields); i += 2 {
		h[fields[i].(string)] = fields[i+1].(string)
	}
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
	if got, want := queueScore(queueKey(PriorityLow, 5)), float64(uint64(1)<<44|5); got != want {
		t.Fatalf("queue score %v, want %v", got, want)
	}
}

func TestOpenRedisErrors(t *testing.T) {
	if _, err := OpenRedis(context.Background(), RedisOptions{URL: "http://x"}); err == nil {
		t.Fatal("bad scheme accepted")
	}
	if _, err := OpenRedis(context.Background(), RedisOptions{URL: "redis://127.0.0.1:1/0", Lease: 10 * time.Millisecond}); err == nil {
		t.Fatal("tiny lease accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := OpenRedis(ctx, RedisOptions{URL: "redis://127.0.0.1:1/0"}); err == nil {
		t.Fatal("unreachable redis accepted")
	}
}
