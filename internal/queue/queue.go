package queue

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// errShutdown is the cancel cause of jobs interrupted by Shutdown; they are
// requeued rather than failed.
var errShutdown = errors.New("queue: server shutting down")

// errLeaseLost is the cancel cause of a job this process stopped holding
// (a SharedStore redelivered it to another worker); its outcome is the new
// holder's to record.
var errLeaseLost = errors.New("queue: job was redelivered to another worker")

// errStateChanged aborts an Update whose job left the expected state
// meanwhile (claimed by a worker, finished, requeued).
var errStateChanged = errors.New("queue: job changed state meanwhile")

// Processor runs one job. It must return promptly once ctx is canceled.
// The returned bytes are stored as the job's result.
type Processor func(ctx context.Context, job *Job, log LogFunc) (json.RawMessage, error)

// LogFunc appends a line to the running job's log.
type LogFunc func(level, message string)

// DescribeFunc turns an error into the stored failure of a job. The API
// supplies it so that stored failures use the same mapping as live ones.
type DescribeFunc func(error) Failure

// Options configures a Queue. Zero values get the documented defaults.
type Options struct {
	// Workers is the number of jobs run at once (default 1).
	Workers int
	// MaxQueued bounds the number of waiting jobs (0: unbounded).
	MaxQueued int
	// Retention is how long finished jobs are kept (default 24h).
	Retention time.Duration
	// SweepInterval is how often expired jobs are deleted (default
	// Retention/10, clamped to [1s, 1m]).
	SweepInterval time.Duration
	// Describe maps job errors to failures (required).
	Describe DescribeFunc
	// Webhook configures webhook delivery.
	Webhook WebhookOptions
	// Logger receives queue events.
	Logger zerolog.Logger
	// Now is the clock (default time.Now); tests replace it.
	Now func() time.Time
	// PollInterval applies with a SharedStore: idle workers look for work
	// (a dead worker's job becomes claimable without any notification) and
	// waiters on Changed re-read state this often, so a missed notification
	// delays but never loses anything (default 1s).
	PollInterval time.Duration
}

// SubmitRequest describes a new job.
type SubmitRequest struct {
	// ID is the request id; a random UUID when empty.
	ID       string
	Endpoint string
	Payload  json.RawMessage
	Priority Priority
	// StartDeadline, when set, fails the job with ErrStartTimeout if no
	// worker has started it by then.
	StartDeadline time.Time
	// WebhookURL receives the result when the job finishes.
	WebhookURL string
	// Ephemeral marks jobs whose client waits on an open connection.
	Ephemeral bool
}

// Queue runs jobs from a Store on a worker pool.
type Queue struct {
	store Store
	opts  Options
	log   zerolog.Logger
	// shared is store when several processes share it, else nil.
	shared SharedStore

	// submitMu orders Submit against Shutdown: no job is added once
	// draining is set, so Shutdown sees every ephemeral job it must fail.
	submitMu sync.RWMutex

	mu       sync.Mutex
	running  map[string]*runningJob
	pending  map[string]bool // cancels that arrived before the worker registered
	changed  chan struct{}   // closed and replaced on every change
	draining bool
	started  bool
	closed   bool
	deadline deadlineHeap

	wake         chan struct{} // pokes idle workers
	stopWorkers  chan struct{} // closed by Shutdown
	janitorPoke  chan struct{}
	workers      sync.WaitGroup
	background   sync.WaitGroup
	stopBg       context.CancelFunc
	webhooks     *webhookDispatcher
	shutdownOnce sync.Once
	watcher      sync.WaitGroup     // the SharedStore watch loop
	stopWatch    context.CancelFunc // ends it; called by Close
}

type runningJob struct {
	cancel context.CancelCauseFunc
	logs   []LogEntry
}

