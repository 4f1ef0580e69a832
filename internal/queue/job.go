// Package queue is the durable request queue behind the fal queue API: it
// stores jobs, their status, logs and results in a Store, runs them on a
// bounded pool of workers, tracks queue positions, cancels queued and
// running jobs, requeues jobs interrupted by a crash or shutdown (and fails
// those that keep crashing their server), expires old results, delivers
// signed webhooks, relays live events of running jobs and lets callers
// watch for changes.
//
// Two stores implement Store: boltstore, a file that one process owns, and
// redisstore, a SharedStore that API and worker processes share. What
// differs between the two cases (crash recovery, where log lines live
// while a job runs, who owns the clients of ephemeral jobs, how live events
// travel) is one strategy value that Open picks from the store.
//
// The queue knows nothing about images or the engine: a job's payload is
// opaque bytes handed to a Processor, live events are opaque bytes, and
// failures are described by a function the API supplies, so the same
// status codes are used everywhere.
package queue

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. The API maps them to HTTP status codes.
var (
	// ErrNotFound: no job has this id (never existed or expired).
	ErrNotFound = errors.New("request not found")
	// ErrQueueFull: the bounded queue has no room; retry later.
	ErrQueueFull = errors.New("queue is full")
	// ErrCanceled is the failure of a job canceled by its client.
	ErrCanceled = errors.New("request cancelled")
	// ErrStartTimeout is the failure of a job that did not start before the
	// deadline its client set (x-fal-request-timeout).
	ErrStartTimeout = errors.New("request did not start before its deadline")
	// ErrAlreadyCompleted: cancel of a job that has finished.
	ErrAlreadyCompleted = errors.New("request already completed")
	// ErrClosed: the queue is shutting down or closed.
	ErrClosed = errors.New("queue is shutting down")
	// ErrInterrupted is the failure of an ephemeral job (a synchronous run
	// or stream) whose server stopped: nobody is left to receive it.
	ErrInterrupted = errors.New("request interrupted by a server restart")
	// ErrDuplicateID: Submit with an id that is already stored.
	ErrDuplicateID = errors.New("request id already exists")
	// ErrRetriesExhausted is the failure of a job whose process died while
	// running it more often than Options.MaxRetries allows: the job itself
	// is the likely cause (it crashes or starves its worker), so it is not
	// run again. The stored error says how many times the server stopped.
	ErrRetriesExhausted = errors.New("not retried again")
	// ErrNotHeld: a SharedStore write for a job this process no longer
	// holds (another worker took it over).
	ErrNotHeld = errors.New("job is no longer held by this process")
)

// Status is a job's lifecycle state, using fal's names.
type Status string

// Job states. Failed and cancelled jobs are Completed with a Failure.
const (
	StatusQueued    Status = "IN_QUEUE"
	StatusRunning   Status = "IN_PROGRESS"
	StatusCompleted Status = "COMPLETED"
)

// Priority orders the queue: every normal job runs before any low one.
type Priority uint8

// Priorities (fal's x-fal-queue-priority).
const (
	PriorityNormal Priority = 0
	PriorityLow    Priority = 1
)

// LogEntry is one line of a job's log.
type LogEntry struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
}

// Failure is how a failed job answers its result request, its status and
// its webhook. It is produced by Options.Describe from an error.
type Failure struct {
	// HTTPStatus and Body are the result endpoint's response.
	HTTPStatus int             `json:"http_status"`
	Body       json.RawMessage `json:"body"`
	// Headers are extra response headers (e.g. x-fal-request-timeout-type).
	Headers map[string]string `json:"headers,omitempty"`
	// Message and Type are the status body's error and error_type.
	Message string `json:"message"`
	Type    string `json:"type"`
}

// Webhook is the delivery state of a job's fal_webhook.
type Webhook struct {
	URL         string    `json:"url"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Delivered   bool      `json:"delivered,omitempty"`
	GaveUp      bool      `json:"gave_up,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
}

// Pending reports whether the webhook still has to be delivered.
func (w *Webhook) Pending() bool { return w != nil && w.URL != "" && !w.Delivered && !w.GaveUp }

