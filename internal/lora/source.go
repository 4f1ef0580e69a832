package lora

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Blob is a LoRA file: the SHA-256 (hex) of its bytes, the identity under
// which its conversion is kept, and the bytes, in memory or in the cache.
type Blob struct {
	SHA256 string
	Data   []byte                 // nil when the bytes are read on demand
	read   func() ([]byte, error) // reads them (a cached or named file)
}

// Bytes returns the file's bytes, reading them from disk if needed (a
// caller whose conversion of SHA256 is kept never needs them).
func (b Blob) Bytes() ([]byte, error) {
	if b.Data != nil || b.read == nil {
		return b.Data, nil
	}
	return b.read()
}

// Fetcher downloads an http(s) URL: the server's guarded fetcher, which
// refuses private addresses and bounds redirects and time. The body is
// read up to maxBytes+1 bytes, so a longer one is detected.
type Fetcher interface {
	Fetch(ctx context.Context, rawURL string, maxBytes int64) (io.ReadCloser, error)
}

// Files opens a file of this server's file store by its key (the part of a
// /files/<key> URL after /files/).
type Files interface {
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// Reference errors: the request named a file this store cannot or will not
// read. The messages are safe to show to a client.
var (
	ErrSource   = errors.New("LoRA path not usable")
	ErrTooLarge = errors.New("LoRA file too large")
)

// Defaults of StoreConfig.
const (
	DefaultMaxFileBytes = 1 << 30
	DefaultCacheBytes   = 8 << 30
)

// StoreConfig says where LoRA files may come from and where downloads are
// kept.
type StoreConfig struct {
	// Fetcher downloads http(s) URLs (nil: URLs are refused).
	Fetcher Fetcher
	// Files and FilesURL serve this server's uploads: a path starting with
	// FilesURL (the public base URL + "/files/") or with "/files/" is read
	// through Files (nil: refused).
	Files    Files
	FilesURL string
	// Dir holds operator-provided LoRA files, named in requests by their
	// path relative to Dir (a missing ".safetensors" is added). Empty: no
	// names.
	Dir string
	// CacheDir keeps downloaded files by content hash, CacheBytes at most
	// (least recently used out first). Empty: downloads are not kept.
	CacheDir   string
	CacheBytes int64
	// MaxFileBytes bounds one LoRA file from any source.
	MaxFileBytes int64
}

// Store resolves the path of a request's LoRA to its bytes: a URL through
// the Fetcher, an upload through Files, a data: URI, or a name in Dir.
// Downloads (URLs and uploads) go through an on-disk cache keyed by the
// path and by content hash; concurrent requests for the same path share
// one download.
type Store struct {
	cfg   StoreConfig
	root  *os.Root // Dir, opened so that no name can leave it
	cache *diskCache
	group singleflight.Group

	mu    sync.Mutex
	local map[string]localEntry // Dir names: hash by size and mtime
}

type localEntry struct {
	size  int64
	mtime time.Time
	sum   string
}

// NewStore checks the configuration and opens the directories.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	s := &Store{cfg: cfg, local: map[string]localEntry{}}
	if cfg.Dir != "" {
		root, err := os.OpenRoot(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("lora dir: %w", err)
		}
		s.root = root
	}
	if cfg.CacheDir != "" {
		c, err := openDiskCache(cfg.CacheDir, cfg.CacheBytes)
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	return s, nil
}

// Close releases the LoRA directory.
func (s *Store) Close() error {
	if s.root != nil {
		return s.root.Close()
	}
	return nil
}

var fileKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)

// Load returns the bytes of the file ref names.
func (s *Store) Load(ctx context.Context, ref string) (Blob, error) {
	ref = strings.TrimSpace(ref)
	switch {
	case strings.HasPrefix(ref, "data:"):
		return s.dataURI(ref)
	case s.cfg.FilesURL != "" && strings.HasPrefix(ref, s.cfg.FilesURL), strings.HasPrefix(ref, "/files/"):
		key := strings.TrimPrefix(strings.TrimPrefix(ref, s.cfg.FilesURL), "/files/")
		if i := strings.IndexAny(key, "?#"); i >= 0 {
			key = key[:i]
		}
		if s.cfg.Files == nil {
			return Blob{}, fmt.Errorf("%w: uploaded files are not enabled", ErrSource)
		}
		if !fileKeyRe.MatchString(key) {
			return Blob{}, fmt.Errorf("%w: not a file of this server", ErrSource)
		}
		return s.cached(ctx, "files:"+key, func(ctx context.Context) (io.ReadCloser, error) {
			return s.cfg.Files.Open(ctx, key)
		})
	case strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://"):
		if s.cfg.Fetcher == nil {
			return Blob{}, fmt.Errorf("%w: URLs are not enabled", ErrSource)
		}
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" {
			return Blob{}, fmt.Errorf("%w: malformed URL", ErrSource)
		}
		return s.cached(ctx, "url:"+ref, func(ctx context.Context) (io.ReadCloser, error) {
			return s.cfg.Fetcher.Fetch(ctx, ref, s.cfg.MaxFileBytes)
		})
	case strings.Contains(ref, "://"):
		return Blob{}, fmt.Errorf("%w: only http and https URLs are fetched", ErrSource)
	default:
		return s.named(ref)
	}
}