// Open recovers the store's state and starts the janitor and the webhook
// dispatcher. Jobs found running (the previous process died or was killed)
// are requeued at the front; ephemeral ones are failed. Workers start with
// Start.
func Open(store Store, opts Options) (*Queue, error) {
	if opts.Describe == nil {
		return nil, errors.New("queue: Options.Describe is required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = min(max(opts.Retention/10, time.Second), time.Minute)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	q := &Queue{
		store:       store,
		opts:        opts,
		log:         opts.Logger,
		running:     map[string]*runningJob{},
		pending:     map[string]bool{},
		changed:     make(chan struct{}),
		wake:        make(chan struct{}, 1),
		stopWorkers: make(chan struct{}),
		janitorPoke: make(chan struct{}, 1),
	}
	q.shared, _ = store.(SharedStore)
	q.webhooks = newWebhookDispatcher(q, opts.Webhook)
	if err := q.recover(); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	q.stopBg = cancel
	hooks, err := store.PendingWebhooks()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("queue: list pending webhooks: %w", err)
	}
	for _, j := range hooks {
		q.webhooks.schedule(j.ID, j.Webhook.NextAttempt)
	}
	q.background.Add(2)
	go func() { defer q.background.Done(); q.janitor(bg) }()
	go func() { defer q.background.Done(); q.webhooks.run(bg) }()
	if q.shared != nil {
		// The watch loop outlives Shutdown: waiters (synchronous runs on an
		// API process) keep hearing of jobs other processes finish until Close.
		watchCtx, stopWatch := context.WithCancel(context.Background())
		q.stopWatch = stopWatch
		q.watcher.Add(1)
		go func() { defer q.watcher.Done(); q.watch(watchCtx) }()
	}
	return q, nil
}

// watch relays a SharedStore's events to this process: wake-ups of idle
// workers, cancels of jobs running here, and Changed notifications. A
// ticker covers notifications lost while the connection was down.
func (q *Queue) watch(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := q.shared.Watch(ctx, q.onEvent); err != nil && ctx.Err() == nil {
				q.log.Error().Err(err).Msg("watch shared queue; retrying")
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
		}
	}()
	tick := time.NewTicker(q.opts.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-tick.C:
			poke(q.wake)
			q.notify()
		}
	}
}

// onEvent handles one SharedStore event; it never blocks.
func (q *Queue) onEvent(e Event) {
	switch e.Kind {
	case EventQueued:
		poke(q.wake)
	case EventCancel, EventLost:
		cause := ErrCanceled
		if e.Kind == EventLost {
			cause = errLeaseLost
		}
		q.mu.Lock()
		if r := q.running[e.ID]; r != nil {
			r.cancel(cause)
		}
		q.mu.Unlock()
	}
	q.notify()
}

// recover requeues interrupted jobs and loads start deadlines. With a
// SharedStore, jobs running elsewhere belong to live workers or are
// redelivered by the store, and queued ephemeral jobs may have clients on
// other processes: only the deadlines are loaded.
func (q *Queue) recover() error {
	var running []*Job
	if q.shared == nil {
		var err error
		if running, err = q.store.List(StatusRunning); err != nil {
			return fmt.Errorf("queue: list running jobs: %w", err)
		}
	}
	requeued := 0
	for _, j := range running {
		var err error
		switch {
		case j.CancelRequested:
			err = q.finish(j.ID, StatusRunning, nil, nil, ErrCanceled)
		case j.Ephemeral:
			err = q.finish(j.ID, StatusRunning, nil, nil, ErrInterrupted)
		default:
			_, err = q.store.Update(j.ID, func(j *Job) error {
				j.Status = StatusQueued
				j.Logs = append(j.Logs, LogEntry{Time: q.opts.Now(), Level: "WARN",
					Message: "Server restarted while this request was running; requeued"})
				return nil
			})
			requeued++
		}
		if err != nil {
			return fmt.Errorf("queue: recover job %s: %w", j.ID, err)
		}
	}
	queued, err := q.store.List(StatusQueued)
	if err != nil {
		return fmt.Errorf("queue: list queued jobs: %w", err)
	}
	failed := 0
	for _, j := range queued {
		if j.Ephemeral && q.shared == nil {
			if err := q.finish(j.ID, StatusQueued, nil, nil, ErrInterrupted); err != nil && !errors.Is(err, errStateChanged) {
				return fmt.Errorf("queue: recover job %s: %w", j.ID, err)
			}
			failed++
			continue
		}
		if !j.StartDeadline.IsZero() {
			heap.Push(&q.deadline, deadlineEntry{at: j.StartDeadline, id: j.ID})
		}
	}
	q.log.Info().Int("requeued", requeued).Int("queued", len(queued)-failed).
		Int("interrupted_ephemeral", failed).Msg("queue recovered")
	return nil
}

