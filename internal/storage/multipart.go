package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// Multipart uploads follow the JS client's protocol for files over 90 MB
// (docs/fal-protocol.md §8): initiate, PUT {upload_url}/{partNumber} for each part
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

// checkPartNumber rejects part numbers outside 1..MaxParts.
func checkPartNumber(n int) error {
	if n < 1 || n > MaxParts {
		return fmt.Errorf("%w: part number %d not in 1..%d", ErrBadPart, n, MaxParts)
	}
	return nil
}

// checkPartList accepts a complete request's parts only as 1..n in order.
func checkPartList(parts []Part) error {
	if len(parts) == 0 || len(parts) > MaxParts {
		return fmt.Errorf("%w: %d parts listed", ErrBadPart, len(parts))
	}
	for i, p := range parts {
		if p.PartNumber != i+1 {
			return fmt.Errorf("%w: parts must be listed as 1..n in order (got %d at %d)", ErrBadPart, p.PartNumber, i+1)
		}
	}
	return nil
}

// partETag is a part's etag: the first 16 bytes of its SHA-256, in hex.
// Both backends compute it the same way, so etags do not depend on the
// object store's own (backend-specific) ETag.
func partETag(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)[:16]) }

// InitiateMultipartUpload reserves an upload whose bytes arrive in parts.
func (s *Local) InitiateMultipartUpload(ctx context.Context, contentType, fileName string) (Upload, error) {
	return s.initiate(ctx, contentType, fileName, true)
}

func (s *Local) partPath(id string, n int) string {
	return filepath.Join(s.root, "uploads", id+"."+strconv.Itoa(n))
}

// multipartMeta loads an initiated multipart upload.
func (s *Local) multipartMeta(id string) (uploadMeta, error) {
	if !uploadIDPattern.MatchString(id) {
		return uploadMeta{}, ErrNotFound
	}
	m, err := s.readMeta("uploads", id)
	if err != nil {
		return uploadMeta{}, err
	}
	if !m.Multipart {
		return uploadMeta{}, ErrNotFound
	}
	return m, nil
}

// PutPart stores part n (1-based) and returns its etag (a SHA-256 prefix).
// A part may be sent again (the client retries); the last copy wins.
func (s *Local) PutPart(ctx context.Context, id string, n int, body io.Reader) (Part, error) {
	if _, err := s.multipartMeta(id); err != nil {
		return Part{}, err
	}
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	h := sha256.New()
	err := writeAtomic(s.partPath(id, n), func(f *os.File) error {
		_, err := io.Copy(io.MultiWriter(f, h), &cappedReader{r: contextReader{ctx, body}, left: s.maxUpload})
		if errors.Is(err, ErrTooLarge) {
			return ErrTooLarge
		}
		if err != nil {
			return fmt.Errorf("storage: write part: %w", err)
		}
		return nil
	})
	if err != nil {
		return Part{}, err
	}
	return Part{PartNumber: n, ETag: partETag(h)}, nil
}

// CompleteMultipart concatenates the listed parts, in order, into the file.
// Every listed etag must match the stored part.
func (s *Local) CompleteMultipart(ctx context.Context, id string, parts []Part) (File, error) {
	m, err := s.multipartMeta(id)
	if err != nil {
		return File{}, err
	}
	if err := checkPartList(parts); err != nil {
		return File{}, err
	}
	// The initiation's type, else the extension's: the same on every backend.
	m.ContentType = servedContentType(m.ContentType, m.Key)
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
func (s *Local) appendPart(f *os.File, id string, p Part) (int64, error) {
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
	if partETag(h) != p.ETag {
		return 0, fmt.Errorf("%w: etag of part %d does not match", ErrBadPart, p.PartNumber)
	}
	return n, nil
}
