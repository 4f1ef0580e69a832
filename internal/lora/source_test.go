package lora

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFetcher serves fixed bodies by URL and counts fetches; gate, when
// set, holds every fetch until closed.
type fakeFetcher struct {
	bodies  map[string][]byte
	fetches atomic.Int32
	gate    chan struct{}
}

func (f *fakeFetcher) Fetch(ctx context.Context, u string, maxBytes int64) (io.ReadCloser, error) {
	f.fetches.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b, ok := f.bodies[u]
	if !ok {
		return nil, errors.New("404 not found")
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type fakeFiles map[string][]byte

func (f fakeFiles) Open(_ context.Context, key string) (io.ReadCloser, error) {
	b, ok := f[key]
	if !ok {
		return nil, errors.New("not found")
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func mustBytes(t *testing.T, b Blob) []byte {
	t.Helper()
	data, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestStoreSources(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	payload := []byte("safetensors bytes")
	if err := os.WriteFile(filepath.Join(dir, "style.safetensors"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b.safetensors"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link.safetensors")); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(StoreConfig{Dir: dir, Files: fakeFiles{"0123abcd.safetensors": payload},
		FilesURL: "https://api.example/files/", Fetcher: &fakeFetcher{bodies: map[string][]byte{"https://hf.example/a.safetensors": payload}},
		MaxFileBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	want := hashOf(payload)
	for _, ref := range []string{"style.safetensors", "style", "sub/b.safetensors", "sub/b",
		"data:application/octet-stream;base64," + base64.StdEncoding.EncodeToString(payload),
		"https://api.example/files/0123abcd.safetensors", "/files/0123abcd.safetensors", "https://hf.example/a.safetensors"} {
		b, err := s.Load(ctx, ref)
		if err != nil {
			t.Fatalf("%.60s: %v", ref, err)
		}
		if b.SHA256 != want || !bytes.Equal(mustBytes(t, b), payload) {
			t.Fatalf("%.60s: wrong content", ref)
		}
	}
	big := base64.StdEncoding.EncodeToString(make([]byte, 2<<10))
	for ref, kind := range map[string]error{
		"../secret":                         ErrSource,
		filepath.Join(outside, "secret"):    ErrSource,
		"link.safetensors":                  ErrSource, // a symbolic link out of the directory
		"sub/../../secret":                  ErrSource,
		"missing":                           ErrSource,
		"sub":                               ErrSource,
		"ftp://host/a.safetensors":          ErrSource,
		"file:///etc/passwd":                ErrSource,
		"data:text/plain,abc":               ErrSource,
		"data:;base64,@@@":                  ErrSource,
		"data:;base64," + big:               ErrTooLarge,
		"/files/../x":                       ErrSource,
		"/files/unknown":                    ErrSource,
		"https://hf.example/missing":        ErrSource,
		"https://api.example/files/a/b/c":   ErrSource,
		"https://api.example/files/.hidden": ErrSource,
	} {
		if _, err := s.Load(ctx, ref); !errors.Is(err, kind) {
			t.Errorf("%.60s: got %v, want %v", ref, err, kind)
		}
	}
	none, err := NewStore(StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"https://hf.example/a", "/files/abc", "name"} {
		if _, err := none.Load(ctx, ref); !errors.Is(err, ErrSource) {
			t.Errorf("no sources configured, %s: %v", ref, err)
		}
	}
}

func TestStoreFetchesOnceAndCaches(t *testing.T) {
	cache := t.TempDir()
	body := bytes.Repeat([]byte{7}, 100)
	f := &fakeFetcher{bodies: map[string][]byte{"https://x.example/l.safetensors": body}, gate: make(chan struct{})}
	s, err := NewStore(StoreConfig{Fetcher: f, CacheDir: cache, CacheBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Load(context.Background(), "https://x.example/l.safetensors")
		}()
	}
	for f.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(f.gate)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.fetches.Load(); got != 1 {
		t.Fatalf("%d concurrent loads fetched %d times, want once", n, got)
	}
	// Served from the cache from now on, also by a new store on the same
	// directory (a restart).
	s2, err := NewStore(StoreConfig{Fetcher: f, CacheDir: cache, CacheBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s2.Load(context.Background(), "https://x.example/l.safetensors")
	if err != nil || !bytes.Equal(mustBytes(t, b), body) || f.fetches.Load() != 1 {
		t.Fatalf("after restart: %v, %d fetches", err, f.fetches.Load())
	}
	// A caller that gives up does not cancel the download for the others.
	f2 := &fakeFetcher{bodies: map[string][]byte{"https://x.example/m": body}, gate: make(chan struct{})}
	s3, _ := NewStore(StoreConfig{Fetcher: f2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := s3.Load(ctx, "https://x.example/m"); done <- err }()
	other := make(chan error)
	go func() { _, err := s3.Load(context.Background(), "https://x.example/m"); other <- err }()
	for f2.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	close(f2.gate)
	if err := <-other; err != nil {
		t.Fatalf("the other caller: %v", err)
	}
}

func TestDiskCacheEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	bodies := map[string][]byte{}
	for i := range 4 {
		bodies[fmt.Sprintf("https://x.example/%d", i)] = bytes.Repeat([]byte{byte(i)}, 40)
	}
	f := &fakeFetcher{bodies: bodies}
	s, err := NewStore(StoreConfig{Fetcher: f, CacheDir: dir, CacheBytes: 100}) // room for two
	if err != nil {
		t.Fatal(err)
	}
	load := func(i int) {
		t.Helper()
		if _, err := s.Load(context.Background(), fmt.Sprintf("https://x.example/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	load(0)
	load(1)
	load(0) // 0 is now more recent than 1
	load(2) // evicts 1
	if got := f.fetches.Load(); got != 3 {
		t.Fatalf("%d fetches, want 3", got)
	}
	load(0)
	if got := f.fetches.Load(); got != 3 {
		t.Fatalf("0 was evicted: %d fetches", got)
	}
	load(1)
	if got := f.fetches.Load(); got != 4 {
		t.Fatalf("1 should have been evicted: %d fetches", got)
	}
	if used, files := s.cache.usage(); used > 100 || files != 2 {
		t.Fatalf("cache holds %d bytes in %d files", used, files)
	}
	blobs, _ := os.ReadDir(filepath.Join(dir, "blobs"))
	keys, _ := os.ReadDir(filepath.Join(dir, "keys"))
	if len(blobs) != 2 || len(keys) != 2 {
		t.Fatalf("on disk: %d blobs, %d keys", len(blobs), len(keys))
	}
	// Two URLs with the same bytes share one blob.
	f.bodies["https://mirror.example/0"] = bodies["https://x.example/0"]
	if _, err := s.Load(context.Background(), "https://mirror.example/0"); err != nil {
		t.Fatal(err)
	}
	if _, files := s.cache.usage(); files != 2 {
		t.Fatalf("%d blobs after loading the same bytes from a second URL", files)
	}
}

func TestMemo(t *testing.T) {
	m := NewMemo[int](10)
	var calls atomic.Int32
	load := func(v int, n int64) func(context.Context) (int, int64, error) {
		return func(context.Context) (int, int64, error) { calls.Add(1); return v, n, nil }
	}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a"} {
		if _, err := m.Get(ctx, k, load(1, 4)); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 2 || m.Len() != 2 || m.Bytes() != 8 {
		t.Fatalf("calls %d, len %d, bytes %d", calls.Load(), m.Len(), m.Bytes())
	}
	_, _ = m.Get(ctx, "c", load(1, 4)) // evicts b, the least recently used
	_, _ = m.Get(ctx, "a", load(1, 4))
	if calls.Load() != 3 {
		t.Fatalf("a was evicted (%d calls)", calls.Load())
	}
	_, _ = m.Get(ctx, "huge", load(2, 11)) // larger than the budget: returned, not kept
	if m.Len() != 2 {
		t.Fatalf("len %d", m.Len())
	}
	failing := func(context.Context) (int, int64, error) { return 0, 0, errors.New("bad file") }
	if _, err := m.Get(ctx, "bad", failing); err == nil || m.Len() != 2 {
		t.Fatalf("a failed load: %v, len %d", err, m.Len())
	}
}
