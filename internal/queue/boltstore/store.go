// Package boltstore is the embedded, single-process queue.Store: one bbolt
// file, every write one transaction, fsync'd before it returns.
//
// Bucket layout:
//
//	meta:     "schema" → layout version ("2")
//	jobs:     id → status record JSON (a Job without payload, logs, result)
//	payloads: id → request payload JSON
//	results:  id → result JSON
//	logs:     id → JSON array of LogEntry
//	queued:   QueueKey (priority byte + 8-byte sequence) → id, in run order
//	running:  id → empty
//	expiry:   8-byte ExpiresAt unix nanos + id → empty, oldest first
//	webhooks: id → empty, for finished jobs with an undelivered webhook
//
// Keeping the status record apart from the payload, logs and result makes a
// status read cost the same whatever the size of the result (a sync_mode
// result holds its images as base64, megabytes). Databases of layout 1
// (everything in the jobs record) are split when they are opened.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kleinserve/kleinserve/internal/queue"
)

var (
	bucketMeta     = []byte("meta")
	bucketJobs     = []byte("jobs")
	bucketPayloads = []byte("payloads")
	bucketResults  = []byte("results")
	bucketLogs     = []byte("logs")
	bucketQueued   = []byte("queued")
	bucketRunning  = []byte("running")
	bucketExpiry   = []byte("expiry")
	bucketWebhooks = []byte("webhooks")

	allBuckets = [][]byte{bucketMeta, bucketJobs, bucketPayloads, bucketResults, bucketLogs,
		bucketQueued, bucketRunning, bucketExpiry, bucketWebhooks}
	// partBuckets hold the parts of a job that live apart from its record.
	partBuckets = [][]byte{bucketPayloads, bucketResults, bucketLogs}

	keySchema = []byte("schema")
)

// schemaVersion is the current bucket layout; 1 (no meta bucket) kept
// payload, logs and result inside the jobs record.
const schemaVersion = "2"

// Store is the bbolt queue.Store.
type Store struct {
	db *bolt.DB
}

var _ queue.Store = (*Store)(nil)

// Open opens (creating if needed) the queue database at path and brings an
// older layout up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("queue: create data dir: %w", err)
	}
	// The timeout turns "another server holds the lock" into an error
	// instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: init buckets: %w", err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("queue: upgrade %s: %w", path, err)
	}
	return s, nil
}

// migrateBatch bounds one migration transaction, so that a large database
// is split without one huge commit.
const migrateBatch = 256

// migrate moves the payload, logs and result of layout-1 records into their
// buckets. It can be interrupted and rerun: a split record has nothing left
// to move, and the version is written only at the end.
func (s *Store) migrate(ctx context.Context) error {
	var done bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		done = string(tx.Bucket(bucketMeta).Get(keySchema)) == schemaVersion
		return nil
	}); err != nil || done {
		return err
	}
	var after []byte // last id handled
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n int
		err := s.db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJobs).Cursor()
			k, raw := c.First()
			if after != nil {
				if k, raw = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, raw = c.Next()
				}
			}
			var moves []*queue.Job
			for ; k != nil && len(moves) < migrateBatch; k, raw = c.Next() {
				var j queue.Job
				if err := json.Unmarshal(raw, &j); err != nil {
					return fmt.Errorf("decode job %s: %w", k, err)
				}
				j.ID = string(k)
				moves = append(moves, &j)
				after = bytes.Clone(k)
			}
			n = len(moves)
			for _, j := range moves {
				if len(j.Payload) == 0 && len(j.Logs) == 0 && len(j.Result) == 0 {
					continue
				}
				if err := putParts(tx, j); err != nil {
					return err
				}
				if err := putJob(tx, j); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < migrateBatch {
			break
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(schemaVersion))
	})
}

// Close closes the database.
func (s *Store) Close(context.Context) error { return s.db.Close() }

func expiryKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, id...)
}

// loadJob decodes a job's status record.
func loadJob(tx *bolt.Tx, id string) (*queue.Job, error) {
	raw := tx.Bucket(bucketJobs).Get([]byte(id))
	if raw == nil {
		return nil, queue.ErrNotFound
	}
	var j queue.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("queue: decode job %s: %w", id, err)
	}
	return &j, nil
}

// loadParts fills the parts asked for.
func loadParts(tx *bolt.Tx, j *queue.Job, parts queue.Part) error {
	key := []byte(j.ID)
	if parts&queue.PartPayload != 0 {
		j.Payload = cloneRaw(tx.Bucket(bucketPayloads).Get(key))
	}
	if parts&queue.PartResult != 0 {
		j.Result = cloneRaw(tx.Bucket(bucketResults).Get(key))
	}
	if parts&queue.PartLogs != 0 {
		if raw := tx.Bucket(bucketLogs).Get(key); raw != nil {
			if err := json.Unmarshal(raw, &j.Logs); err != nil {
				return fmt.Errorf("queue: decode log of %s: %w", j.ID, err)
			}
		}
	}
	return nil
}

