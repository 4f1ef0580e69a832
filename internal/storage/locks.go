package storage

import (
	"context"
	"errors"
	"sync"
	"syscall"
)

// uploadLocks serializes the writers of one upload id within a process.
type uploadLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

// try takes id's lock if it is free.
func (l *uploadLocks) try(id string) (unlock func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.held[id]; busy {
		return nil, false
	}
	return l.take(id), true
}

// wait takes id's lock, waiting for its holder, until ctx ends.
func (l *uploadLocks) wait(ctx context.Context, id string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		released, busy := l.held[id]
		if !busy {
			unlock := l.take(id)
			l.mu.Unlock()
			return unlock, nil
		}
		l.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take marks id held; l.mu must be held.
func (l *uploadLocks) take(id string) func() {
	if l.held == nil {
		l.held = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	l.held[id] = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.held, id)
			l.mu.Unlock()
			close(ch)
		})
	}
}

// noSpace turns a full-disk error (ENOSPC, EDQUOT) into ErrNoSpace, keeping
// the cause for logs; other errors pass unchanged.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &noSpaceError{cause: err}
	}
	return err
}

// noSpaceError is ErrNoSpace with its cause. Its message does not repeat
// the cause (which names server paths), so it is safe anywhere.
type noSpaceError struct{ cause error }

func (e *noSpaceError) Error() string   { return ErrNoSpace.Error() }
func (e *noSpaceError) Unwrap() []error { return []error{ErrNoSpace, e.cause} }

// Cause is the underlying error, for logs.
