package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// strategy is what differs between a Queue on a local store, which one
// process owns, and one on a SharedStore, which several processes use at
// once. Open picks one; no other code asks which it is.
type strategy interface {
	// start launches the strategy's own loops, which run until stop.
	start(ctx context.Context)
	stop()
	// recoverRunning handles the jobs a dead process left running, at
	// Open, and says how many it requeued.
	recoverRunning(ctx context.Context) (requeued int, err error)
	// failOrphans fails the queued ephemeral jobs whose clients this
	// process is losing (at Open and Shutdown) and says how many.
	failOrphans(ctx context.Context, cause error) (int, error)
	// read is Queue.Read.
	read(ctx context.Context, id string, parts Part) (*Job, error)
	// appendLog adds a log line of job, which r runs here.
	appendLog(ctx context.Context, job *Job, r *runningJob, entry LogEntry)
	// requeueOnShutdown says whether job, interrupted by Shutdown, goes
	// back to the queue rather than failing.
	requeueOnShutdown(job *Job) bool
}

// localStrategy: the store is this process's alone. Jobs found running at
// Open were left by a dead process; a running job's log lines stay in
// memory until its outcome is stored; clients of ephemeral jobs are all
// here.
type localStrategy struct {
	q *Queue
}

func newLocalStrategy(q *Queue) *localStrategy { return &localStrategy{q: q} }

func (l *localStrategy) start(context.Context) {}
func (l *localStrategy) stop()                 {}

func (l *localStrategy) recoverRunning(ctx context.Context) (requeued int, err error) {
	q := l.q
	running, err := q.store.List(ctx, StatusRunning)
	if err != nil {
		return 0, fmt.Errorf("queue: list running jobs: %w", err)
	}
	for _, j := range running {
		switch {
		case j.CancelRequested:
			err = q.finish(ctx, j.ID, StatusRunning, nil, nil, ErrCanceled)
		case j.Ephemeral:
			err = q.finish(ctx, j.ID, StatusRunning, nil, nil, ErrInterrupted)
		default:
			_, err = q.store.Update(ctx, j.ID, func(j *Job) error {
				j.Status = StatusQueued
				j.Logs = []LogEntry{{Time: q.opts.Now(), Level: "WARN",
					Message: "Server restarted while this request was running; requeued"}}
				return nil
			})
			requeued++
		}
		if err != nil {
			return requeued, fmt.Errorf("queue: recover job %s: %w", j.ID, err)
		}
	}
	return requeued, nil
}

func (l *localStrategy) failOrphans(ctx context.Context, cause error) (int, error) {
	q := l.q
	queued, err := q.store.List(ctx, StatusQueued)
	if err != nil {
		return 0, fmt.Errorf("queue: list queued jobs: %w", err)
	}
	failed := 0
	for _, j := range queued {
		if !j.Ephemeral {
			continue
		}
		err := q.finish(ctx, j.ID, StatusQueued, nil, nil, cause)
		if errors.Is(err, errStateChanged) {
			continue
		}
		if err != nil {
			return failed, fmt.Errorf("queue: fail queued ephemeral job %s: %w", j.ID, err)
		}
		failed++
	}
	return failed, nil
}

func (l *localStrategy) read(ctx context.Context, id string, parts Part) (*Job, error) {
	q := l.q
	for attempt := 0; ; attempt++ {
		j, err := q.store.Get(ctx, id, parts)
		if err != nil {
			return nil, err
		}
		if j.Status != StatusRunning || parts&PartLogs == 0 {
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
		if r != nil || attempt > 0 {
			return j, nil
		}
	}
}

func (l *localStrategy) appendLog(_ context.Context, _ *Job, r *runningJob, entry LogEntry) {
	q := l.q
	q.mu.Lock()
	r.logs = append(r.logs, entry)
	q.notifyLocked()
	q.mu.Unlock()
}

func (l *localStrategy) requeueOnShutdown(job *Job) bool { return !job.Ephemeral }

// sharedStrategy: several processes use the store. The store redelivers a
// dead worker's jobs; log lines are written through so that every process
// sees them; a queued ephemeral job's client may wait on another process,
// so it is never failed for this one's sake.
type sharedStrategy struct {
	q     *Queue
	store SharedStore

	stopLoops context.CancelFunc
	loops     sync.WaitGroup
}

func newSharedStrategy(q *Queue, store SharedStore) *sharedStrategy {
	return &sharedStrategy{q: q, store: store}
}

func (s *sharedStrategy) start(ctx context.Context) {
	ctx, s.stopLoops = context.WithCancel(ctx)
	s.loops.Add(1)
	go func() { defer s.loops.Done(); s.watch(ctx) }()
}

func (s *sharedStrategy) stop() {
	if s.stopLoops != nil {
		s.stopLoops()
		s.loops.Wait()
	}
}

// watch relays the store's events to this process: wake-ups of idle
// workers, cancels of jobs running here, and Changed notifications. A
// ticker covers notifications lost while the connection was down.
func (s *sharedStrategy) watch(ctx context.Context) {
	q := s.q
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := s.store.Watch(ctx, s.onEvent); err != nil && ctx.Err() == nil {
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

// onEvent handles one store event; it never blocks.
func (s *sharedStrategy) onEvent(e Event) {
	q := s.q
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

func (s *sharedStrategy) recoverRunning(context.Context) (int, error) { return 0, nil }

func (s *sharedStrategy) failOrphans(context.Context, error) (int, error) { return 0, nil }

func (s *sharedStrategy) read(ctx context.Context, id string, parts Part) (*Job, error) {
	return s.q.store.Get(ctx, id, parts)
}

func (s *sharedStrategy) appendLog(ctx context.Context, job *Job, _ *runningJob, entry LogEntry) {
	// Written through, so the API process serving status sees it.
	if err := s.store.AppendLog(ctx, job.ID, entry); err != nil {
		s.q.log.Warn().Err(err).Str("request_id", job.ID).Msg("append log line")
	}
	s.q.notify()
}

// requeueOnShutdown: an ephemeral job's client waits on another process
// (or on this one's HTTP drain), so every interrupted job is requeued.
func (s *sharedStrategy) requeueOnShutdown(*Job) bool { return true }