func cloneRaw(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}

// putJob writes a job's status record.
func putJob(tx *bolt.Tx, j *queue.Job) error {
	rec := *j
	rec.Payload, rec.Logs, rec.Result = nil, nil, nil
	raw, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("queue: encode job %s: %w", j.ID, err)
	}
	return tx.Bucket(bucketJobs).Put([]byte(j.ID), raw)
}

// putParts stores j's payload and result when set and appends its log
// lines to the stored log.
func putParts(tx *bolt.Tx, j *queue.Job) error {
	key := []byte(j.ID)
	if j.Payload != nil {
		if err := tx.Bucket(bucketPayloads).Put(key, j.Payload); err != nil {
			return err
		}
	}
	if j.Result != nil {
		if err := tx.Bucket(bucketResults).Put(key, j.Result); err != nil {
			return err
		}
	}
	if len(j.Logs) > 0 {
		logs := tx.Bucket(bucketLogs)
		var all []queue.LogEntry
		if raw := logs.Get(key); raw != nil {
			if err := json.Unmarshal(raw, &all); err != nil {
				return fmt.Errorf("queue: decode log of %s: %w", j.ID, err)
			}
		}
		raw, err := json.Marshal(append(all, j.Logs...))
		if err != nil {
			return fmt.Errorf("queue: encode log of %s: %w", j.ID, err)
		}
		if err := logs.Put(key, raw); err != nil {
			return err
		}
	}
	return nil
}

// reindex moves a job between the index buckets after a change from before
// to after (either may be nil: created or deleted).
func reindex(tx *bolt.Tx, before, after *queue.Job) error {
	queued, running := tx.Bucket(bucketQueued), tx.Bucket(bucketRunning)
	expiry, hooks := tx.Bucket(bucketExpiry), tx.Bucket(bucketWebhooks)
	if before != nil {
		var err error
		if before.Status == queue.StatusQueued {
			err = errors.Join(err, queued.Delete(before.QueueKey))
		}
		if before.Status == queue.StatusRunning {
			err = errors.Join(err, running.Delete([]byte(before.ID)))
		}
		if !before.ExpiresAt.IsZero() {
			err = errors.Join(err, expiry.Delete(expiryKey(before.ExpiresAt, before.ID)))
		}
		err = errors.Join(err, hooks.Delete([]byte(before.ID)))
		if err != nil {
			return err
		}
	}
	if after == nil {
		return nil
	}
	var err error
	switch after.Status {
	case queue.StatusQueued:
		err = queued.Put(after.QueueKey, []byte(after.ID))
	case queue.StatusRunning:
		err = running.Put([]byte(after.ID), nil)
	}
	if after.Status == queue.StatusCompleted && !after.ExpiresAt.IsZero() {
		err = errors.Join(err, expiry.Put(expiryKey(after.ExpiresAt, after.ID), nil))
	}
	if after.Status == queue.StatusCompleted && after.Webhook.Pending() {
		err = errors.Join(err, hooks.Put([]byte(after.ID), nil))
	}
	return err
}

// position counts queued keys before key.
func position(tx *bolt.Tx, key []byte) int {
	n := 0
	c := tx.Bucket(bucketQueued).Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k, key) < 0; k, _ = c.Next() {
		n++
	}
	return n
}

// update runs fn in a read-write transaction once ctx allows it.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// view runs fn in a read-only transaction once ctx allows it.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// Add implements queue.Store.
func (s *Store) Add(ctx context.Context, job *queue.Job, maxQueued int) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(job.ID)) != nil {
			return queue.ErrDuplicateID
		}
		queued := tx.Bucket(bucketQueued)
		if maxQueued > 0 && queued.Stats().KeyN >= maxQueued {
			return queue.ErrQueueFull
		}
		seq, err := queued.NextSequence()
		if err != nil {
			return fmt.Errorf("queue: sequence: %w", err)
		}
		job.Status = queue.StatusQueued
		job.QueueKey = queue.MakeQueueKey(job.Priority, seq)
		job.Position = position(tx, job.QueueKey)
		if err := putJob(tx, job); err != nil {
			return err
		}
		if err := putParts(tx, job); err != nil {
			return err
		}
		return reindex(tx, nil, job)
	})
}

// Get implements queue.Store.
func (s *Store) Get(ctx context.Context, id string, parts queue.Part) (*queue.Job, error) {
	var job *queue.Job
	err := s.view(ctx, func(tx *bolt.Tx) error {
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		if j.Status == queue.StatusQueued {
			j.Position = position(tx, j.QueueKey)
		}
		if err := loadParts(tx, j, parts); err != nil {
			return err
		}
		job = j
		return nil
	})
	return job, err
}

