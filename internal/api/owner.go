package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// Requests belong to the key that made them: another key gets 404 for
// their status, stream, result and cancel, as for a request that does not
// exist. A job carries an owner fingerprint, never the key. Without keys
// (an open server) and for jobs queued before owners were recorded, the
// owner is empty and every caller sees the job.

type ownerKey struct{}

// ownerOf is the fingerprint of the key a request was authorized with
// ("" on an open server).
func ownerOf(ctx context.Context) string {
	o, _ := ctx.Value(ownerKey{}).(string)
	return o
}

// withOwner records the fingerprint of an authorized key in the request's
// context.
func withOwner(r *http.Request, key string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), ownerKey{}, keyFingerprint(key)))
}

// keyFingerprint identifies a key without storing it: a hash under a
// domain-separation prefix, so the stored value is no password-equivalent
// for any other system.
func keyFingerprint(key string) string {
	sum := sha256.Sum256([]byte("kleinserve request owner\x00" + key))
	return hex.EncodeToString(sum[:16])
}

// readOwned reads a job with the given parts, as queue.ErrNotFound when it
// belongs to another key.
func (s *Server) readOwned(ctx context.Context, id string, parts queue.Part) (*queue.Job, error) {
	job, err := s.queue.Read(ctx, id, parts)
	if err != nil {
		return nil, err
	}
	if job.Owner != "" && job.Owner != ownerOf(ctx) {
		return nil, queue.ErrNotFound
	}
	return job, nil
}
