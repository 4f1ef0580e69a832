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
	"strings"
)

// Multipart uploads follow fal's JS client's protocol for files over 90 MB
// (docs/fal-protocol.md §8): initiate, PUT {upload_url path}/{partNumber}
// {upload_url query} for each 10 MB part (answered with {partNumber, etag}),
// then POST {upload_url path}/complete{query} with the list of parts, which
// assembles the file.

// MaxParts bounds the number of parts of one upload: 10 GB in the JS
// client's 10 MB parts, far above any -max-upload in use.
const MaxParts = 1000

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

// storedParts returns the sizes of an upload's stored parts by number.
func (s *Local) storedParts(id string) (map[int]int64, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "uploads"))
	if err != nil {
		return nil, fmt.Errorf("storage: list parts: %w", err)
	}
	sizes := map[int]int64{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), id+".")
		n, err := strconv.Atoi(rest)
		if !ok || err != nil {
			continue
		}
		if info, err := e.Info(); err == nil {
			sizes[n] = info.Size()
		}
	}
	return sizes, nil
}

// removeUpload deletes an upload's parts and staging record.
func (s *Local) removeUpload(id string) error {
	sizes, err := s.storedParts(id)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for n := range sizes {
		if err := os.Remove(s.partPath(id, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(filepath.Join(s.root, "uploads", id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PutPart stores part n (1-based) and returns its etag (a SHA-256 prefix).
// A part may be sent again (the client retries); the last copy wins. The
// part may only be as large as what the other stored parts leave of
// MaxUploadBytes; past that the upload is deleted (ErrTooLarge).
func (s *Local) PutPart(ctx context.Context, id, token string, n int, body io.Reader) (Part, error) {
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	unlock, err := s.locks.wait(ctx, id)
	if err != nil {
		return Part{}, err
	}
	defer unlock()
	if _, err := s.readUpload(id, token, true); err != nil {
		return Part{}, err
	}
	sizes, err := s.storedParts(id)
	if err != nil {
		return Part{}, err
	}
	left := partBudget(s.maxUpload, sizes, n)
	h := sha256.New()
	err = writeAtomic(s.partPath(id, n), func(f *os.File) error {
		_, err := io.Copy(io.MultiWriter(f, h), &cappedReader{r: contextReader{ctx, body}, left: left})
		if errors.Is(err, ErrTooLarge) {
			return ErrTooLarge
		}
		if err != nil {
			return fmt.Errorf("storage: write part: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrTooLarge) {
		return Part{}, errors.Join(err, s.removeUpload(id))
	}
	if err != nil {
		return Part{}, err
	}
	return Part{PartNumber: n, ETag: partETag(h)}, nil
}

// CompleteMultipart concatenates the listed parts, in order, into the file.
// Every listed etag must match the stored part.
func (s *Local) CompleteMultipart(ctx context.Context, id, token string, parts []Part) (File, error) {
	unlock, ok := s.locks.try(id)
	if !ok {
		return File{}, ErrBusy
	}
	defer unlock()
	m, err := s.readUpload(id, token, true)
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
	if errors.Is(err, ErrTooLarge) {
		return File{}, errors.Join(err, s.removeUpload(id))
	}
	if err != nil {
		return File{}, err
	}
	file, err := s.publishUpload(id, m, size)
	if err != nil {
		return File{}, err
	}
	s.removeUpload(id) // the parts, and any not listed; the file is published
	return file, nil
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
