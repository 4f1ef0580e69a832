package queue

import (
	"context"
	"fmt"
	"time"
)

// DefaultMaxRetries is Options.MaxRetries when it is zero.
const DefaultMaxRetries = 2

// NoRetries as Options.MaxRetries fails a job the first time its process
// dies while running it.
const NoRetries = -1

// resolveMaxRetries turns Options.MaxRetries into a retry count.
func resolveMaxRetries(n int) int {
	switch {
	case n == 0:
		return DefaultMaxRetries
	case n < 0:
		return 0
	}
	return n
}

// crashAction is what becomes of a job whose process died while running it.
type crashAction int

const (
	// crashRetryFront requeues it where it was: first in line.
	crashRetryFront crashAction = iota
	// crashRetryBack requeues it behind every waiting job of its priority.
	crashRetryBack
	// crashFail fails it with ErrRetriesExhausted.
	crashFail
)

// afterCrash decides from a job's crash count, the last crash included.
// The first crash gets the benefit of the doubt (a deploy, an OOM caused
// by something else): the job keeps its place. A second one makes the job
// a suspect, so it waits behind the jobs it would otherwise keep starving;
// past maxRetries it is not run again.
func afterCrash(crashes, maxRetries int) crashAction {
	switch {
	case crashes > maxRetries:
		return crashFail
	case crashes <= 1:
		return crashRetryFront
	default:
		return crashRetryBack
	}
}

// handleCrash applies afterCrash to job j, left running by a process that
// died; crashes counts that crash. guard is the state the stored job must
// still be in. A job to retry at the front is requeued when requeueFront
// is set; otherwise (a worker that just claimed it) it runs now.
func (q *Queue) handleCrash(ctx context.Context, j *Job, crashes int, guard func(*Job) bool,
	why string, requeueFront bool) (crashAction, error) {
	action := afterCrash(crashes, q.maxRetries)
	switch {
	case action == crashFail:
		err := fmt.Errorf("the server stopped %s while running this request; %w", times(crashes), ErrRetriesExhausted)
		return action, q.complete(ctx, j.ID, guard, nil, nil, err, func(s *Job) { s.Crashes = crashes })
	case action == crashRetryFront && !requeueFront:
		return action, nil
	}
	msg := why + "; requeued"
	if action == crashRetryBack {
		msg = fmt.Sprintf("%s (%s); requeued behind the waiting requests", why, times(crashes))
	}
	_, err := q.store.Update(ctx, j.ID, func(s *Job) error {
		if !guard(s) {
			return errStateChanged
		}
		s.Crashes = crashes
		s.Status = StatusQueued
		s.StartedAt = time.Time{}
		if action == crashRetryBack {
			s.QueueKey = nil // a new one, at the back
		}
		s.Logs = []LogEntry{{Time: q.opts.Now(), Level: "WARN", Message: msg}}
		return nil
	})
	if err == nil {
		q.notify()
		poke(q.wake)
	}
	return action, err
}

// times spells a count of occurrences: "once", "2 times".
func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
