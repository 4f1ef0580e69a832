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

// Bounds of the store operations the queue makes on its own behalf (no
// caller context: workers, the janitor, webhooks, metrics). A hung store
// must surface as an error, not a stuck loop.
const (
	storeOpTimeout = 10 * time.Second
	sweepTimeout   = time.Minute
)

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
	// MaxRetries is how many times a job is run again after its process
	// died while running it (default DefaultMaxRetries; NoRetries for
	// none). One more crash fails it with ErrRetriesExhausted: a job that
	// keeps killing its worker would otherwise block the queue forever.
	// The first retry keeps the job's place at the front (the crash was
	// likely not its fault); later ones queue it behind the waiting jobs.
	MaxRetries int
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
	// Owner is stored with the job and returned by reads (see Job.Owner).
	Owner string
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
	store      Store
	opts       Options
	log        zerolog.Logger
	strategy   strategy
	maxRetries int

	// life bounds the queue's own store operations; it ends at Close,
	// after the workers stopped.
	life    context.Context
	endLife context.CancelFunc

	// submitMu orders Submit against Shutdown: no job is added once
	// draining is set, so Shutdown sees every ephemeral job it must fail.
	submitMu sync.RWMutex

	mu       sync.Mutex
	running  map[string]*runningJob
	changed  chan struct{} // closed and replaced on every change
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
}

type runningJob struct {
	cancel context.CancelCauseFunc
	logs   []LogEntry // local strategy: lines not yet stored
}

// Open recovers the store's state and starts the janitor and the webhook
// dispatcher. Jobs found running (the previous process died or was killed)
// are requeued at the front, or failed after MaxRetries crashes; ephemeral
// ones are failed. Workers start with Start.
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
		maxRetries:  resolveMaxRetries(opts.MaxRetries),
		running:     map[string]*runningJob{},
		changed:     make(chan struct{}),
		wake:        make(chan struct{}, 1),
		stopWorkers: make(chan struct{}),
		janitorPoke: make(chan struct{}, 1),
	}
	if shared, ok := store.(SharedStore); ok {
		q.strategy = newSharedStrategy(q, shared)
	} else {
		q.strategy = newLocalStrategy(q)
	}
	var err error
	if q.webhooks, err = newWebhookDispatcher(q, opts.Webhook); err != nil {
		return nil, err
	}
	q.life, q.endLife = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(q.life, sweepTimeout)
	defer cancel()
	if err := q.recover(ctx); err != nil {
		q.endLife()
		return nil, err
	}
	hooks, err := store.PendingWebhooks(ctx)
	if err != nil {
		q.endLife()
		return nil, fmt.Errorf("queue: list pending webhooks: %w", err)
	}
	for _, j := range hooks {
		q.webhooks.schedule(j.ID, j.Webhook.NextAttempt)
	}
	bg, stopBg := context.WithCancel(q.life)
	q.stopBg = stopBg
	q.background.Add(2)
	go func() { defer q.background.Done(); q.janitor(bg) }()
	go func() { defer q.background.Done(); q.webhooks.run(bg) }()
	// The strategy's own loops (a SharedStore's watch) outlive Shutdown:
	// waiters (synchronous runs on an API process) keep hearing of jobs
	// other processes finish until Close.
	q.strategy.start(q.life)
	return q, nil
}

// opContext bounds one store operation the queue makes on its own behalf.
func (q *Queue) opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(q.life, storeOpTimeout)
}

