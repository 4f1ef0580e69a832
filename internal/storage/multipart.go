package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Multipart uploads follow the JS client's protocol for files over 90 MB
// (fal-api.md §7.1): initiate, PUT {upload_url}/{partNumber} for each part
// (answered with {partNumber, etag}), then POST {upload_url}/complete with
// the list of parts, which assembles the file.

// MaxParts bounds the number of parts of one upload.
const MaxParts = 10_000

// ErrBadPart is returned for part numbers out of range and for a complete
// request whose parts or etags do not match what was uploaded.
var ErrBadPart = errors.New("storage: bad multipart part")

// Part identifies one received part.
type Part struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
}

// InitiateMultipartUpload reserves an upload whose bytes arrive in parts.
func (s *Store) InitiateMultipartUpload(contentType, fileName string) (Upload, error) {
	return s.initiate(contentType, fileName, true)
}

func (s *Store) partPath(id string, n int) string {
	return filepath.Join(s.root, "uploads", id+"."+strconv.Itoa(n))
}

// multipartMeta loads an initiated multipart upload.
func (s *Store) multipartMeta(id string) (meta, error) {
	if !uploadIDPattern.MatchString(id) {
		return meta{}, ErrNotFound
	}
	m, err := s.readMeta("uploads", id)
	if err != nil {
		return meta{}, err
	}
	if !m.Multipart {
		return meta{}, ErrNotFound
	}
	return m, nil
}

// PutPart stores part n (1-based) and returns its etag (a SHA-256 prefix).
// A part may be sent again (the client retries); the last copy wins.
func (s *Store) PutPart(ctx context.Context, id string, n int, body io.Reader) (Part, error) {
	if _, err := s.multipartMeta(id); err != nil {
		return Part{}, err
	}
	if n < 1 || n > MaxParts {
		return Part{}, fmt.Errorf("%w: part number %d not in 1..%d", ErrBadPart, n, MaxParts)
	}
	h := sha256.New()
	err := writeAtomic(s.partPath(id, n), func(f *os.File) error {
		written, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(contextReader{ctx, body}, s.maxUpload+1))
		if err != nil {
			return fmt.Errorf("storage: write part: %w", err)
		}
		if written > s.maxUpload {
			return ErrTooLarge
		}
		return nil
	})
	if err != nil {
		return Part{}, err
	}
	return Part{PartNumber: n, ETag: hex.EncodeToString(h.Sum(nil)[:16])}, nil
}

// CompleteMultipart concatenates the listed parts, in order, into the file.
// Every listed etag must match the stored part.
func (s *Store) CompleteMultipart(ctx context.Context, id string, parts []Part) (File, error) {
	m, err := s.multipartMeta(id)
	if err != nil {
		return File{}, err
	}
	if len(parts) == 0 || len(parts) > MaxParts {
		return File{}, fmt.Errorf("%w: %d parts listed", ErrBadPart, len(parts))
	}
	for i, p := range parts {
		if p.PartNumber != i+1 {
			return File{}, fmt.Errorf("%w: parts must be listed as 1..n in order (got %d at %d)", ErrBadPart, p.PartNumber, i+1)
		}
	}
	var size int64
	err = writeAtomic(filepath.Join(s.root, "files", m.Key), func(f *os.File) error {
		for _, p := range parts {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := s.appendPart(f, id, p)
			if err != nil {
				return err
			}
			size += n
			if size > s.maxUpload {
				return ErrTooLarge
			}
		}
		return nil
	})
	if err != nil {
		return File{}, err
	}
	for _, p := range parts {
		os.Remove(s.partPath(id, p.PartNumber))
	}
	return s.publishUpload(id, m, size)
}

// appendPart copies one stored part into f after checking its etag.
func (s *Store) appendPart(f *os.File, id string, p Part) (int64, error) {
	part, err := os.Open(s.partPath(id, p.PartNumber))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: part %d was never uploaded", ErrBadPart, p.PartNumber)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: open part: %w", err)
	}
	defer part.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), part)
	if err != nil {
		return 0, fmt.Errorf("storage: copy part: %w", err)
	}
	if hex.EncodeToString(h.Sum(nil)[:16]) != p.ETag {
		return 0, fmt.Errorf("%w: etag of part %d does not match", ErrBadPart, p.PartNumber)
	}
	return n, nil
}
