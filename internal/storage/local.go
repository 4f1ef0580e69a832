// Package storage is the local-disk file store behind /files/...: it keeps
// generated images and client uploads, serves them with their content type,
// builds their absolute public URLs and deletes them after a retention
// period.
//
// Layout under the root directory:
//
//	files/<key>        the bytes (key = random id + extension)
//	meta/<key>.json    content type and original name
//	uploads/<id>.json  initiated, not yet PUT uploads
//	uploads/<id>.<n>   received parts of a multipart upload
//
// Keys and upload ids are 128-bit random values, so URLs cannot be guessed;
// the upload PUT needs no credentials (fal clients send none) for that reason.
package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ErrNotFound is returned for unknown keys and upload ids.
var ErrNotFound = errors.New("storage: not found")

// ErrTooLarge is returned when an upload exceeds the size limit.
var ErrTooLarge = errors.New("storage: file too large")

var (
	keyPattern      = regexp.MustCompile(`^[0-9a-f]{32}\.[a-z0-9]{1,10}$`)
	uploadIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	extPattern      = regexp.MustCompile(`^[a-z0-9]{1,10}$`)
)

// File describes a stored file.
type File struct {
	Key         string
	URL         string
	ContentType string
	FileName    string
	Size        int64
}

// Upload is an initiated upload: PUT the bytes to UploadURL, then the file
// is served at FileURL.
type Upload struct {
	ID        string
	UploadURL string
	FileURL   string
}

type meta struct {
	ContentType string    `json:"content_type"`
	FileName    string    `json:"file_name"`
	Key         string    `json:"key,omitempty"` // uploads only: the key the bytes go to
	Multipart   bool      `json:"multipart,omitempty"`
	Created     time.Time `json:"created"`
}

// Store is a directory of files with public URLs.
type Store struct {
	root      string
	publicURL string
	maxUpload int64
}

// Options configures a Store.
type Options struct {
	// PublicURL is the server's external base URL, e.g. http://127.0.0.1:8080.
	PublicURL string
	// MaxUploadBytes bounds one uploaded file (default 256 MiB).
	MaxUploadBytes int64
}

// Open creates the directory layout under root.
func Open(root string, opts Options) (*Store, error) {
	for _, dir := range []string{"files", "meta", "uploads"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return nil, fmt.Errorf("storage: create %s: %w", dir, err)
		}
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = 256 << 20
	}
	return &Store{root: root, publicURL: strings.TrimRight(opts.PublicURL, "/"), maxUpload: opts.MaxUploadBytes}, nil
}

// MaxUploadBytes is the upload size limit.
func (s *Store) MaxUploadBytes() int64 { return s.maxUpload }

// FileURL is the public URL of a key.
func (s *Store) FileURL(key string) string { return s.publicURL + "/files/" + key }

// UploadURL is the public PUT target of an upload id.
func (s *Store) UploadURL(id string) string { return s.publicURL + "/storage/upload/" + id }

func randomHex() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("storage: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// extension picks a safe file extension from a name or a content type.
func extension(fileName, contentType string) string {
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(fileName), "."))
	if ext == "" || !extPattern.MatchString(ext) {
		ext = ""
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			switch mt {
			case "image/jpeg":
				ext = "jpeg"
			case "image/png":
				ext = "png"
			case "image/webp":
				ext = "webp"
			default:
				if exts, err := mime.ExtensionsByType(mt); err == nil && len(exts) > 0 {
					ext = strings.TrimPrefix(exts[0], ".")
				}
			}
		}
	}
	if ext == "" {
		ext = "bin"
	}
	return ext
}

func (s *Store) writeMeta(dir, name string, m meta) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("storage: encode metadata: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.root, dir, name+".json"), raw)
}