// Job is the durable record of one request.
type Job struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	// Payload is the request input. Reads load it only when asked
	// (PartPayload); ClaimNext always does.
	Payload  json.RawMessage `json:"payload,omitempty"`
	Priority Priority        `json:"priority"`
	// Owner is an opaque fingerprint of whoever submitted the job (the API
	// derives it from the API key). The queue stores and returns it and
	// never interprets or logs it.
	Owner string `json:"owner,omitempty"`
	// Ephemeral jobs (synchronous runs and streams) have a client waiting
	// on an open connection. After a restart nobody waits for them, so
	// they fail instead of being requeued.
	Ephemeral bool   `json:"ephemeral,omitempty"`
	Status    Status `json:"status"`
	// QueueKey orders queued jobs (priority, then submit sequence). A job
	// requeued by a shutdown or after its first crash keeps its key, so it
	// goes back to the front; after a second crash it gets a new key, at
	// the back (see Options.MaxRetries).
	QueueKey      []byte    `json:"queue_key"`
	SubmittedAt   time.Time `json:"submitted_at"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	FinishedAt    time.Time `json:"finished_at,omitzero"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	StartDeadline time.Time `json:"start_deadline,omitzero"`
	// CancelRequested survives a crash: a job canceled while running is not
	// requeued at the next start.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// Attempts counts the claims of the job by a worker.
	Attempts int `json:"attempts"`
	// Crashes counts the runs of the job that ended because their process
	// died (found running at Open, or redelivered after a missed lease).
	// A graceful shutdown's requeue is not a crash.
	Crashes int `json:"crashes,omitempty"`
	// Logs and Result are loaded only when a read asks for them (PartLogs,
	// PartResult); they are stored apart from the status record, so that
	// status reads stay small whatever the size of the result.
	Logs    []LogEntry      `json:"logs,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
	Webhook *Webhook        `json:"webhook,omitempty"`
	// Worker names the process that claimed the job last (shared stores
	// only; empty with bbolt). With Attempts it identifies one claim, so a
	// worker that lost its claim cannot record an outcome.
	Worker string `json:"worker,omitempty"`

	// Position is the 0-based queue position of a queued job, computed
	// when the job is read; it is not stored.
	Position int `json:"-"`
	// Redelivered is set on a job that ClaimNext took over from a worker
	// that stopped renewing its claim (a crash); not stored.
	Redelivered bool `json:"-"`
}

// MakeQueueKey returns the QueueKey of the seq-th submit (a store's
// counter) at priority p: the priority byte, then seq big-endian, so that
// byte order is run order.
func MakeQueueKey(p Priority, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = byte(p)
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// Part names the parts of a job that a read loads besides its status
// record (state, times, failure, webhook, owner): they can be large, so a
// status read leaves them out.
type Part uint8

// Parts of a job, combined with |.
const (
	// PartLogs loads Job.Logs.
	PartLogs Part = 1 << iota
	// PartResult loads Job.Result.
	PartResult
	// PartPayload loads Job.Payload.
	PartPayload
	// PartAll loads everything.
	PartAll = PartLogs | PartResult | PartPayload
)

// Store is the persistence backend of a Queue. Implementations must make
// every successful write durable before returning (the submit response is
// sent only after Add returns) and keep their indexes consistent with the
// job records. Queue serialises nothing itself, so methods must be safe for
// concurrent use. Every method honours its ctx: it gives up with the ctx's
// error once it ends (a local database checks it between transactions).
//
// A job is kept as a small status record apart from its payload, logs and
// result; reads load those only when asked, and Update never loads them.
type Store interface {
	// Add stores a new queued job, assigning QueueKey and Position. It
	// fails with ErrQueueFull when maxQueued > 0 jobs are already queued
	// and with ErrDuplicateID when the id exists.
	Add(ctx context.Context, job *Job, maxQueued int) error
	// Get returns a job's status record (with Position when queued) and
	// the parts asked for, or ErrNotFound.
	Get(ctx context.Context, id string, parts Part) (*Job, error)
	// Update applies fn to a job's status record atomically and stores the
	// result; an error from fn aborts without writing. fn sees no logs,
	// result or payload: the log lines it puts in Logs are appended to the
	// stored log, and a non-nil Result it sets is stored. Status changes
	// move the job between the queued/running/expiry/webhook indexes. It
	// returns the new status record.
	Update(ctx context.Context, id string, fn func(*Job) error) (*Job, error)
	// ClaimNext marks the first queued job running (StartedAt = now,
	// Attempts+1) and returns it with its payload; nil when the queue is
	// empty. A shared store first takes over jobs whose worker died
	// (Crashes+1, Redelivered set).
	ClaimNext(ctx context.Context, now time.Time) (*Job, error)
	// QueuedCount is the number of queued jobs.
	QueuedCount(ctx context.Context) (int, error)
	// List returns the status records of the jobs in a state (queued ones
	// in queue order).
	List(ctx context.Context, status Status) ([]*Job, error)
	// PendingWebhooks returns the status records of finished jobs whose
	// webhook is undelivered.
	PendingWebhooks(ctx context.Context) ([]*Job, error)
	// DeleteExpired removes completed jobs whose ExpiresAt is not after now
	// and returns how many it removed.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
	// Close releases the store.
	Close(ctx context.Context) error
}

// SharedStore is a Store that several processes use at once over the
// network (redisstore). With one, a Queue leaves the recovery of a dead
// worker's jobs to the store (ClaimNext redelivers them), writes log lines
// through as they happen so every process sees them, learns from Watch
// what other processes changed (new work, cancels, status changes), and
// relays live events through the store's publish/subscribe.
type SharedStore interface {
	Store
	// AppendLog durably appends a line to the log of a job this process
	// holds. It fails when the job is no longer held here.
	AppendLog(ctx context.Context, id string, entry LogEntry) error
	// Watch calls fn for every change made by any process, and with
	// EventLost when this process lost the claim on a job it runs, until
	// ctx ends. It also keeps this process's claims alive. Its caller owns
	// the goroutine it runs on; fn must not block.
	Watch(ctx context.Context, fn func(Event)) error
	// Publish sends msg to the subscribers of job id in every process. It
	// is fire-and-forget: nothing is stored, and a process that is not
	// subscribed at that moment never sees it.
	Publish(ctx context.Context, id string, msg []byte) error
	// Subscribe calls fn, in order, with every message published for job
	// id after Subscribe returned, until ctx ends or stop is called. stop
	// returns once fn is no longer called. fn must not block.
	Subscribe(ctx context.Context, id string, fn func(msg []byte)) (stop func(), err error)
}

// EventKind says what a SharedStore event is about.
type EventKind string

// Event kinds.
const (
	// EventQueued: a job was queued or requeued; idle workers may claim it.
	EventQueued EventKind = "queued"
	// EventChanged: a job's state, position or log changed.
	EventChanged EventKind = "changed"
	// EventCancel: a client asked to cancel a running job.
	EventCancel EventKind = "cancel"
	// EventLost: this process no longer holds a job it was running
	// (another worker took it over after missed heartbeats).
	EventLost EventKind = "lost"
)

// Event is one change notice of a SharedStore.
type Event struct {
	Kind EventKind
	ID   string
}