// recover applies the crash policy to the jobs a dead process left
// running (with a SharedStore, its ClaimNext does that instead) and loads
// the start deadlines of the queued jobs.
func (q *Queue) recover(ctx context.Context) error {
	requeued, exhausted, err := q.strategy.recoverRunning(ctx)
	if err != nil {
		return err
	}
	failed, err := q.strategy.failOrphans(ctx, ErrInterrupted)
	if err != nil {
		return err
	}
	queued, err := q.store.List(ctx, StatusQueued)
	if err != nil {
		return fmt.Errorf("queue: list queued jobs: %w", err)
	}
	for _, j := range queued {
		if !j.StartDeadline.IsZero() {
			heap.Push(&q.deadline, deadlineEntry{at: j.StartDeadline, id: j.ID})
		}
	}
	q.log.Info().Int("requeued", requeued).Int("failed_after_retries", exhausted).Int("queued", len(queued)).
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
		Owner:         req.Owner,
		Ephemeral:     req.Ephemeral,
		SubmittedAt:   q.opts.Now(),
		StartDeadline: req.StartDeadline,
	}
	if req.WebhookURL != "" {
		job.Webhook = &Webhook{URL: req.WebhookURL}
	}
	if err := q.store.Add(ctx, job, q.opts.MaxQueued); err != nil {
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

// Get returns a job with all its parts (payload, logs, result), its current
// position and, while it runs, its live log lines. Status reads should use
// Read, which leaves the result out.
func (q *Queue) Get(ctx context.Context, id string) (*Job, error) {
	return q.Read(ctx, id, PartAll)
}

// Read returns a job's status record with the parts asked for: a status
// read passes 0 or PartLogs and costs the same whatever the size of the
// result; the result handler passes PartResult. With PartLogs, the lines
// of a running job include those not yet stored.
func (q *Queue) Read(ctx context.Context, id string, parts Part) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return q.strategy.read(ctx, id, parts)
}

