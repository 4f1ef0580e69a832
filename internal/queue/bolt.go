package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket layout of the bbolt store:
//
//	jobs:     id → Job JSON
//	queued:   QueueKey (priority byte + 8-byte sequence) → id, in run order
//	running:  id → empty
//	expiry:   8-byte ExpiresAt unix nanos + id → empty, oldest first
//	webhooks: id → empty, for finished jobs with an undelivered webhook
var (
	bucketJobs     = []byte("jobs")
	bucketQueued   = []byte("queued")
	bucketRunning  = []byte("running")
	bucketExpiry   = []byte("expiry")
	bucketWebhooks = []byte("webhooks")
)

// BoltStore is the embedded, single-process Store. Every write is one bbolt
// transaction, fsync'd before it returns.
type BoltStore struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the queue database at path.
func OpenBolt(path string) (*BoltStore, error) {
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
		for _, name := range [][]byte{bucketJobs, bucketQueued, bucketRunning, bucketExpiry, bucketWebhooks} {
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
	return &BoltStore{db: db}, nil
}

// Close closes the database.
func (s *BoltStore) Close() error { return s.db.Close() }

func queueKey(p Priority, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = byte(p)
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func expiryKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, id...)
}

func loadJob(tx *bolt.Tx, id string) (*Job, error) {
	raw := tx.Bucket(bucketJobs).Get([]byte(id))
	if raw == nil {
		return nil, ErrNotFound
	}
	var j Job
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("queue: decode job %s: %w", id, err)
	}
	return &j, nil
}

func putJob(tx *bolt.Tx, j *Job) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("queue: encode job %s: %w", j.ID, err)
	}
	return tx.Bucket(bucketJobs).Put([]byte(j.ID), raw)
}

// reindex moves a job between the index buckets after a change from before
// to after (either may be nil: created or deleted).
func reindex(tx *bolt.Tx, before, after *Job) error {
	queued, running := tx.Bucket(bucketQueued), tx.Bucket(bucketRunning)
	expiry, hooks := tx.Bucket(bucketExpiry), tx.Bucket(bucketWebhooks)
	if before != nil {
		var err error
		if before.Status == StatusQueued {
			err = errors.Join(err, queued.Delete(before.QueueKey))
		}
		if before.Status == StatusRunning {
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
	case StatusQueued:
		err = queued.Put(after.QueueKey, []byte(after.ID))
	case StatusRunning:
		err = running.Put([]byte(after.ID), nil)
	}
	if after.Status == StatusCompleted && !after.ExpiresAt.IsZero() {
		err = errors.Join(err, expiry.Put(expiryKey(after.ExpiresAt, after.ID), nil))
	}
	if after.Status == StatusCompleted && after.Webhook.Pending() {
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

// Add implements Store.
func (s *BoltStore) Add(job *Job, maxQueued int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(job.ID)) != nil {
			return ErrDuplicateID
		}
		queued := tx.Bucket(bucketQueued)
		if maxQueued > 0 && queued.Stats().KeyN >= maxQueued {
			return ErrQueueFull
		}
		seq, err := queued.NextSequence()
		if err != nil {
			return fmt.Errorf("queue: sequence: %w", err)
		}
		job.Status = StatusQueued
		job.QueueKey = queueKey(job.Priority, seq)
		job.Position = position(tx, job.QueueKey)
		if err := putJob(tx, job); err != nil {
			return err
		}
		return reindex(tx, nil, job)
	})
}

// Get implements Store.
func (s *BoltStore) Get(id string) (*Job, error) {
	var job *Job
	err := s.db.View(func(tx *bolt.Tx) error {
		j, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		if j.Status == StatusQueued {
			j.Position = position(tx, j.QueueKey)
		}
		job = j
		return nil
	})
	return job, err
}

// Update implements Store.
func (s *BoltStore) Update(id string, fn func(*Job) error) (*Job, error) {
	var job *Job
	err := s.db.Update(func(tx *bolt.Tx) error {
		before, err := loadJob(tx, id)
		if err != nil {
			return err
		}
		after, _ := loadJob(tx, id) // a second, independent copy for fn to change
		if err := fn(after); err != nil {
			return err
		}
		after.ID = before.ID
		if after.Status == StatusQueued && len(after.QueueKey) == 0 {
			seq, err := tx.Bucket(bucketQueued).NextSequence()
			if err != nil {
				return fmt.Errorf("queue: sequence: %w", err)
			}
			after.QueueKey = queueKey(after.Priority, seq)
		}
		if err := putJob(tx, after); err != nil {
			return err
		}
		if err := reindex(tx, before, after); err != nil {
			return err
		}
		if after.Status == StatusQueued {
			after.Position = position(tx, after.QueueKey)
		}
		job = after
		return nil
	})
	return job, err
}

// ClaimNext implements Store.
func (s *BoltStore) ClaimNext(now time.Time) (*Job, error) {
	var job *Job
	err := s.db.Update(func(tx *bolt.Tx) error {
		k, id := tx.Bucket(bucketQueued).Cursor().First()
		if k == nil {
			return nil
		}
		before, err := loadJob(tx, string(id))
		if err != nil {
			return err
		}
		after := *before
		after.Status = StatusRunning
		after.StartedAt = now
		after.Attempts++
		if err := putJob(tx, &after); err != nil {
			return err
		}
		if err := reindex(tx, before, &after); err != nil {
			return err
		}
		job = &after
		return nil
	})
	return job, err
}

// QueuedCount implements Store.
func (s *BoltStore) QueuedCount() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketQueued).Stats().KeyN
		return nil
	})
	return n, err
}

// List implements Store.
func (s *BoltStore) List(status Status) ([]*Job, error) {
	var jobs []*Job
	err := s.db.View(func(tx *bolt.Tx) error {
		add := func(id []byte) error {
			j, err := loadJob(tx, string(id))
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
			return nil
		}
		switch status {
		case StatusQueued:
			pos := 0
			return tx.Bucket(bucketQueued).ForEach(func(_, id []byte) error {
				if err := add(id); err != nil {
					return err
				}
				jobs[len(jobs)-1].Position = pos
				pos++
				return nil
			})
		case StatusRunning:
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

// PendingWebhooks implements Store.
func (s *BoltStore) PendingWebhooks() ([]*Job, error) {
	var jobs []*Job
	err := s.db.View(func(tx *bolt.Tx) error {
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

// DeleteExpired implements Store.
func (s *BoltStore) DeleteExpired(now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		limit := uint64(now.UnixNano())
		var keys [][]byte
		c := tx.Bucket(bucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k[:8]) <= limit; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, key := range keys {
			id := string(key[8:])
			j, err := loadJob(tx, id)
			if errors.Is(err, ErrNotFound) {
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
			if err := tx.Bucket(bucketJobs).Delete([]byte(id)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
