package pipeline

import (
	"container/list"
	"context"
	"sync"
)

// refKey is the SHA-256 of a reference image's size and pixels.
type refKey [32]byte

// refLatent is one reference image as the transformer reads it: packed
// tokens (h*w, 128) of its h x w latent grid. Shared; never modified.
type refLatent struct {
	h, w   int
	tokens []float32
}

func (l *refLatent) bytes() int64 { return 4 * int64(len(l.tokens)) }

// refCache keeps the latents of recently used reference images within a
// byte budget, least recently used out first: the same reference is
// typically edited many times, and encoding it costs a VAE encoder pass. A
// reference being encoded is encoded once: concurrent requests for it wait
// for that result instead of encoding it again.
type refCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	order  *list.List // front: most recent; values are *refEntry
	index  map[refKey]*list.Element
	flight map[refKey]*refFlight
	stats  refCacheStats
}

type refEntry struct {
	key refKey
	val *refLatent
}

// refFlight is an encoding in progress; done closes when val or err is set.
type refFlight struct {
	done chan struct{}
	val  *refLatent
	err  error
}

// refCacheStats counts lookups: hits, and encodings (misses that ran the
// VAE encoder).
type refCacheStats struct{ Hits, Encodes int64 }

func newRefCache(budget int64) *refCache {
	return &refCache{budget: budget, order: list.New(), index: map[refKey]*list.Element{},
		flight: map[refKey]*refFlight{}}
}

// get returns the cached latent of key, or waits for its encoding in
// progress, or runs encode. An encoding that failed (its request was
// canceled, say) is retried by the next waiter rather than shared.
func (c *refCache) get(ctx context.Context, key refKey, encode func() (*refLatent, error)) (*refLatent, error) {
	for {
		c.mu.Lock()
		if el, ok := c.index[key]; ok {
			c.order.MoveToFront(el)
			c.stats.Hits++
			c.mu.Unlock()
			return el.Value.(*refEntry).val, nil
		}
		if f, ok := c.flight[key]; ok {
			c.mu.Unlock()
			select {
			case <-f.done:
				if f.err == nil {
					return f.val, nil
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		f := &refFlight{done: make(chan struct{})}
		c.flight[key] = f
		c.stats.Encodes++
		c.mu.Unlock()

		f.val, f.err = encode()
		c.mu.Lock()
		delete(c.flight, key)
		if f.err == nil {
			c.putLocked(key, f.val)
		}
		c.mu.Unlock()
		close(f.done)
		return f.val, f.err
	}
}

// putLocked adds an entry and evicts the least recent ones over budget. A
// latent larger than the whole budget is not kept.
func (c *refCache) putLocked(key refKey, val *refLatent) {
	if val.bytes() > c.budget {
		return
	}
	c.index[key] = c.order.PushFront(&refEntry{key: key, val: val})
	c.used += val.bytes()
	for c.used > c.budget {
		last := c.order.Back()
		e := last.Value.(*refEntry)
		c.order.Remove(last)
		delete(c.index, e.key)
		c.used -= e.val.bytes()
	}
}

// snapshot returns the counters, the entry count and the bytes held.
func (c *refCache) snapshot() (refCacheStats, int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats, c.order.Len(), c.used
}
