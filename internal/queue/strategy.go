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
	// Open: how many it requeued and how many it failed for good.
	recoverRunning(ctx context.Context) (requeued, exhausted int, err error)
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
	// publish, subscribe and end carry live events: publish and subscribe
	// are Queue.Publish and Queue.Subscribe; end closes the subscriptions
	// of a job that completed, after its last event.
	publish(id string, event []byte)
	subscribe(ctx context.Context, id string) (<-chan []byte, func(), error)
	end(id string)
}

// localStrategy: the store is this process's alone. Jobs found running at
// Open were left by a dead process; a running job's log lines stay in
// memory until its outcome is stored; clients of ephemeral jobs are all
// here; live events stay in the process.
type localStrategy struct {
	q   *Queue
	hub *hub
}

func newLocalStrategy(q *Queue) *localStrategy { return &localStrategy{q: q, hub: newHub()} }

func (l *localStrategy) start(context.Context) {}
func (l *localStrategy) stop()                 {}

func (l *localStrategy) recoverRunning(ctx context.Context) (requeued, exhausted int, err error) {
	q := l.q
	running, err := q.store.List(ctx, StatusRunning)
	if err != nil {
		return 0, 0, fmt.Errorf("queue: list running jobs: %w", err)
	}
	wasRunning := func(j *Job) bool { return j.Status == StatusRunning }
	for _, j := range running {
		switch {
		case j.CancelRequested:
			err = q.finish(ctx, j.ID, StatusRunning, nil, nil, ErrCanceled)
		case j.Ephemeral:
			err = q.finish(ctx, j.ID, StatusRunning, nil, nil, ErrInterrupted)
		default:
			var action crashAction
			action, err = q.handleCrash(ctx, j, j.Crashes+1, wasRunning,
				"Server restarted while this request was running", true)
			if action == crashFail {
				exhausted++
			} else {
				requeued++
			}
		}
		if err != nil {
			return requeued, exhausted, fmt.Errorf("queue: recover job %s: %w", j.ID, err)
		}
	}
	return requeued, exhausted, nil
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

func (l *localStrategy) publish(id string, event []byte) { l.hub.publish(id, event) }

func (l *localStrategy) subscribe(ctx context.Context, id string) (<-chan []byte, func(), error) {
	ch, unsubscribe := l.hub.subscribe(ctx, id)
	return ch, unsubscribe, nil
}

func (l *localStrategy) end(id string) { l.hub.end(id) }

// sharedStrategy: several processes use the store. The store redelivers a
// dead worker's jobs; log lines are written through so that every process
// sees them; a queued ephemeral job's client may wait on another process,
// so it is never failed for this one's sake; live events travel through
// the store's publish/subscribe.
type sharedStrategy struct {
	q     *Queue
	store SharedStore
	// outbox holds live messages for the publisher loop, which sends them
	// in order; Publish drops a message when it is full.
	outbox chan liveMessage

	stopLoops context.CancelFunc
	loops     sync.WaitGroup
}

// Live messages on a SharedStore are framed by their first byte.
const (
	frameEvent = 'e' // the rest is an event
	frameEnd   = 'x' // the job completed: no more events
)

// Bounds of the shared publisher: one PUBLISH, and how long the end of a
// job may wait for room in the outbox.
const (
	publishTimeout = 5 * time.Second
	endWait        = time.Second
)

type liveMessage struct {
	id    string
	frame []byte
}

func newSharedStrategy(q *Queue, store SharedStore) *sharedStrategy {
	return &sharedStrategy{q: q, store: store, outbox: make(chan liveMessage, liveBuffer)}
}

func (s *sharedStrategy) start(ctx context.Context) {
	ctx, s.stopLoops = context.WithCancel(ctx)
	s.loops.Add(2)
	go func() { defer s.loops.Done(); s.watch(ctx) }()
	go func() { defer s.loops.Done(); s.publishLoop(ctx) }()
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

// publishLoop sends the outbox's messages one at a time, so each job's
// events reach the store in the order they were published.
func (s *sharedStrategy) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.outbox:
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err := s.store.Publish(pctx, m.id, m.frame)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.q.log.Warn().Err(err).Str("request_id", m.id).Msg("publish live event; dropped")
			}
		}
	}
}

func (s *sharedStrategy) recoverRunning(context.Context) (int, int, error) { return 0, 0, nil }

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

func (s *sharedStrategy) publish(id string, event []byte) {
	frame := append([]byte{frameEvent}, event...)
	select {
	case s.outbox <- liveMessage{id: id, frame: frame}:
	default:
		s.q.log.Debug().Str("request_id", id).Msg("live event outbox full; event dropped")
	}
}

func (s *sharedStrategy) end(id string) {
	t := time.NewTimer(endWait)
	defer t.Stop()
	select {
	case s.outbox <- liveMessage{id: id, frame: []byte{frameEnd}}:
	case <-t.C:
		s.q.log.Warn().Str("request_id", id).Msg("live event outbox full; end of events dropped")
	}
}

func (s *sharedStrategy) subscribe(ctx context.Context, id string) (<-chan []byte, func(), error) {
	sub := newSubscriber()
	ended := false // only the store's subscription goroutine touches it
	stop, err := s.store.Subscribe(ctx, id, func(msg []byte) {
		if ended || len(msg) == 0 {
			return
		}
		switch msg[0] {
		case frameEvent:
			sub.send(msg[1:])
		case frameEnd:
			ended = true
			sub.close()
		}
	})
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	unsubscribe := func() {
		once.Do(func() {
			stop() // fn is not called after stop returns
			sub.close()
		})
	}
	stopAfter := context.AfterFunc(ctx, unsubscribe)
	return sub.ch, func() {
		stopAfter()
		unsubscribe()
	}, nil
}