// Cancel cancels a queued job at once, or asks a running one to stop (its
// context is canceled; the engine stops at its next step). It returns
// ErrAlreadyCompleted or ErrNotFound when there is nothing to cancel.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		j, err := q.store.Get(ctx, id, 0)
		if err != nil {
			return err
		}
		switch j.Status {
		case StatusCompleted:
			return ErrAlreadyCompleted
		case StatusQueued:
			err := q.finish(ctx, id, StatusQueued, nil, nil, ErrCanceled)
			if errors.Is(err, errStateChanged) {
				continue // a worker claimed it meanwhile: cancel it as running
			}
			return err
		case StatusRunning:
			_, err := q.store.Update(ctx, id, func(j *Job) error {
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
			// A worker that registers the job after this reads the stored
			// flag (run); one on another process hears of it from the
			// SharedStore (EventCancel).
			q.mu.Lock()
			if r := q.running[id]; r != nil {
				r.cancel(ErrCanceled)
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
	ctx, cancel := q.opContext()
	defer cancel()
	n, err := q.store.QueuedCount(ctx)
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
// is done; then they are canceled and requeued (ephemeral ones fail with
// the local store). Queued ephemeral jobs fail at once with the local
// store, since their clients are being disconnected. Pending webhooks stay
// stored and resume at the next Open.
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

	opCtx, cancel := q.opContext()
	if _, err := q.strategy.failOrphans(opCtx, ErrClosed); err != nil {
		q.log.Error().Err(err).Msg("fail queued ephemeral jobs at shutdown")
	}
	cancel()

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
	q.strategy.stop()
	q.endLife()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	ctx, cancelClose := context.WithTimeout(context.Background(), storeOpTimeout)
	defer cancelClose()
	return q.store.Close(ctx)
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
		ctx, cancel := q.opContext()
		job, err := q.store.ClaimNext(ctx, q.opts.Now())
		cancel()
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
	opCtx, cancelOp := q.opContext()
	defer cancelOp()
	if job.Redelivered {
		// Taken over from a worker that died while running it.
		action, err := q.handleCrash(opCtx, job, job.Crashes, held, "A worker stopped while running this request", false)
		if err != nil {
			q.log.Error().Err(err).Str("request_id", job.ID).Msg("requeue or fail a redelivered job")
			return
		}
		if action != crashRetryFront {
			return
		}
	}
	now := q.opts.Now()
	if !job.StartDeadline.IsZero() && now.After(job.StartDeadline) {
		if err := q.finishIf(opCtx, job.ID, held, nil, nil, ErrStartTimeout); err != nil {
			q.log.Error().Err(err).Str("request_id", job.ID).Msg("fail late job")
		}
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	r := &runningJob{cancel: cancel}
	q.mu.Lock()
	q.running[job.ID] = r
	if job.CancelRequested {
		cancel(ErrCanceled)
	}
	q.notifyLocked()
	q.mu.Unlock()
	// A cancel that found the job running but not yet registered here set
	// the stored flag before looking: read it back now that it is.
	if j, err := q.store.Get(opCtx, job.ID, 0); err == nil && j.CancelRequested {
		cancel(ErrCanceled)
	}

	logf := func(level, message string) {
		logCtx, cancel := q.opContext()
		defer cancel()
		q.strategy.appendLog(logCtx, job, r, LogEntry{Time: q.opts.Now(), Level: level, Message: message})
	}
	if job.Worker != "" {
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

	// The outcome is written with a fresh bound: the run may have been long.
	opCtx, cancelOp = q.opContext()
	defer cancelOp()
	cause := context.Cause(ctx)
	outcome := "completed"
	switch {
	case errors.Is(cause, errLeaseLost):
		err = errStateChanged
	case err == nil:
		err = q.finishIf(opCtx, job.ID, held, logs, result, nil)
	case errors.Is(cause, errShutdown) && q.strategy.requeueOnShutdown(job):
		outcome = "requeued"
		_, err = q.store.Update(opCtx, job.ID, func(j *Job) error {
			if !held(j) {
				return errStateChanged
			}
			j.Status = StatusQueued
			j.StartedAt = time.Time{}
			j.Logs = []LogEntry{{Time: q.opts.Now(), Level: "WARN",
				Message: "Interrupted by server shutdown; requeued"}}
			return nil
		})
		q.notify()
	case errors.Is(cause, errShutdown):
		outcome = "interrupted"
		err = q.finishIf(opCtx, job.ID, held, logs, nil, ErrClosed)
	case errors.Is(cause, ErrCanceled):
		outcome = "canceled"
		err = q.finishIf(opCtx, job.ID, held, logs, nil, ErrCanceled)
	default:
		outcome = "failed"
		err = q.finishIf(opCtx, job.ID, held, logs, nil, err)
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
func (q *Queue) finish(ctx context.Context, id string, from Status, logs []LogEntry, result json.RawMessage, failErr error) error {
	return q.finishIf(ctx, id, func(j *Job) bool { return j.Status == from }, logs, result, failErr)
}

// finishIf is finish with any precondition on the stored job.
func (q *Queue) finishIf(ctx context.Context, id string, guard func(*Job) bool, logs []LogEntry, result json.RawMessage, failErr error) error {
	return q.complete(ctx, id, guard, logs, result, failErr, nil)
}

// complete is finishIf that also applies also (when not nil) to the stored
// job in the same write. Subscribers of the job's live events hear of the
// end after the outcome is stored.
func (q *Queue) complete(ctx context.Context, id string, guard func(*Job) bool, logs []LogEntry,
	result json.RawMessage, failErr error, also func(*Job)) error {
	now := q.opts.Now()
	var failure *Failure
	if failErr != nil {
		f := q.opts.Describe(failErr)
		failure = &f
	}
	job, err := q.store.Update(ctx, id, func(j *Job) error {
		if !guard(j) {
			return errStateChanged
		}
		j.Status = StatusCompleted
		j.FinishedAt = now
		j.ExpiresAt = now.Add(q.opts.Retention)
		j.Logs = append([]LogEntry(nil), logs...)
		j.Result = result
		j.Failure = failure
		if failure != nil {
			j.Logs = append(j.Logs, LogEntry{Time: now, Level: "ERROR", Message: failure.Message})
		}
		if also != nil {
			also(j)
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.notify()
	q.strategy.end(id)
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
	ctx, cancel := context.WithTimeout(q.life, sweepTimeout)
	defer cancel()
	n, err := q.store.DeleteExpired(ctx, q.opts.Now())
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
		ctx, cancel := q.opContext()
		err := q.finish(ctx, e.id, StatusQueued, nil, nil, ErrStartTimeout)
		cancel()
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
