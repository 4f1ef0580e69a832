package lora

import (
	"container/list"
	"context"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Memo keeps values by key within a byte budget, least recently used
// first out, and computes a missing value once however many callers ask
// for it at the same time. A value larger than the whole budget is
// returned but not kept.
type Memo[V any] struct {
	budget int64
	group  singleflight.Group

	mu    sync.Mutex
	used  int64
	order *list.List // front: most recent; values are *memoEntry[V]
	index map[string]*list.Element
}

type memoEntry[V any] struct {
	key   string
	value V
	bytes int64
}

// NewMemo returns an empty memo holding at most budget bytes.
func NewMemo[V any](budget int64) *Memo[V] {
	return &Memo[V]{budget: budget, order: list.New(), index: map[string]*list.Element{}}
}

// Get returns the value of key, calling load (at most once at a time per
// key) when it is not kept. load reports the value's size in bytes.
func (m *Memo[V]) Get(ctx context.Context, key string, load func(context.Context) (V, int64, error)) (V, error) {
	if v, ok := m.peek(key); ok {
		return v, nil
	}
	ch := m.group.DoChan(key, func() (any, error) {
		if v, ok := m.peek(key); ok {
			return v, nil
		}
		// The load belongs to every waiter, not to the first caller: a
		// caller that gives up must not cancel it for the others.
		v, n, err := load(context.WithoutCancel(ctx))
		if err != nil {
			return v, err
		}
		m.put(key, v, n)
		return v, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			var zero V
			return zero, res.Err
		}
		return res.Val.(V), nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

func (m *Memo[V]) peek(key string) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.index[key]
	if !ok {
		var zero V
		return zero, false
	}
	m.order.MoveToFront(el)
	return el.Value.(*memoEntry[V]).value, true
}

func (m *Memo[V]) put(key string, v V, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n > m.budget {
		return
	}
	if el, ok := m.index[key]; ok {
		m.used -= el.Value.(*memoEntry[V]).bytes
		m.order.Remove(el)
	}
	m.index[key] = m.order.PushFront(&memoEntry[V]{key: key, value: v, bytes: n})
	m.used += n
	for m.used > m.budget {
		last := m.order.Back()
		e := last.Value.(*memoEntry[V])
		m.order.Remove(last)
		delete(m.index, e.key)
		m.used -= e.bytes
	}
}

// Len and Bytes report what is kept.
func (m *Memo[V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}

// Bytes is the total size of the kept values.
func (m *Memo[V]) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}