// Start launches the workers. Jobs submitted before Start wait durably.
func (q *Queue) Start(p Processor) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started || q.draining {
		return
	}
	q.started = true
	for i := 0; i < q.opts.Workers; i++ {
		q.workers.Add(1)
		go func() { defer q.workers.Done(); q.work(p) }()
	}
}

// Submit durably enqueues a job and returns it with its queue position.
func (q *Queue) Submit(ctx context.Context, req SubmitRequest) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.submitMu.RLock()
	defer q.submitMu.RUnlock()
	if q.isDraining() {
		return nil, ErrClosed
	}
	if req.ID == "" {
		req.ID = uuid.NewString()
	}
	job := &Job{
		ID:            req.ID,
		Endpoint:      req.Endpoint,
		Payload:       req.Payload,
		Priority:      req.Priority,
		Ephemeral:     req.Ephemeral,
		SubmittedAt:   q.opts.Now(),
		StartDeadline: req.StartDeadline,
	}
	if req.WebhookURL != "" {
		job.Webhook = &Webhook{URL: req.WebhookURL}
	}
	if err := q.store.Add(job, q.opts.MaxQueued); err != nil {
		return nil, fmt.Errorf("queue: submit: %w", err)
	}
	q.mu.Lock()
	if !job.StartDeadline.IsZero() {
		heap.Push(&q.deadline, deadlineEntry{at: job.StartDeadline, id: job.ID})
		poke(q.janitorPoke)
	}
	q.notifyLocked()
	q.mu.Unlock()
	poke(q.wake)
	return job, nil
}

// Get returns a job with its current position and, while it runs, its live
// log lines.
func (q *Queue) Get(ctx context.Context, id string) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		j, err := q.store.Get(id)
		if err != nil {
			return nil, err
		}
		if j.Status != StatusRunning {
			return j, nil
		}
		q.mu.Lock()
		r := q.running[id]
		if r != nil {
			j.Logs = append(j.Logs, r.logs...)
		}
		q.mu.Unlock()
		// Running in the store but unknown in memory: either the worker has
		// not registered it yet (no live lines exist) or it finished between
		// the two reads; one re-read tells which, so lines never go missing.
		// A SharedStore holds live lines itself.
		if r != nil || attempt > 0 || q.shared != nil {
			return j, nil
		}
	}
}

// Cancel cancels a queued job at once, or asks a running one to stop (its
// context is canceled; the engine stops at its next step). It returns
// ErrAlreadyCompleted or ErrNotFound when there is nothing to cancel.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		j, err := q.store.Get(id)
		if err != nil {
			return err
		}
		switch j.Status {
		case StatusCompleted:
			return ErrAlreadyCompleted
		case StatusQueued:
			err := q.finish(id, StatusQueued, nil, nil, ErrCanceled)
			if errors.Is(err, errStateChanged) {
				continue // a worker claimed it meanwhile: cancel it as running
			}
			return err
		case StatusRunning:
			_, err := q.store.Update(id, func(j *Job) error {
				if j.Status != StatusRunning {
					return errStateChanged
				}
				j.CancelRequested = true
				return nil
			})
			if errors.Is(err, errStateChanged) {
				continue // it finished or was requeued meanwhile
			}
			if err != nil {
				return fmt.Errorf("queue: cancel %s: %w", id, err)
			}
			// With a SharedStore the holder may be another process: the
			// store tells it (EventCancel), and run re-reads the flag.
			q.mu.Lock()
			if r := q.running[id]; r != nil {
				r.cancel(ErrCanceled)
			} else if q.shared == nil {
				q.pending[id] = true
			}
			q.mu.Unlock()
			return nil
		}
		return fmt.Errorf("queue: job %s has unknown status %q", id, j.Status)
	}
}

