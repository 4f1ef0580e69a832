package pipeline

import (
	"container/list"
	"sync"
)

// DefaultPromptCacheBytes bounds the prompt-embedding cache by default:
// 17 prompts of the 4B model (15.7 MB each: 512 tokens x 7680 float32).
const DefaultPromptCacheBytes = 256 << 20

// embedCache keeps the most recently used prompt embeddings within a byte
// budget. Users repeat prompts (and every CFG request shares the negative
// prompt, usually ""), and an embedding costs a full text-encoder pass.
type embedCache struct {
	mu    sync.Mutex
	limit int64      // bytes
	bytes int64      // held now
	order *list.List // front: most recent; values are *embedEntry
	index map[string]*list.Element
}

type embedEntry struct {
	prompt string
	embeds []float32
}

// size is what an entry holds: its embeddings and its key.
func (e *embedEntry) size() int64 { return 4*int64(len(e.embeds)) + int64(len(e.prompt)) }

func newEmbedCache(limit int64) *embedCache {
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

// put caches an embedding, dropping the least recently used ones to stay
// within the budget; one larger than the whole budget is not kept.
func (c *embedCache) put(prompt string, embeds []float32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entry := &embedEntry{prompt: prompt, embeds: embeds}
	if el, ok := c.index[prompt]; ok {
		c.bytes -= el.Value.(*embedEntry).size()
		c.order.Remove(el)
		delete(c.index, prompt)
	}
	if entry.size() > c.limit {
		return
	}
	c.index[prompt] = c.order.PushFront(entry)
	c.bytes += entry.size()
	for c.bytes > c.limit {
		last := c.order.Back()
		old := last.Value.(*embedEntry)
		c.order.Remove(last)
		delete(c.index, old.prompt)
		c.bytes -= old.size()
	}
}

// stats returns the entries and bytes held.
func (c *embedCache) stats() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.bytes
}
