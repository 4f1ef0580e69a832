package pipeline

import (
	"container/list"
	"sync"
)

// embedCache keeps the most recently used prompt embeddings. Users repeat
// prompts (and every CFG request shares the negative prompt, usually ""),
// and an embedding costs a full text-encoder pass.
type embedCache struct {
	mu    sync.Mutex
	limit int
	order *list.List // front: most recent; values are *embedEntry
	index map[string]*list.Element
}

type embedEntry struct {
	prompt string
	embeds []float32
}

func newEmbedCache(limit int) *embedCache {
	return &embedCache{limit: limit, order: list.New(), index: map[string]*list.Element{}}
}

// get returns a cached embedding. Callers must not modify it.
func (c *embedCache) get(prompt string) ([]float32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[prompt]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*embedEntry).embeds, true
}

func (c *embedCache) put(prompt string, embeds []float32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[prompt]; ok {
		el.Value.(*embedEntry).embeds = embeds
		c.order.MoveToFront(el)
		return
	}
	c.index[prompt] = c.order.PushFront(&embedEntry{prompt: prompt, embeds: embeds})
	for c.order.Len() > c.limit {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.index, last.Value.(*embedEntry).prompt)
	}
}

func (c *embedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
