package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
)

// describe is a test DescribeFunc: the status code tells which error it was.
func describe(err error) queue.Failure {
	code := 500
	switch {
	case errors.Is(err, queue.ErrCanceled):
		code = 400
	case errors.Is(err, queue.ErrStartTimeout):
		code = 504
	case errors.Is(err, queue.ErrClosed), errors.Is(err, queue.ErrInterrupted):
		code = 503
	}
	body, _ := json.Marshal(map[string]string{"detail": err.Error()})
	return queue.Failure{HTTPStatus: code, Body: body, Message: err.Error(), Type: fmt.Sprint(code)}
}

// fakeClock is a settable clock for retention and deadline tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openQueue(t *testing.T, path string, opts queue.Options) *queue.Queue {
	t.Helper()
	return openTestQueue(t, openBolt(t, path), opts)
}

// openBolt opens the bolt store at path.
func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	store, err := boltstore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// openTestQueue opens a Queue on store with the tests' failure describer
// and a silent logger, closed when the test ends.
func openTestQueue(t *testing.T, store queue.Store, opts queue.Options) *queue.Queue {
	t.Helper()
	if opts.Describe == nil {
		opts.Describe = describe
	}
	opts.Logger = zerolog.Nop()
	q, err := queue.Open(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// gate is a processor whose jobs block until released (or canceled).
type gate struct {
	started chan string
	release chan struct{}
	ran     atomic.Int32
}

func newGate() *gate {
	return &gate{started: make(chan string, 16), release: make(chan struct{})}
}

func (g *gate) process(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
	g.ran.Add(1)
	log("INFO", "step 1/2")
	g.started <- job.ID
	select {
	case <-g.release:
		log("INFO", "step 2/2")
		return json.RawMessage(`{"ok":"` + job.ID + `"}`), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("processor stopped: %w", context.Cause(ctx))
	}
}

// waitStatus polls until the job reaches a status, using Changed.
func waitStatus(t *testing.T, q *queue.Queue, id string, want queue.Status) *queue.Job {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		ch := q.Changed()
		j, err := q.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == want {
			return j
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("job %s stuck in %s, want %s", id, j.Status, want)
		}
	}
}

func submit(t *testing.T, q *queue.Queue, req queue.SubmitRequest) *queue.Job {
	t.Helper()
	if req.Payload == nil {
		req.Payload = json.RawMessage(`{"prompt":"x"}`)
	}
	j, err := q.Submit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestPositionsAndPriority(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	a := submit(t, q, queue.SubmitRequest{ID: "a"})
	low := submit(t, q, queue.SubmitRequest{ID: "low", Priority: queue.PriorityLow})
	b := submit(t, q, queue.SubmitRequest{ID: "b"})
	if a.Position != 0 || low.Position != 1 || b.Position != 1 {
		t.Fatalf("submit positions a=%d low=%d b=%d", a.Position, low.Position, b.Position)
	}
	want := map[string]int{"a": 0, "b": 1, "low": 2}
	for id, pos := range want {
		j, err := q.Get(context.Background(), id)
		if err != nil || j.Status != queue.StatusQueued || j.Position != pos {
			t.Fatalf("%s: %+v %v, want position %d", id, j, err, pos)
		}
	}
	if q.Depth() != 3 {
		t.Fatalf("depth %d", q.Depth())
	}
	if _, err := q.Submit(context.Background(), queue.SubmitRequest{ID: "a"}); !errors.Is(err, queue.ErrDuplicateID) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := q.Get(context.Background(), "nope"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestQueueFull(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{MaxQueued: 2})
	submit(t, q, queue.SubmitRequest{})
	submit(t, q, queue.SubmitRequest{})
	if _, err := q.Submit(context.Background(), queue.SubmitRequest{Payload: json.RawMessage(`{}`)}); !errors.Is(err, queue.ErrQueueFull) {
		t.Fatalf("want ErrQueueFull, got %v", err)
	}
}

func TestRunToCompletionWithLogs(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{Workers: 2})
	g := newGate()
	q.Start(g.process)
	j := submit(t, q, queue.SubmitRequest{ID: "job"})
	<-g.started
	running := waitStatus(t, q, j.ID, queue.StatusRunning)
	if len(running.Logs) != 1 || running.Logs[0].Message != "step 1/2" {
		t.Fatalf("live logs %+v", running.Logs)
	}
	close(g.release)
	done := waitStatus(t, q, j.ID, queue.StatusCompleted)
	if string(done.Result) != `{"ok":"job"}` || done.Failure != nil || len(done.Logs) != 2 {
		t.Fatalf("completed job %+v", done)
	}
	if done.StartedAt.IsZero() || done.FinishedAt.IsZero() || done.Attempts != 1 {
		t.Fatalf("timestamps/attempts not recorded: %+v", done)
	}
	if err := q.Cancel(context.Background(), j.ID); !errors.Is(err, queue.ErrAlreadyCompleted) {
		t.Fatalf("cancel completed: %v", err)
	}
}

func TestProcessorErrorIsDescribed(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return nil, errors.New("boom")
	})
	j := submit(t, q, queue.SubmitRequest{})
	done := waitStatus(t, q, j.ID, queue.StatusCompleted)
	if done.Failure == nil || done.Failure.HTTPStatus != 500 || done.Failure.Message != "boom" {
		t.Fatalf("failure %+v", done.Failure)
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{Workers: 1})
	g := newGate()
	q.Start(g.process)
	first := submit(t, q, queue.SubmitRequest{ID: "first"})
	second := submit(t, q, queue.SubmitRequest{ID: "second"})
	third := submit(t, q, queue.SubmitRequest{ID: "third"})
	<-g.started // first is running, the others wait

	if err := q.Cancel(context.Background(), second.ID); err != nil {
		t.Fatal(err)
	}
	c := waitStatus(t, q, second.ID, queue.StatusCompleted)
	if c.Failure == nil || c.Failure.HTTPStatus != 400 || c.StartedAt != (time.Time{}) {
		t.Fatalf("canceled queued job %+v", c)
	}
	if j, _ := q.Get(context.Background(), third.ID); j.Position != 0 {
		t.Fatalf("third should move to position 0, is %d", j.Position)
	}

	if err := q.Cancel(context.Background(), first.ID); err != nil {
		t.Fatal(err)
	}
	c = waitStatus(t, q, first.ID, queue.StatusCompleted)
	if c.Failure == nil || c.Failure.HTTPStatus != 400 || !c.CancelRequested {
		t.Fatalf("canceled running job %+v", c)
	}
	// The worker moves on to the third job.
	if id := <-g.started; id != third.ID {
		t.Fatalf("next job %s", id)
	}
	close(g.release)
	waitStatus(t, q, third.ID, queue.StatusCompleted)
	if err := q.Cancel(context.Background(), "missing"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
	if n := g.ran.Load(); n != 2 {
		t.Fatalf("processor ran %d times, want 2 (canceled queued job must not run)", n)
	}
}

func TestDurableAcrossReopenAndRequeueOfInProgress(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	store := openBolt(t, path)
	q, err := queue.Open(store, queue.Options{Describe: describe, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"j1", "j2", "j3", "j4"} {
		submit(t, q, queue.SubmitRequest{ID: id})
	}
	submit(t, q, queue.SubmitRequest{ID: "eph", Ephemeral: true})
	// Simulate a crash mid-job: claim j1 directly and never finish it.
	claimed, err := store.ClaimNext(ctx, time.Now())
	if err != nil || claimed.ID != "j1" {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	// Close without Shutdown's requeue path: close the store under it.
	q.StopBackground()
	if err := store.Close(ctx); err != nil {
		t.Fatal(err)
	}

	q2 := openQueue(t, path, queue.Options{})
	j1, err := q2.Get(context.Background(), "j1")
	if err != nil || j1.Status != queue.StatusQueued || j1.Position != 0 {
		t.Fatalf("in-progress job not requeued at the front: %+v %v", j1, err)
	}
	if len(j1.Logs) != 1 || j1.Logs[0].Level != "WARN" {
		t.Fatalf("requeue not logged: %+v", j1.Logs)
	}
	for i, id := range []string{"j2", "j3", "j4"} {
		j, err := q2.Get(context.Background(), id)
		if err != nil || j.Status != queue.StatusQueued || j.Position != i+1 {
			t.Fatalf("%s after reopen: %+v %v", id, j, err)
		}
	}
	eph, _ := q2.Get(context.Background(), "eph")
	if eph.Status != queue.StatusCompleted || eph.Failure == nil || eph.Failure.HTTPStatus != 503 {
		t.Fatalf("ephemeral job should fail after restart: %+v", eph)
	}

	var ran runOrder
	q2.Start(ran.process)
	for _, id := range []string{"j1", "j2", "j3", "j4"} {
		waitStatus(t, q2, id, queue.StatusCompleted)
	}
	if order := ran.ids(); fmt.Sprint(order) != "[j1 j2 j3 j4]" {
		t.Fatalf("run order %v", order)
	}
	j1, _ = q2.Get(context.Background(), "j1")
	if j1.Attempts != 2 {
		t.Fatalf("j1 attempts %d, want 2", j1.Attempts)
	}
}

func TestCancelRequestedSurvivesCrash(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	store := openBolt(t, path)
	if err := store.Add(ctx, &queue.Job{ID: "c", Payload: json.RawMessage(`{}`)}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ClaimNext(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(ctx, "c", func(j *queue.Job) error { j.CancelRequested = true; return nil }); err != nil {
		t.Fatal(err)
	}
	store.Close(ctx)
	q := openQueue(t, path, queue.Options{})
	j, _ := q.Get(context.Background(), "c")
	if j.Status != queue.StatusCompleted || j.Failure == nil || j.Failure.HTTPStatus != 400 {
		t.Fatalf("canceled job requeued after crash: %+v", j)
	}
}

func TestShutdownRequeuesRunningJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	store := openBolt(t, path)
	q, err := queue.Open(store, queue.Options{Describe: describe, Logger: zerolog.Nop(), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	g := newGate()
	q.Start(g.process)
	durable := submit(t, q, queue.SubmitRequest{ID: "durable"})
	eph := submit(t, q, queue.SubmitRequest{ID: "eph", Ephemeral: true})
	waiting := submit(t, q, queue.SubmitRequest{ID: "waiting-eph", Ephemeral: true})
	<-g.started
	<-g.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Submit(context.Background(), queue.SubmitRequest{Payload: json.RawMessage(`{}`)}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("submit after shutdown: %v", err)
	}
	for id, want := range map[string]queue.Status{durable.ID: queue.StatusQueued, eph.ID: queue.StatusCompleted, waiting.ID: queue.StatusCompleted} {
		j, err := q.Get(context.Background(), id)
		if err != nil || j.Status != want {
			t.Fatalf("%s after shutdown: %+v %v, want %s", id, j, err, want)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openQueue(t, path, queue.Options{})
	j, _ := q2.Get(context.Background(), durable.ID)
	if j.Status != queue.StatusQueued || j.Position != 0 {
		t.Fatalf("requeued job lost: %+v", j)
	}
}

func TestShutdownWaitsForRunningJobs(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	g := newGate()
	q.Start(g.process)
	j := submit(t, q, queue.SubmitRequest{})
	<-g.started
	go func() {
		// Release once Shutdown is draining; the job must then complete.
		for !q.IsDraining() {
			time.Sleep(time.Millisecond)
		}
		close(g.release)
	}()
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := q.Get(context.Background(), j.ID)
	if got.Status != queue.StatusCompleted || got.Failure != nil {
		t.Fatalf("job did not finish during grace period: %+v", got)
	}
}

func TestRetentionExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{Retention: time.Hour, Now: clock.Now})
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{}`), nil
	})
	j := submit(t, q, queue.SubmitRequest{})
	waitStatus(t, q, j.ID, queue.StatusCompleted)
	q.Sweep()
	if _, err := q.Get(context.Background(), j.ID); err != nil {
		t.Fatalf("expired too early: %v", err)
	}
	clock.Add(time.Hour + time.Second)
	q.Sweep()
	if _, err := q.Get(context.Background(), j.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("want ErrNotFound after retention, got %v", err)
	}
}

func TestStartDeadline(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	// No workers started: the job can only leave the queue by its deadline.
	j := submit(t, q, queue.SubmitRequest{StartDeadline: time.Now().Add(20 * time.Millisecond)})
	done := waitStatus(t, q, j.ID, queue.StatusCompleted)
	if done.Failure == nil || done.Failure.HTTPStatus != 504 {
		t.Fatalf("deadline failure %+v", done.Failure)
	}
	// A job whose deadline passed before a worker claims it also fails.
	clock := &fakeClock{t: time.Now()}
	q2 := openQueue(t, filepath.Join(t.TempDir(), "q2.db"), queue.Options{Now: clock.Now})
	late := submit(t, q2, queue.SubmitRequest{StartDeadline: clock.Now().Add(time.Minute)})
	clock.Add(2 * time.Minute)
	var ran atomic.Bool
	q2.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		ran.Store(true)
		return json.RawMessage(`{}`), nil
	})
	done = waitStatus(t, q2, late.ID, queue.StatusCompleted)
	if done.Failure == nil || done.Failure.HTTPStatus != 504 || ran.Load() {
		t.Fatalf("late job ran or did not fail: %+v ran=%v", done.Failure, ran.Load())
	}
}

func TestWebhookRetriesThenDelivers(t *testing.T) {
	var calls atomic.Int32
	bodies := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
			t.Errorf("bad webhook request %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		bodies <- b
	}))
	defer srv.Close()
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{
		Webhook: queue.WebhookOptions{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond}})
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return json.RawMessage(`{"images":[]}`), nil
	})
	j := submit(t, q, queue.SubmitRequest{ID: "hook", WebhookURL: srv.URL})
	select {
	case b := <-bodies:
		want := `{"request_id":"hook","gateway_request_id":"hook","status":"OK","payload":{"images":[]},"error":null}`
		if string(b) != want {
			t.Fatalf("webhook body\n got %s\nwant %s", b, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("webhook never delivered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := q.Get(context.Background(), j.ID)
		if got.Webhook.Delivered {
			if got.Webhook.Attempts != 3 {
				t.Fatalf("attempts %d", got.Webhook.Attempts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery not recorded: %+v", got.Webhook)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWebhookGivesUpAndReportsErrors(t *testing.T) {
	var calls atomic.Int32
	var last atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last.Store(string(b))
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{
		Webhook: queue.WebhookOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}})
	q.Start(func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		return nil, errors.New("engine exploded")
	})
	j := submit(t, q, queue.SubmitRequest{ID: "fail", WebhookURL: srv.URL})
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := q.Get(context.Background(), j.ID)
		if got.Webhook != nil && got.Webhook.GaveUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never gave up: %+v", got.Webhook)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if calls.Load() != 3 {
		t.Fatalf("calls %d, want 3", calls.Load())
	}
	want := `{"request_id":"fail","gateway_request_id":"fail","status":"ERROR","payload":{"detail":"engine exploded"},"error":"Invalid status code: 500"}`
	if last.Load().(string) != want {
		t.Fatalf("error webhook\n got %s\nwant %s", last.Load(), want)
	}
}

func TestPendingWebhookResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	delivered := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered <- r.Header.Get("X-Fal-Webhook-Request-Id")
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "q.db")
	store := openBolt(t, path)
	// A finished job whose webhook was never sent (the process died).
	job := &queue.Job{ID: "resume", Payload: json.RawMessage(`{}`), Webhook: &queue.Webhook{URL: srv.URL}}
	if err := store.Add(ctx, job, 0); err != nil {
		t.Fatal(err)
	}
	_, err := store.Update(ctx, "resume", func(j *queue.Job) error {
		j.Status = queue.StatusCompleted
		j.Result = json.RawMessage(`{}`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	store.Close(ctx)
	openQueue(t, path, queue.Options{})
	select {
	case id := <-delivered:
		if id != "resume" {
			t.Fatalf("delivered %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending webhook not resumed")
	}
}

func TestBackoffIsBoundedAndGrows(t *testing.T) {
	opts := queue.WebhookOptions{BaseDelay: time.Second, MaxDelay: 8 * time.Second}
	prevMax := time.Duration(0)
	for attempts := 1; attempts <= 12; attempts++ {
		d := queue.Backoff(opts, attempts)
		nominal := min(time.Second<<(attempts-1), 8*time.Second)
		if d < nominal*8/10 || d > nominal*12/10 {
			t.Fatalf("attempt %d: %v outside ±20%% of %v", attempts, d, nominal)
		}
		if nominal < prevMax {
			t.Fatal("backoff shrank")
		}
		prevMax = nominal
	}
}

// runOrder is a Processor that records the ids of the jobs it ran, in
// order, and returns {}.
type runOrder struct {
	mu    sync.Mutex
	order []string
}

func (r *runOrder) process(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, job.ID)
	return json.RawMessage(`{}`), nil
}

func (r *runOrder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}