// dataURI decodes "data:[type][;base64],payload" (base64 only: LoRA files
// are binary).
func (s *Store) dataURI(ref string) (Blob, error) {
	head, payload, ok := strings.Cut(strings.TrimPrefix(ref, "data:"), ",")
	if !ok || !strings.HasSuffix(head, ";base64") {
		return Blob{}, fmt.Errorf("%w: a data URI must be base64 (data:...;base64,...)", ErrSource)
	}
	if int64(base64.StdEncoding.DecodedLen(len(payload))) > s.cfg.MaxFileBytes+2 {
		return Blob{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, s.cfg.MaxFileBytes)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return Blob{}, fmt.Errorf("%w: data URI: %w", ErrSource, err)
	}
	return Blob{SHA256: hashOf(data), Data: data}, nil
}

// named reads a file of the LoRA directory. os.Root refuses names that
// leave the directory, through ".." or through symbolic links.
func (s *Store) named(name string) (Blob, error) {
	if s.root == nil {
		return Blob{}, fmt.Errorf("%w: not a URL, and no LoRA directory is configured", ErrSource)
	}
	if !filepath.IsLocal(name) {
		return Blob{}, fmt.Errorf("%w: %q is not a name inside the LoRA directory", ErrSource, name)
	}
	f, err := s.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) && !strings.HasSuffix(name, ".safetensors") {
		name += ".safetensors"
		f, err = s.root.Open(name)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Blob{}, fmt.Errorf("%w: no LoRA named %q", ErrSource, name)
		}
		return Blob{}, fmt.Errorf("%w: %q cannot be opened", ErrSource, name)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return Blob{}, fmt.Errorf("%w: %q is not a regular file", ErrSource, name)
	}
	if st.Size() > s.cfg.MaxFileBytes {
		return Blob{}, fmt.Errorf("%w: %q has %d bytes, more than %d", ErrTooLarge, name, st.Size(), s.cfg.MaxFileBytes)
	}
	s.mu.Lock()
	e, ok := s.local[name]
	s.mu.Unlock()
	if ok && e.size == st.Size() && e.mtime.Equal(st.ModTime()) {
		// Unchanged since it was hashed: read only if the caller needs it.
		return Blob{SHA256: e.sum, read: func() ([]byte, error) {
			f, err := s.root.Open(name)
			if err != nil {
				return nil, fmt.Errorf("%w: %q cannot be opened", ErrSource, name)
			}
			defer f.Close()
			return readAtMost(f, s.cfg.MaxFileBytes)
		}}, nil
	}
	data, err := readAtMost(f, s.cfg.MaxFileBytes)
	if err != nil {
		return Blob{}, err
	}
	sum := hashOf(data)
	s.mu.Lock()
	s.local[name] = localEntry{st.Size(), st.ModTime(), sum}
	s.mu.Unlock()
	return Blob{SHA256: sum, Data: data}, nil
}

// cached serves a download from the cache or fetches it once for every
// concurrent caller.
func (s *Store) cached(ctx context.Context, key string, open func(context.Context) (io.ReadCloser, error)) (Blob, error) {
	if s.cache != nil {
		if b, ok := s.cache.lookup(key); ok {
			return b, nil
		}
	}
	ch := s.group.DoChan(key, func() (any, error) {
		if s.cache != nil {
			if b, ok := s.cache.lookup(key); ok {
				return b, nil
			}
		}
		// Shared by every waiter: one that gives up does not cancel it.
		ctx := context.WithoutCancel(ctx)
		rc, err := open(ctx)
		if err != nil {
			return Blob{}, fmt.Errorf("%w: %w", ErrSource, err)
		}
		defer rc.Close()
		data, err := readAtMost(rc, s.cfg.MaxFileBytes)
		if err != nil {
			return Blob{}, err
		}
		b := Blob{SHA256: hashOf(data), Data: data}
		if s.cache != nil {
			if err := s.cache.add(key, b); err != nil {
				return Blob{}, err
			}
		}
		return b, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Blob{}, res.Err
		}
		return res.Val.(Blob), nil
	case <-ctx.Done():
		return Blob{}, ctx.Err()
	}
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading: %w", ErrSource, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
