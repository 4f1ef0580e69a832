package tokenizer

import (
	"strings"
	"sync"
)

// mergeRule is what merging one adjacent pair of tokens produces: the rank of
// the merge (its line in merges.txt; lower merges first) and the merged id.
type mergeRule struct {
	rank   int32
	result int32
}

// pairKey packs two token ids into one map key.
func pairKey(left, right int32) uint64 {
	return uint64(uint32(left))<<32 | uint64(uint32(right))
}

// bpeModel is a byte-level BPE model: every word starts as one token per
// byte, and merges are applied until none applies.
type bpeModel struct {
	byteIDs [256]int32
	merges  map[uint64]mergeRule
	// ignoreMerges makes a word that is itself in the vocabulary one token
	// without running the merges (tokenizers' BPE.ignore_merges).
	ignoreMerges bool
	vocab        map[string]int // byte-level spelled token → id
	cache        *wordCache
}

// symbol is one token of a word being merged, in a doubly linked list over
// the word's original byte positions.
type symbol struct {
	id         int32
	prev, next int32 // -1 at the ends
	alive      bool
}

// mergeCandidate is a queued merge of the pair starting at pos.
type mergeCandidate struct {
	rank   int32
	pos    int32
	result int32
}

// bpeScratch holds buffers reused across the words of one Encode call.
type bpeScratch struct {
	symbols []symbol
	queue   []mergeCandidate
	word    []int32
}

// tokenize appends the ids of one pre-tokenized word (raw bytes, non-empty).
func (m *bpeModel) tokenize(word string, out []int64, scratch *bpeScratch) []int64 {
	if len(word) == 1 {
		return append(out, int64(m.byteIDs[word[0]]))
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[string(appendSpelled(nil, word))]; ok {
			return append(out, int64(id))
		}
	}
	if ids, ok := m.cache.get(word); ok {
		for _, id := range ids {
			out = append(out, int64(id))
		}
		return out
	}
	ids := m.merge(word, scratch)
	m.cache.put(word, ids)
	for _, id := range ids {
		out = append(out, int64(id))
	}
	return out
}

// merge runs the BPE merges on word and returns its token ids (a fresh slice,
// safe to cache).
//
// The order is the one of tokenizers' Word::merge_all: always apply the
// pending merge with the lowest rank, and among equal ranks the leftmost one.
// Candidates sit in a min-heap; a candidate whose pair has changed since it was
// queued (because a neighbour merged) is recognised and dropped when popped.
func (m *bpeModel) merge(word string, scratch *bpeScratch) []int32 {
	n := len(word)
	symbols := scratch.symbols[:0]
	for i := 0; i < n; i++ {
		symbols = append(symbols, symbol{id: m.byteIDs[word[i]], prev: int32(i - 1), next: int32(i + 1), alive: true})
	}
	symbols[n-1].next = -1

	queue := mergeQueue(scratch.queue[:0])
	for i := 0; i+1 < n; i++ {
		if rule, ok := m.merges[pairKey(symbols[i].id, symbols[i+1].id)]; ok {
			queue.push(mergeCandidate{rank: rule.rank, pos: int32(i), result: rule.result})
		}
	}

	for len(queue) > 0 {
		top := queue.pop()
		left := &symbols[top.pos]
		if !left.alive || left.next < 0 {
			continue
		}
		rightPos := left.next
		right := &symbols[rightPos]
		// A stale candidate: the pair at pos is no longer the one queued.
		if rule, ok := m.merges[pairKey(left.id, right.id)]; !ok || rule.result != top.result {
			continue
		}
		left.id = top.result
		right.alive = false
		left.next = right.next
		if right.next >= 0 {
			symbols[right.next].prev = top.pos
		}
		if left.prev >= 0 {
			if rule, ok := m.merges[pairKey(symbols[left.prev].id, left.id)]; ok {
				queue.push(mergeCandidate{rank: rule.rank, pos: left.prev, result: rule.result})
			}
		}
		if left.next >= 0 {
			if rule, ok := m.merges[pairKey(left.id, symbols[left.next].id)]; ok {
				queue.push(mergeCandidate{rank: rule.rank, pos: top.pos, result: rule.result})
			}
		}
	}

	var ids []int32
	for i := int32(0); i >= 0; i = symbols[i].next {
		ids = append(ids, symbols[i].id)
	}
	scratch.symbols = symbols
	scratch.queue = queue
	return ids
}

// mergeQueue is a binary min-heap ordered by (rank, pos).
type mergeQueue []mergeCandidate

func (q mergeQueue) less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}

func (q *mergeQueue) push(c mergeCandidate) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (q *mergeQueue) pop() mergeCandidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h.less(l, smallest) {
			smallest = l
		}
		if r < len(h) && h.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			break
		}
		h[i], h[smallest] = h[smallest], h[i]
		i = smallest
	}
	*q = h
	return top
}

// Word cache limits, as in tokenizers' BPE: words longer than
// maxCachedWordLen bytes are not cached, and the cache holds at most
// wordCacheCapacity words. When full it is emptied rather than grown, so that
// a long-running server's memory stays bounded.
const (
	maxCachedWordLen  = 256
	wordCacheCapacity = 10000
)

// wordCache memoizes the BPE result of frequent words. It is safe for
// concurrent use.
type wordCache struct {
	mu    sync.RWMutex
	words map[string][]int32
}

func newWordCache() *wordCache {
	return &wordCache{words: make(map[string][]int32, 1024)}
}

func (c *wordCache) get(word string) ([]int32, bool) {
	if len(word) > maxCachedWordLen {
		return nil, false
	}
	c.mu.RLock()
	ids, ok := c.words[word]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(word string, ids []int32) {
	if len(word) > maxCachedWordLen {
		return
	}
	c.mu.Lock()
	if len(c.words) >= wordCacheCapacity {
		clear(c.words)
	}
	// The key is cloned so the cache never pins the caller's whole text.
	c.words[strings.Clone(word)] = ids
	c.mu.Unlock()
}
