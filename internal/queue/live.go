package queue

import (
	"bytes"
	"context"
	"sync"
)

// Publish sends a live event of job id (opaque bytes, e.g. a progress
// message with a preview) to the job's subscribers: those of this process
// and, with a SharedStore, of every other. It never blocks for long: when
// a subscriber (or the shared store) does not keep up, events are dropped.
// Nothing is stored; the bytes are copied.
func (q *Queue) Publish(ctx context.Context, id string, event []byte) {
	if ctx.Err() != nil {
		return
	}
	q.strategy.publish(id, bytes.Clone(event))
}

// Subscribe returns the live events published for job id after Subscribe
// returned, in order, whichever process publishes them. The channel holds
// liveBuffer events; a reader that falls further behind loses the newer
// ones. It is closed once the job completed (after its last event), when
// ctx ends, or by unsubscribe (idempotent; call it when done). Subscribe
// to a job before submitting it to see all its events; a job that
// completed before Subscribe never closes the channel, so readers also
// watch the job's status. Subscribers may share an event's bytes: do not
// modify them.
func (q *Queue) Subscribe(ctx context.Context, id string) (<-chan []byte, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return q.strategy.subscribe(ctx, id)
}

// liveBuffer bounds the live events a subscription holds; when its reader
// falls further behind, newer events are dropped rather than blocking the
// publisher (the engine's denoising loop).
const liveBuffer = 64

// subscriber is one live-event subscription's channel. send and close are
// called by one owner at a time (the hub under its lock, or a store's
// subscription goroutine), and close is idempotent.
type subscriber struct {
	ch   chan []byte
	once sync.Once
}

func newSubscriber() *subscriber { return &subscriber{ch: make(chan []byte, liveBuffer)} }

// send delivers ev unless the buffer is full.
func (s *subscriber) send(ev []byte) {
	select {
	case s.ch <- ev:
	default:
	}
}

func (s *subscriber) close() { s.once.Do(func() { close(s.ch) }) }

// hub fans live events out to the subscriptions of this process.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[*subscriber]struct{}
}

func newHub() *hub { return &hub{subs: map[string]map[*subscriber]struct{}{}} }

// subscribe registers a subscription to id until ctx ends or the returned
// func is called.
func (h *hub) subscribe(ctx context.Context, id string) (<-chan []byte, func()) {
	s := newSubscriber()
	h.mu.Lock()
	if h.subs[id] == nil {
		h.subs[id] = map[*subscriber]struct{}{}
	}
	h.subs[id][s] = struct{}{}
	h.mu.Unlock()
	unsubscribe := func() {
		h.mu.Lock()
		if set := h.subs[id]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.subs, id)
			}
		}
		s.close()
		h.mu.Unlock()
	}
	stopAfter := context.AfterFunc(ctx, unsubscribe)
	return s.ch, func() {
		stopAfter()
		unsubscribe()
	}
}

func (h *hub) publish(id string, ev []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[id] {
		s.send(ev)
	}
}

// end closes and drops every subscription to id.
func (h *hub) end(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[id] {
		s.close()
	}
	delete(h.subs, id)
}