// Changed returns a channel that is closed at the next change of any job
// (state, position, log line). Take it before reading state, then wait.
func (q *Queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

// Depth is the number of queued jobs.
func (q *Queue) Depth() int {
	n, err := q.store.QueuedCount()
	if err != nil {
		q.log.Error().Err(err).Msg("queue depth")
		return 0
	}
	return n
}

// Running is the number of jobs being processed.
func (q *Queue) Running() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.running)
}

// Shutdown stops taking and starting jobs. Running jobs may finish until ctx
// is done; then they are canceled and requeued (ephemeral ones fail). Queued
// ephemeral jobs fail at once, since their clients are being disconnected.
// Pending webhooks stay stored and resume at the next Open.
func (q *Queue) Shutdown(ctx context.Context) error {
	var err error
	q.shutdownOnce.Do(func() { err = q.shutdown(ctx) })
	return err
}

func (q *Queue) shutdown(ctx context.Context) error {
	q.submitMu.Lock()
	q.mu.Lock()
	q.draining = true
	q.mu.Unlock()
	q.submitMu.Unlock()
	close(q.stopWorkers)

	// Queued ephemeral jobs fail with their clients; with a SharedStore
	// their clients may be on other processes and the jobs stay.
	var queued []*Job
	if q.shared == nil {
		var err error
		if queued, err = q.store.List(StatusQueued); err != nil {
			q.log.Error().Err(err).Msg("list queued jobs at shutdown")
		}
	}
	for _, j := range queued {
		if j.Ephemeral {
			if err := q.finish(j.ID, StatusQueued, nil, nil, ErrClosed); err != nil && !errors.Is(err, errStateChanged) {
				q.log.Error().Err(err).Str("request_id", j.ID).Msg("fail queued ephemeral job")
			}
		}
	}

	done := make(chan struct{})
	go func() { q.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.mu.Lock()
		n := len(q.running)
		for _, r := range q.running {
			r.cancel(errShutdown)
		}
		q.mu.Unlock()
		q.log.Warn().Int("jobs", n).Msg("shutdown grace period over; interrupting running jobs")
		<-done
	}
	q.stopBg()
	q.background.Wait()
	return nil
}

// Close shuts down without a grace period (if Shutdown was not called) and
// closes the store.
func (q *Queue) Close() error {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	_ = q.Shutdown(canceled)
	if q.stopWatch != nil {
		q.stopWatch()
		q.watcher.Wait()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	return q.store.Close()
}

// notifyLocked wakes every Changed waiter. q.mu must be held.
func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *Queue) notify() {
	q.mu.Lock()
	q.notifyLocked()
	q.mu.Unlock()
}

// poke does a non-blocking send on a 1-buffered signal channel.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (q *Queue) isDraining() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.draining
}

// work is one worker's loop.
func (q *Queue) work(p Processor) {
	for {
		if q.isDraining() {
			return
		}
		job, err := q.store.ClaimNext(q.opts.Now())
		if err != nil {
			q.log.Error().Err(err).Msg("claim next job")
			select {
			case <-time.After(time.Second):
			case <-q.stopWorkers:
				return
			}
			continue
		}
		if job == nil {
			// With a SharedStore, submits on other processes poke wake
			// through the watch loop, whose ticker also covers reclaims.
			select {
			case <-q.wake:
			case <-q.stopWorkers:
				return
			}
			continue
		}
		// Another job may be waiting and another worker idle: pass the
		// wake-up on, since one poke may have covered several submits.
		poke(q.wake)
		q.run(p, job)
	}
}

