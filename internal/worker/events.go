package worker

import (
	"context"
	"sync"
)

// LocalEvents carries live events between the worker and the API handlers
// of one process. It is memory only: live events are not durable state.
type LocalEvents struct {
	mu   sync.Mutex
	subs map[string][]chan []byte
}

// eventBuffer bounds queued events per subscriber; a subscriber that reads
// too slowly loses events rather than blocking the generation loop.
const eventBuffer = 64

// NewLocalEvents returns an empty hub.
func NewLocalEvents() *LocalEvents { return &LocalEvents{subs: map[string][]chan []byte{}} }

// Subscribe returns the events of job id published from now on, until
// unsubscribe is called.
func (h *LocalEvents) Subscribe(_ context.Context, id string) (<-chan []byte, func(), error) {
	ch := make(chan []byte, eventBuffer)
	h.mu.Lock()
	h.subs[id] = append(h.subs[id], ch)
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		subs := h.subs[id]
		for i, c := range subs {
			if c == ch {
				subs = append(subs[:i], subs[i+1:]...)
				break
			}
		}
		if len(subs) == 0 {
			delete(h.subs, id)
		} else {
			h.subs[id] = subs
		}
	}, nil
}

// Publish never blocks: the engine calls it from its denoising loop.
func (h *LocalEvents) Publish(_ context.Context, id string, event []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.subs[id] {
		select {
		case ch <- event:
		default:
		}
	}
}