// Update implements queue.Store.
func (s *Store) Update(ctx context.Context, id string, fn func(*queue.Job) error) (*queue.Job, error) {
	var job *queue.Job
	err := s.update(ctx, func(tx *bolt.Tx) error {
		before, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		after, _ := loadJob(tx, id) // a second, independent copy for fn to change
		if err := fn(after); err != nil {
			return err
		}
		after.ID = before.ID
		after.Payload = nil // set once, by Add
		if after.Status == queue.StatusQueued && len(after.QueueKey) == 0 {
			seq, err := tx.Bucket(bucketQueued).NextSequence()
			if err != nil {
				return fmt.Errorf("queue: sequence: %w", err)
			}
			after.QueueKey = queue.MakeQueueKey(after.Priority, seq)
		}
		if err := putJob(tx, after); err != nil {
			return err
		}
		if err := putParts(tx, after); err != nil {
			return err
		}
		if err := reindex(tx, before, after); err != nil {
			return err
		}
		if after.Status == queue.StatusQueued {
			after.Position = position(tx, after.QueueKey)
		}
		after.Logs, after.Result = nil, nil
		job = after
		return nil
	})
	return job, err
}

// ClaimNext implements queue.Store. Jobs of a dead process are requeued by
// the Queue when it opens the store, so there is nothing to redeliver here.
func (s *Store) ClaimNext(ctx context.Context, now time.Time) (*queue.Job, error) {
	var job *queue.Job
	err := s.update(ctx, func(tx *bolt.Tx) error {
		k, id := tx.Bucket(bucketQueued).Cursor().First()
		if k == nil {
			return nil
		}
		before, err := loadJob(tx, string(id))
		if err != nil {
			return err
		}
		after := *before
		after.Status = queue.StatusRunning
		after.StartedAt = now
		after.Attempts++
		if err := putJob(tx, &after); err != nil {
			return err
		}
		if err := reindex(tx, before, &after); err != nil {
			return err
		}
		if err := loadParts(tx, &after, queue.PartPayload); err != nil {
			return err
		}
		job = &after
		return nil
	})
	return job, err
}

// QueuedCount implements queue.Store.
func (s *Store) QueuedCount(ctx context.Context) (int, error) {
	var n int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketQueued).Stats().KeyN
		return nil
	})
	return n, err
}

// List implements queue.Store.
func (s *Store) List(ctx context.Context, status queue.Status) ([]*queue.Job, error) {
	var jobs []*queue.Job
	err := s.view(ctx, func(tx *bolt.Tx) error {
		add := func(id []byte) error {
			j, err := loadJob(tx, string(id))
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		}
		switch status {
		case queue.StatusQueued:
			pos := 0
			return tx.Bucket(bucketQueued).ForEach(func(_, id []byte) error {
				if err := add(id); err != nil {
					return err
				}
				jobs[len(jobs)-1].Position = pos
				pos++
				return nil
			})
		case queue.StatusRunning:
			return tx.Bucket(bucketRunning).ForEach(func(id, _ []byte) error { return add(id) })
		default:
			return tx.Bucket(bucketJobs).ForEach(func(id, _ []byte) error {
				j, err := loadJob(tx, string(id))
				if err == nil && j.Status == status {
					jobs = append(jobs, j)
				}
				return err
			})
		}
	})
	return jobs, err
}

// PendingWebhooks implements queue.Store.
func (s *Store) PendingWebhooks(ctx context.Context) ([]*queue.Job, error) {
	var jobs []*queue.Job
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWebhooks).ForEach(func(id, _ []byte) error {
			j, err := loadJob(tx, string(id))
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		})
	})
	return jobs, err
}

// deleteBatch bounds one DeleteExpired transaction.
const deleteBatch = 1000

// DeleteExpired implements queue.Store.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, more, err := s.deleteExpired(ctx, now)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// deleteExpired deletes up to deleteBatch expired jobs in one transaction
// and reports whether more may be left.
func (s *Store) deleteExpired(ctx context.Context, now time.Time) (n int, more bool, err error) {
	err = s.update(ctx, func(tx *bolt.Tx) error {
		limit := uint64(now.UnixNano())
		var keys [][]byte
		c := tx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= limit; k, _ = c.Next() {
			if len(keys) == deleteBatch {
				more = true
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, key := range keys {
			id := string(key[8:])
			j, err := loadJob(tx, id)
			if errors.Is(err, queue.ErrNotFound) {
				// A dangling index entry: drop it so it is not revisited.
				if err := tx.Bucket(bucketExpiry).Delete(key); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if err := reindex(tx, j, nil); err != nil {
				return err
			}
			for _, b := range append([][]byte{bucketJobs}, partBuckets...) {
				if err := tx.Bucket(b).Delete([]byte(id)); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}
