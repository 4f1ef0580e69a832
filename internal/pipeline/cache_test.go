package pipeline

import (
	"fmt"
	"testing"
)

func TestEmbedCacheBytes(t *testing.T) {
	entry := func(n int) []float32 { return make([]float32, n) }
	c := newEmbedCache(1000)
	c.put("a", entry(100)) // 401 bytes
	c.put("b", entry(100)) // 802
	if _, ok := c.get("a"); !ok {
		t.Fatal("a missing")
	}
	c.put("c", entry(100)) // over 1000: b (least recently used) goes
	if _, ok := c.get("b"); ok {
		t.Error("b kept past the budget")
	}
	if n, b := c.stats(); n != 2 || b != 802 {
		t.Errorf("stats %d entries, %d bytes; want 2, 802", n, b)
	}
	c.put("a", entry(50)) // replacing an entry updates the bytes
	if _, b := c.stats(); b != 602 {
		t.Errorf("after replacing a: %d bytes, want 602", b)
	}
	c.put("huge", entry(1000)) // larger than the budget: not kept, nothing evicted
	if _, ok := c.get("huge"); ok {
		t.Error("an entry larger than the budget was kept")
	}
	if n, _ := c.stats(); n != 2 {
		t.Errorf("%d entries after a too-large put, want 2", n)
	}
	off := newEmbedCache(0)
	off.put("x", entry(1))
	if _, ok := off.get("x"); ok {
		t.Error("a zero budget cached")
	}
}

// 80 distinct prompts of the 4B model (512 x 7680 float32 each) stay within
// the default budget; the count-bounded cache held 64 of them.
func TestEmbedCacheRealWidth(t *testing.T) {
	c := newEmbedCache(DefaultPromptCacheBytes)
	const width = 512 * 7680
	for i := range 80 {
		c.put(fmt.Sprintf("prompt %d", i), make([]float32, width))
	}
	n, b := c.stats()
	t.Logf("80 prompts of 15.7 MB: %d kept, %.0f MiB (a 64-entry cache: %.0f MiB)", n, mib(b), mib(64*4*width))
	if b > DefaultPromptCacheBytes || n != DefaultPromptCacheBytes/(4*width) {
		t.Errorf("%d entries, %d bytes", n, b)
	}
}