func (s *Store) readMeta(dir, name string) (meta, error) {
	var m meta
	raw, err := os.ReadFile(filepath.Join(s.root, dir, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return m, ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("storage: read metadata: %w", err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("storage: decode metadata: %w", err)
	}
	return m, nil
}

// writeFileAtomic writes via a temporary file and rename, so readers never
// see a partial file.
func writeFileAtomic(name string, data []byte) error {
	return writeAtomic(name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

func writeAtomic(name string, fill func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return fmt.Errorf("storage: create temp file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	// Results that reference this file are committed durably; the file must
	// be on disk before the rename makes it visible.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("storage: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("storage: close temp file: %w", err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("storage: rename: %w", err)
	}
	return nil
}

// Save stores generated bytes under a new random key.
func (s *Store) Save(ctx context.Context, data []byte, contentType, ext string) (File, error) {
	if err := ctx.Err(); err != nil {
		return File{}, err
	}
	id, err := randomHex()
	if err != nil {
		return File{}, err
	}
	key := id + "." + extension("x."+ext, contentType)
	if err := s.writeMeta("meta", key, meta{ContentType: contentType, FileName: key, Created: time.Now()}); err != nil {
		return File{}, err
	}
	if err := writeFileAtomic(filepath.Join(s.root, "files", key), data); err != nil {
		return File{}, err
	}
	return File{Key: key, URL: s.FileURL(key), ContentType: contentType, FileName: key, Size: int64(len(data))}, nil
}

// InitiateUpload reserves an upload id and the key its bytes will get.
func (s *Store) InitiateUpload(contentType, fileName string) (Upload, error) {
	return s.initiate(contentType, fileName, false)
}

func (s *Store) initiate(contentType, fileName string, multipart bool) (Upload, error) {
	id, err := randomHex()
	if err != nil {
		return Upload{}, err
	}
	keyID, err := randomHex()
	if err != nil {
		return Upload{}, err
	}
	key := keyID + "." + extension(fileName, contentType)
	m := meta{ContentType: contentType, FileName: path.Base(fileName), Key: key, Multipart: multipart, Created: time.Now()}
	if err := s.writeMeta("uploads", id, m); err != nil {
		return Upload{}, err
	}
	return Upload{ID: id, UploadURL: s.UploadURL(id), FileURL: s.FileURL(key)}, nil
}

// CompleteUpload stores the bytes of an initiated upload. contentType, when
// set, overrides the one given at initiation (the PUT's header wins).
func (s *Store) CompleteUpload(ctx context.Context, id string, body io.Reader, contentType string) (File, error) {
	if !uploadIDPattern.MatchString(id) {
		return File{}, ErrNotFound
	}
	m, err := s.readMeta("uploads", id)
	if err != nil {
		return File{}, err
	}
	if m.Multipart {
		return File{}, ErrNotFound // its bytes come in parts
	}
	if contentType != "" && contentType != "application/octet-stream" {
		m.ContentType = contentType
	}
	if m.ContentType == "" {
		m.ContentType = "application/octet-stream"
	}
	var size int64
	err = writeAtomic(filepath.Join(s.root, "files", m.Key), func(f *os.File) error {
		n, err := io.Copy(f, io.LimitReader(contextReader{ctx, body}, s.maxUpload+1))
		size = n
		if err != nil {
			return fmt.Errorf("storage: write upload: %w", err)
		}
		if n > s.maxUpload {
			return ErrTooLarge
		}
		return nil
	})
	if err != nil {
		return File{}, err
	}
	return s.publishUpload(id, m, size)
}

// publishUpload records the metadata of a finished upload's file and
// retires the upload id.
func (s *Store) publishUpload(id string, m meta, size int64) (File, error) {
	if err := s.writeMeta("meta", m.Key, meta{ContentType: m.ContentType, FileName: m.FileName, Created: time.Now()}); err != nil {
		return File{}, err
	}
	if err := os.Remove(filepath.Join(s.root, "uploads", id+".json")); err != nil {
		return File{}, fmt.Errorf("storage: finish upload: %w", err)
	}
	return File{Key: m.Key, URL: s.FileURL(m.Key), ContentType: m.ContentType, FileName: m.FileName, Size: size}, nil
}

// contextReader stops a copy when the request context ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Serve writes a stored file (GET and HEAD, with ranges and conditional
// requests via http.ServeContent). Unknown keys answer ErrNotFound.
func (s *Store) Serve(w http.ResponseWriter, r *http.Request, key string) error {
	if !keyPattern.MatchString(key) {
		return ErrNotFound
	}
	f, err := os.Open(filepath.Join(s.root, "files", key))
	if errors.Is(err, os.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", key, err)
	}
	contentType := mime.TypeByExtension(path.Ext(key))
	if m, err := s.readMeta("meta", key); err == nil && m.ContentType != "" {
		contentType = m.ContentType
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	// Uploaded HTML or SVG must not run scripts on this origin.
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, "", st.ModTime(), f)
	return nil
}

// DeleteOlderThan removes files, metadata and unfinished uploads last
// modified before t and returns how many files it removed.
func (s *Store) DeleteOlderThan(t time.Time) (int, error) {
	removed := 0
	var errs []error
	for _, dir := range []string{"files", "meta", "uploads"} {
		entries, err := os.ReadDir(filepath.Join(s.root, dir))
		if err != nil {
			errs = append(errs, fmt.Errorf("storage: list %s: %w", dir, err))
			continue
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || e.IsDir() || !info.ModTime().Before(t) {
				continue
			}
			if err := os.Remove(filepath.Join(s.root, dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("storage: remove: %w", err))
				continue
			}
			if dir == "files" {
				removed++
			}
		}
	}
	return removed, errors.Join(errs...)
}

// RunJanitor deletes files older than retention every interval until ctx
// is done. The caller owns the goroutine that runs it.
func (s *Store) RunJanitor(ctx context.Context, interval, retention time.Duration, onError func(error), onDelete func(int)) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			n, err := s.DeleteOlderThan(time.Now().Add(-retention))
			if err != nil && onError != nil {
				onError(err)
			}
			if n > 0 && onDelete != nil {
				onDelete(n)
			}
		}
	}
}
