package queue

import (
	"context"
	"encoding/json"
	"time"
)

// Internals the external tests (package queue_test) need.

var (
	ErrStateChanged = errStateChanged
	ErrLeaseLost    = errLeaseLost
	AfterCrash      = afterCrash
)

type CrashAction = crashAction

const (
	CrashRetryFront = crashRetryFront
	CrashRetryBack  = crashRetryBack
	CrashFail       = crashFail
)

// StopBackground ends the janitor and the webhook dispatcher, as a crash
// would, without Shutdown's requeue path.
func (q *Queue) StopBackground() {
	q.stopBg()
	q.background.Wait()
}

func (q *Queue) IsDraining() bool { return q.isDraining() }

func (q *Queue) Store() Store { return q.store }

// FinishIfHeld records a success for the claim that returned claimed, as
// its worker's run would.
func (q *Queue) FinishIfHeld(claimed *Job, result json.RawMessage) error {
	return q.finishIf(context.Background(), claimed.ID, heldBy(claimed), nil, result, nil)
}

// Backoff is the webhook retry delay after attempts failed attempts.
func Backoff(opts WebhookOptions, attempts int) time.Duration {
	w, err := newWebhookDispatcher(nil, opts)
	if err != nil {
		panic(err)
	}
	return w.backoff(attempts)
}