// run processes one claimed job and records its outcome. Every write is
// guarded by the claim (heldBy), so a worker whose job was redelivered to
// another one cannot overwrite the other's outcome.
func (q *Queue) run(p Processor, job *Job) {
	held := heldBy(job)
	now := q.opts.Now()
	if !job.StartDeadline.IsZero() && now.After(job.StartDeadline) {
		if err := q.finishIf(job.ID, held, nil, nil, ErrStartTimeout); err != nil {
			q.log.Error().Err(err).Str("request_id", job.ID).Msg("fail late job")
		}
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	r := &runningJob{cancel: cancel}
	q.mu.Lock()
	q.running[job.ID] = r
	if q.pending[job.ID] || job.CancelRequested {
		delete(q.pending, job.ID)
		cancel(ErrCanceled)
	}
	q.notifyLocked()
	q.mu.Unlock()
	if q.shared != nil {
		// A cancel published between the claim and the registration above
		// found no running job here; the stored flag tells.
		if j, err := q.store.Get(job.ID); err == nil && j.CancelRequested {
			cancel(ErrCanceled)
		}
	}

	logf := func(level, message string) {
		entry := LogEntry{Time: q.opts.Now(), Level: level, Message: message}
		if q.shared != nil {
			// Written through, so the API process serving status sees it.
			if err := q.shared.AppendLog(job.ID, entry); err != nil {
				q.log.Warn().Err(err).Str("request_id", job.ID).Msg("append log line")
			}
			q.notify()
			return
		}
		q.mu.Lock()
		r.logs = append(r.logs, entry)
		q.notifyLocked()
		q.mu.Unlock()
	}
	if q.shared != nil {
		logf("INFO", fmt.Sprintf("Running on worker %s (attempt %d)", job.Worker, job.Attempts))
	}
	result, err := p(ctx, job, logf)

	q.mu.Lock()
	logs := r.logs
	q.mu.Unlock()
	// The live entry stays until the outcome is stored, so readers always
	// see the log lines either live or persisted.
	defer func() {
		q.mu.Lock()
		delete(q.running, job.ID)
		q.mu.Unlock()
	}()

	cause := context.Cause(ctx)
	outcome := "completed"
	switch {
	case errors.Is(cause, errLeaseLost):
		err = errStateChanged
	case err == nil:
		err = q.finishIf(job.ID, held, logs, result, nil)
	case errors.Is(cause, errShutdown) && (!job.Ephemeral || q.shared != nil):
		// With a SharedStore an ephemeral job's client waits on another
		// process (or on this one's HTTP drain): requeue it too.
		outcome = "requeued"
		_, err = q.store.Update(job.ID, func(j *Job) error {
			if !held(j) {
				return errStateChanged
			}
			j.Status = StatusQueued
			j.StartedAt = time.Time{}
			j.Logs = append(j.Logs, LogEntry{Time: q.opts.Now(), Level: "WARN",
				Message: "Interrupted by server shutdown; requeued"})
			return nil
		})
		q.notify()
	case errors.Is(cause, errShutdown):
		outcome = "interrupted"
		err = q.finishIf(job.ID, held, logs, nil, ErrClosed)
	case errors.Is(cause, ErrCanceled):
		outcome = "canceled"
		err = q.finishIf(job.ID, held, logs, nil, ErrCanceled)
	default:
		outcome = "failed"
		err = q.finishIf(job.ID, held, logs, nil, err)
	}
	event := q.log.Info().Str("request_id", job.ID).Int("attempt", job.Attempts).Str("outcome", outcome)
	if job.Worker != "" {
		event = event.Str("worker", job.Worker)
	}
	switch {
	case errors.Is(err, errStateChanged):
		q.log.Warn().Str("request_id", job.ID).Int("attempt", job.Attempts).
			Msg("job was redelivered to another worker meanwhile; this run's outcome is dropped")
	case err != nil:
		q.log.Error().Err(err).Str("request_id", job.ID).Msg("record job outcome")
	default:
		event.Msg("request finished")
	}
}

// heldBy reports whether a stored job is still the claim that returned
// claimed: running, same attempt, same worker.
func heldBy(claimed *Job) func(*Job) bool {
	return func(j *Job) bool {
		return j.Status == StatusRunning && j.Attempts == claimed.Attempts && j.Worker == claimed.Worker
	}
}

// finish completes a job that is in state from, with a result or with a
// failure described from failErr. It returns errStateChanged when the job
// is no longer in that state, so cancel, deadline and worker races are safe.
func (q *Queue) finish(id string, from Status, logs []LogEntry, result json.RawMessage, failErr error) error {
	return q.finishIf(id, func(j *Job) bool { return j.Status == from }, logs, result, failErr)
}

// finishIf is finish with any precondition on the stored job.
func (q *Queue) finishIf(id string, guard func(*Job) bool, logs []LogEntry, result json.RawMessage, failErr error) error {
	now := q.opts.Now()
	var failure *Failure
	if failErr != nil {
		f := q.opts.Describe(failErr)
		failure = &f
	}
	job, err := q.store.Update(id, func(j *Job) error {
		if !guard(j) {
			return errStateChanged
		}
		j.Status = StatusCompleted
		j.FinishedAt = now
		j.ExpiresAt = now.Add(q.opts.Retention)
		j.Logs = append(j.Logs, logs...)
		j.Result = result
		j.Failure = failure
		if failure != nil {
			j.Logs = append(j.Logs, LogEntry{Time: now, Level: "ERROR", Message: failure.Message})
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.notify()
	if job.Webhook.Pending() {
		q.webhooks.schedule(job.ID, now)
	}
	return nil
}

// janitor deletes expired jobs and fails queued jobs whose start deadline
// passed. It owns no state beyond its timers.
func (q *Queue) janitor(ctx context.Context) {
	sweep := time.NewTicker(q.opts.SweepInterval)
	defer sweep.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	for {
		q.mu.Lock()
		wait := time.Hour
		if len(q.deadline) > 0 {
			wait = max(q.deadline[0].at.Sub(q.opts.Now()), 0)
		}
		q.mu.Unlock()
		deadline.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			q.Sweep()
		case <-deadline.C:
			q.expireDeadlines()
		case <-q.janitorPoke:
		}
	}
}

// Sweep deletes jobs whose retention has passed. The janitor calls it
// periodically; it is exported for tests and admin use.
func (q *Queue) Sweep() {
	n, err := q.store.DeleteExpired(q.opts.Now())
	if err != nil {
		q.log.Error().Err(err).Msg("delete expired jobs")
		return
	}
	if n > 0 {
		q.log.Info().Int("jobs", n).Msg("deleted expired jobs")
		q.notify()
	}
}

func (q *Queue) expireDeadlines() {
	now := q.opts.Now()
	for {
		q.mu.Lock()
		if len(q.deadline) == 0 || q.deadline[0].at.After(now) {
			q.mu.Unlock()
			return
		}
		e := heap.Pop(&q.deadline).(deadlineEntry)
		q.mu.Unlock()
		err := q.finish(e.id, StatusQueued, nil, nil, ErrStartTimeout)
		if err != nil && !errors.Is(err, errStateChanged) && !errors.Is(err, ErrAlreadyCompleted) &&
			!errors.Is(err, ErrNotFound) {
			q.log.Error().Err(err).Str("request_id", e.id).Msg("expire start deadline")
		}
	}
}

type deadlineEntry struct {
	at time.Time
	id string
}

// deadlineHeap is a min-heap of start deadlines.
type deadlineHeap []deadlineEntry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadlineEntry)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
