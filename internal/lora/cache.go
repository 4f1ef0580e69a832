package lora

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// diskCache keeps downloaded LoRA files under dir/blobs/<sha256>, and
// which download (URL or upload key) gave which content under
// dir/keys/<sha256 of the key>, within a byte budget: the least recently
// used file goes first. Several keys may share one blob. The state is
// rebuilt from the directory at start (recency from file times), so a
// restart keeps the cache.
//
// A URL's content is taken as fixed while it is cached; a LoRA published
// again under the same URL is seen once its entry is evicted or the cache
// directory is cleared.
type diskCache struct {
	dir    string
	budget int64

	mu    sync.Mutex
	used  int64
	order *list.List               // *blobEntry, front: most recent
	blobs map[string]*list.Element // sha256 → entry
	keys  map[string]string        // download key → sha256
}

type blobEntry struct {
	sum  string
	size int64
}

var hexSumRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

func openDiskCache(dir string, budget int64) (*diskCache, error) {
	c := &diskCache{dir: dir, budget: budget, order: list.New(), blobs: map[string]*list.Element{}, keys: map[string]string{}}
	for _, sub := range []string{"blobs", "keys"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("lora cache: %w", err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("lora cache: %w", err)
	}
	type found struct {
		blobEntry
		at time.Time
	}
	var blobs []found
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if !hexSumRe.MatchString(e.Name()) {
			_ = os.Remove(filepath.Join(dir, "blobs", e.Name())) // an interrupted write
			continue
		}
		blobs = append(blobs, found{blobEntry{e.Name(), info.Size()}, info.ModTime()})
	}
	slices.SortFunc(blobs, func(a, b found) int { return b.at.Compare(a.at) })
	for _, b := range blobs {
		c.blobs[b.sum] = c.order.PushBack(&blobEntry{b.sum, b.size})
		c.used += b.size
	}
	keyFiles, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, fmt.Errorf("lora cache: %w", err)
	}
	for _, e := range keyFiles {
		p := filepath.Join(dir, "keys", e.Name())
		raw, err := os.ReadFile(p)
		sum, key, ok := strings.Cut(string(raw), "\n")
		if err != nil || !ok || c.blobs[sum] == nil || e.Name() != hashOf([]byte(key)) {
			_ = os.Remove(p)
			continue
		}
		c.keys[key] = sum
	}
	c.mu.Lock()
	c.evictLocked("")
	c.mu.Unlock()
	return c, nil
}

func (c *diskCache) blobPath(sum string) string { return filepath.Join(c.dir, "blobs", sum) }

// lookup returns the cached content of a download key, marking it used.
func (c *diskCache) lookup(key string) (Blob, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, ok := c.keys[key]
	if !ok {
		return Blob{}, false
	}
	el, ok := c.blobs[sum]
	if !ok {
		delete(c.keys, key)
		return Blob{}, false
	}
	c.order.MoveToFront(el)
	path := c.blobPath(sum)
	now := time.Now()
	_ = os.Chtimes(path, now, now) // recency survives a restart
	return Blob{SHA256: sum, read: func() ([]byte, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("lora cache: %w", err)
		}
		return data, nil
	}}, true
}

// add stores a download's bytes (unless larger than the whole budget) and
// evicts what no longer fits.
func (c *diskCache) add(key string, b Blob) error {
	size := int64(len(b.Data))
	if size > c.budget {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.blobs[b.SHA256]; ok {
		c.order.MoveToFront(el)
	} else {
		tmp, err := os.CreateTemp(filepath.Join(c.dir, "blobs"), "tmp-*")
		if err != nil {
			return fmt.Errorf("lora cache: %w", err)
		}
		_, werr := tmp.Write(b.Data)
		cerr := tmp.Close()
		if werr != nil || cerr != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("lora cache: write: %w", errors.Join(werr, cerr))
		}
		if err := os.Rename(tmp.Name(), c.blobPath(b.SHA256)); err != nil {
			_ = os.Remove(tmp.Name())
			return fmt.Errorf("lora cache: %w", err)
		}
		c.blobs[b.SHA256] = c.order.PushFront(&blobEntry{b.SHA256, size})
		c.used += size
	}
	if err := os.WriteFile(filepath.Join(c.dir, "keys", hashOf([]byte(key))), []byte(b.SHA256+"\n"+key), 0o644); err != nil {
		return fmt.Errorf("lora cache: %w", err)
	}
	c.keys[key] = b.SHA256
	c.evictLocked(b.SHA256)
	return nil
}

// evictLocked drops least recently used blobs (never keep) until the
// cache fits its budget.
func (c *diskCache) evictLocked(keep string) {
	for c.used > c.budget {
		el := c.order.Back()
		if el == nil {
			return
		}
		e := el.Value.(*blobEntry)
		if e.sum == keep {
			if el.Prev() == nil {
				return
			}
			el = el.Prev()
			e = el.Value.(*blobEntry)
		}
		c.order.Remove(el)
		delete(c.blobs, e.sum)
		c.used -= e.size
		_ = os.Remove(c.blobPath(e.sum))
		for k, s := range c.keys {
			if s == e.sum {
				delete(c.keys, k)
				_ = os.Remove(filepath.Join(c.dir, "keys", hashOf([]byte(k))))
			}
		}
	}
}

// usage reports the cached bytes and files.
func (c *diskCache) usage() (bytes int64, files int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.order.Len()
}
