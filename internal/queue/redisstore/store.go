// Package redisstore is the queue.SharedStore that many processes share:
// API nodes submit and read jobs, GPU workers claim and run them. Dispatch
// is a Redis stream per priority with one consumer group of workers:
//
//   - Add writes the job hash, its queue index and a stream entry in one
//     script; its reply (and so the submit response) comes after Redis
//     acknowledged the write (durable when Redis runs with appendonly and
//     appendfsync always).
//   - ClaimNext, one script, first reclaims entries whose holder sent no
//     heartbeat for Lease (XAUTOCLAIM: the worker died; the job's crash
//     count goes up), then reads new entries (XREADGROUP), and marks the
//     job IN_PROGRESS under this process's consumer name with Attempts+1.
//     Entries of jobs that are already COMPLETED are acknowledged and
//     dropped, never run again.
//   - While a job runs, Watch renews its entry every Lease/3 (XCLAIM JUSTID
//     resets the idle time), but only while the job hash still names this
//     process; otherwise the run is told it lost the job (EventLost).
//   - Update is an optimistic transaction (WATCH/MULTI) on the job hash, so
//     the Queue's guarded completion is atomic across processes: a worker
//     whose job was redelivered cannot overwrite the other's outcome.
//     Completion acknowledges and deletes the stream entry. A requeue that
//     keeps the job's QueueKey keeps its entry, made idle so that the next
//     claim reclaims it first; one with a new QueueKey gets a new entry at
//     the end of its stream.
//   - Live events of a job (progress, previews) go through Pub/Sub, one
//     channel per job; nothing of them is stored.
//
// Key layout under Prefix (default "kleinserve"):
//
//	P:job:ID        hash: the status fields, payload, result, and the
//	                dispatch entry (stream, entry)
//	P:job:ID:logs   list of LogEntry JSON
//	P:queued        sorted set of queued ids by queue order (positions, depth)
//	P:running       set of running ids
//	P:expiry        sorted set of completed ids by expiry (ms); keys also EXPIREAT
//	P:webhooks      set of completed ids with an undelivered webhook
//	P:seq           submit counter
//	P:stream:0|1    dispatch streams (normal, low priority), group "workers"
//	P:events        pub/sub channel of "KIND ID" change notices
//	P:live:ID       pub/sub channel of job ID's live events
//
// A status read fetches only the status fields (HMGET), never the payload
// or the result, so it costs the same whatever the size of the result.
//
// Scripts touch job keys derived from ids, so the store needs one Redis
// server (or a primary with replicas), not a sharded Redis Cluster.
package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// Store is the Redis queue.SharedStore.
type Store struct {
	rdb      *redis.Client
	keys     keys
	consumer string
	lease    time.Duration
	log      zerolog.Logger

	mu   sync.Mutex
	held map[string]heldEntry // jobs this process claimed and still runs
}

var (
	_ queue.Store       = (*Store)(nil)
	_ queue.SharedStore = (*Store)(nil)
)

// Options configures Open.
type Options struct {
	// URL is redis://[user:password@]host:port/db (rediss:// for TLS).
	URL string
	// Prefix namespaces every key and channel (default "kleinserve").
	Prefix string
	// WorkerID names this process in the consumer group and job logs
	// (default: the host name). A random suffix keeps every process
	// distinct, so a restarted worker never mistakes its predecessor's
	// jobs for its own.
	WorkerID string
	// Lease is how long a claimed job may go without a heartbeat before
	// another worker takes it over (default 30s; at least 1s).
	Lease time.Duration
	// Logger receives store events.
	Logger zerolog.Logger
}

// group is the consumer group of all workers.
const group = "workers"

type keys struct {
	prefix, queued, running, expiry, webhooks, seq, events string
	streams                                                [2]string // by Priority
}

func newKeys(prefix string) keys {
	return keys{
		prefix:   prefix,
		queued:   prefix + ":queued",
		running:  prefix + ":running",
		expiry:   prefix + ":expiry",
		webhooks: prefix + ":webhooks",
		seq:      prefix + ":seq",
		events:   prefix + ":events",
		streams:  [2]string{prefix + ":stream:0", prefix + ":stream:1"},
	}
}

func (k keys) jobPrefix() string     { return k.prefix + ":job:" }
func (k keys) job(id string) string  { return k.jobPrefix() + id }
func (k keys) logs(id string) string { return k.job(id) + ":logs" }
func (k keys) live(id string) string { return k.prefix + ":live:" + id }
func (k keys) stream(p queue.Priority) string {
	if p == queue.PriorityLow {
		return k.streams[1]
	}
	return k.streams[0]
}

type heldEntry struct {
	stream, entry string
	attempts      int
}

// Open connects, checks the server and creates the consumer groups.
func Open(ctx context.Context, opts Options) (*Store, error) {
	ropts, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("queue: redis url: %w", err)
	}
	if opts.Prefix == "" {
		opts.Prefix = "kleinserve"
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.Lease < time.Second {
		return nil, fmt.Errorf("queue: redis lease %v: must be at least 1s", opts.Lease)
	}
	if opts.WorkerID == "" {
		if opts.WorkerID, err = os.Hostname(); err != nil || opts.WorkerID == "" {
			opts.WorkerID = "worker"
		}
	}
	s := &Store{
		rdb:      redis.NewClient(ropts),
		keys:     newKeys(opts.Prefix),
		consumer: opts.WorkerID + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8],
		lease:    opts.Lease,
		log:      opts.Logger,
		held:     map[string]heldEntry{},
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("queue: connect to redis %s: %w", ropts.Addr, err)
	}
	for _, stream := range s.keys.streams {
		// "0": entries added before the group existed are dispatched too.
		err := s.rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			s.rdb.Close()
			return nil, fmt.Errorf("queue: create consumer group on %s: %w", stream, err)
		}
	}
	s.warnIfNotDurable(ctx, ropts.Addr)
	return s, nil
}

// warnIfNotDurable logs when Redis would lose acknowledged jobs in a crash.
// Managed services may refuse CONFIG GET; that is not an error.
func (s *Store) warnIfNotDurable(ctx context.Context, addr string) {
	cfg, err := s.rdb.ConfigGet(ctx, "appendfsync").Result()
	if err != nil {
		return
	}
	aof, _ := s.rdb.ConfigGet(ctx, "appendonly").Result()
	if aof["appendonly"] != "yes" || cfg["appendfsync"] != "always" {
		s.log.Warn().Str("redis", addr).Str("appendonly", aof["appendonly"]).Str("appendfsync", cfg["appendfsync"]).
			Msg("redis does not fsync every write (want appendonly yes, appendfsync always): " +
				"jobs acknowledged just before a Redis crash can be lost")
	}
}

// Consumer is this process's name in the consumer group and in Job.Worker.
func (s *Store) Consumer() string { return s.consumer }

// Ping checks the connection (readiness of API processes).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis ping: %w", err)
	}
	return nil
}

// queueScore orders the queued set like QueueKey: priority, then sequence.
// It stays below 2^53, so the float score is exact.
func queueScore(key []byte) float64 {
	if len(key) != 9 {
		return 0
	}
	seq := uint64(0)
	for _, b := range key[1:] {
		seq = seq<<8 | uint64(b)
	}
	return float64(uint64(key[0])<<44 | seq&(1<<44-1))
}

// readJob reads a job's status fields, its queue rank and the parts asked
// for in one round trip.
func (s *Store) readJob(ctx context.Context, c redis.Cmdable, id string, parts queue.Part) (*queue.Job, dispatch, error) {
	var fields *redis.SliceCmd
	var rank *redis.IntCmd
	var logs *redis.StringSliceCmd
	var payload, result *redis.StringCmd
	key := s.keys.job(id)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields = p.HMGet(ctx, key, readFields...)
		rank = p.ZRank(ctx, s.keys.queued, id)
		if parts&queue.PartLogs != 0 {
			logs = p.LRange(ctx, s.keys.logs(id), 0, -1)
		}
		if parts&queue.PartPayload != 0 {
			payload = p.HGet(ctx, key, fieldPayload)
		}
		if parts&queue.PartResult != 0 {
			result = p.HGet(ctx, key, fieldResult)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, dispatch{}, fmt.Errorf("queue: read job %s: %w", id, err)
	}
	h := make(map[string]string, len(readFields))
	for i, v := range fields.Val() {
		if str, ok := v.(string); ok {
			h[readFields[i]] = str
		}
	}
	if h["status"] == "" {
		return nil, dispatch{}, queue.ErrNotFound
	}
	var lines []string
	if logs != nil {
		lines = logs.Val()
	}
	if payload != nil {
		h[fieldPayload] = payload.Val()
	}
	if result != nil {
		h[fieldResult] = result.Val()
	}
	j, d, err := decodeJob(h, lines)
	if err != nil {
		return nil, d, err
	}
	if j.Status == queue.StatusQueued && rank.Err() == nil {
		j.Position = int(rank.Val())
	}
	return j, d, nil
}

// Add implements queue.Store.
func (s *Store) Add(ctx context.Context, job *queue.Job, maxQueued int) error {
	seq, err := s.rdb.Incr(ctx, s.keys.seq).Result()
	if err != nil {
		return fmt.Errorf("queue: sequence: %w", err)
	}
	job.Status = queue.StatusQueued
	job.QueueKey = queue.MakeQueueKey(job.Priority, uint64(seq))
	fields, err := jobFields(job)
	if err != nil {
		return err
	}
	fields = append(fields, fieldPayload, string(job.Payload))
	args := append([]any{maxQueued, queueScore(job.QueueKey), job.ID, s.keys.events}, fields...)
	pos, err := addScript.Run(ctx, s.rdb, []string{s.keys.job(job.ID), s.keys.queued, s.keys.stream(job.Priority)},
		args...).Int()
	if err != nil {
		return fmt.Errorf("queue: add job %s: %w", job.ID, err)
	}
	switch pos {
	case -1:
		return queue.ErrDuplicateID
	case -2:
		return queue.ErrQueueFull
	}
	job.Position = pos
	return nil
}

// Get implements queue.Store.
func (s *Store) Get(ctx context.Context, id string, parts queue.Part) (*queue.Job, error) {
	j, _, err := s.readJob(ctx, s.rdb, id, parts)
	return j, err
}

// Update implements queue.Store as an optimistic transaction on the job
// hash, retried when another process changed the job in between.
func (s *Store) Update(ctx context.Context, id string, fn func(*queue.Job) error) (*queue.Job, error) {
	key := s.keys.job(id)
	for {
		var out *queue.Job
		var leftRunning bool
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			before, d, err := s.readJob(ctx, tx, id, 0)
			if err != nil {
				return err
			}
			after, _, err := s.readJob(ctx, tx, id, 0) // an independent copy for fn
			if err != nil {
				return err
			}
			if err := fn(after); err != nil {
				return err
			}
			after.ID = before.ID
			if after.Status == queue.StatusQueued && len(after.QueueKey) == 0 {
				seq, err := tx.Incr(ctx, s.keys.seq).Result()
				if err != nil {
					return fmt.Errorf("queue: sequence: %w", err)
				}
				after.QueueKey = queue.MakeQueueKey(after.Priority, uint64(seq))
			}
			fields, err := jobFields(after)
			if err != nil {
				return err
			}
			if after.Result != nil {
				fields = append(fields, fieldResult, string(after.Result))
			}
			lines := make([]any, 0, len(after.Logs))
			for _, l := range after.Logs {
				raw, err := json.Marshal(l)
				if err != nil {
					return fmt.Errorf("queue: encode log line: %w", err)
				}
				lines = append(lines, string(raw))
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, key, fields...)
				if len(lines) > 0 {
					p.RPush(ctx, s.keys.logs(id), lines...)
				}
				s.reindex(ctx, p, before, after, d)
				return nil
			})
			if err != nil {
				return err
			}
			leftRunning = before.Status == queue.StatusRunning && after.Status != queue.StatusRunning
			after.Logs, after.Result, after.Payload = nil, nil, nil
			if after.Status == queue.StatusQueued {
				after.Position = -1 // filled below, outside the transaction
			}
			out = after
			return nil
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // another process changed the job: redo fn on fresh state
		}
		if err != nil {
			if errors.Is(err, queue.ErrNotFound) || ctx.Err() != nil {
				return nil, err
			}
			// fn's own error comes out wrapped, still matched by errors.Is.
			return nil, fmt.Errorf("queue: update job %s: %w", id, err)
		}
		if leftRunning {
			s.mu.Lock()
			delete(s.held, id)
			s.mu.Unlock()
		}
		if out.Status == queue.StatusQueued {
			if rank, err := s.rdb.ZRank(ctx, s.keys.queued, id).Result(); err == nil {
				out.Position = int(rank)
			} else {
				out.Position = 0
			}
		}
		return out, nil
	}
}

// reindex queues the index and dispatch changes of one update into a
// MULTI block.
func (s *Store) reindex(ctx context.Context, p redis.Pipeliner, before, after *queue.Job, d dispatch) {
	id := after.ID
	if before.Status == queue.StatusQueued && after.Status != queue.StatusQueued {
		p.ZRem(ctx, s.keys.queued, id)
	}
	if after.Status == queue.StatusQueued {
		p.ZAdd(ctx, s.keys.queued, redis.Z{Score: queueScore(after.QueueKey), Member: id})
	}
	if before.Status == queue.StatusRunning && after.Status != queue.StatusRunning {
		p.SRem(ctx, s.keys.running, id)
	}
	if after.Status == queue.StatusRunning {
		p.SAdd(ctx, s.keys.running, id)
	}
	if before.Status == queue.StatusRunning && after.Status == queue.StatusQueued && d.stream != "" {
		// Eval, not Run: a NOSCRIPT error inside MULTI would not abort it.
		if bytes.Equal(before.QueueKey, after.QueueKey) {
			redispatchScript.Eval(ctx, p, []string{d.stream, s.keys.job(id)},
				group, s.consumer, d.entry, id, s.keys.events)
		} else {
			requeueBackScript.Eval(ctx, p, []string{d.stream, s.keys.stream(after.Priority), s.keys.job(id)},
				group, d.entry, id, s.keys.events)
		}
	}
	if after.Status == queue.StatusCompleted {
		if before.Status != queue.StatusCompleted && d.stream != "" {
			p.XAck(ctx, d.stream, group, d.entry)
			p.XDel(ctx, d.stream, d.entry)
		}
		if !after.ExpiresAt.IsZero() {
			p.ZAdd(ctx, s.keys.expiry, redis.Z{Score: float64(after.ExpiresAt.UnixMilli()), Member: id})
			p.ExpireAt(ctx, s.keys.job(id), after.ExpiresAt)
			p.ExpireAt(ctx, s.keys.logs(id), after.ExpiresAt)
		}
		if after.Webhook.Pending() {
			p.SAdd(ctx, s.keys.webhooks, id)
		} else {
			p.SRem(ctx, s.keys.webhooks, id)
		}
	}
	if !before.CancelRequested && after.CancelRequested && after.Status == queue.StatusRunning {
		p.Publish(ctx, s.keys.events, string(queue.EventCancel)+" "+id)
	}
	p.Publish(ctx, s.keys.events, string(queue.EventChanged)+" "+id)
}

// ClaimNext implements queue.Store: a dead worker's job first, then the
// oldest new normal-priority entry, then low priority.
func (s *Store) ClaimNext(ctx context.Context, now time.Time) (*queue.Job, error) {
	keys := []string{s.keys.streams[0], s.keys.streams[1], s.keys.queued, s.keys.running}
	reply, err := claimScript.Run(ctx, s.rdb, keys, group, s.consumer, s.lease.Milliseconds(),
		formatTime(now), s.keys.jobPrefix(), s.keys.events).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: claim: %w", err)
	}
	if len(reply) != 2 {
		return nil, fmt.Errorf("queue: claim: unexpected reply %v", reply)
	}
	id, _ := reply[0].(string)
	redelivered, _ := reply[1].(int64)
	j, d, err := s.readJob(ctx, s.rdb, id, queue.PartPayload)
	if err != nil {
		return nil, fmt.Errorf("queue: read claimed job %s: %w", id, err)
	}
	j.Redelivered = redelivered == 1
	s.mu.Lock()
	s.held[id] = heldEntry{stream: d.stream, entry: d.entry, attempts: j.Attempts}
	s.mu.Unlock()
	return j, nil
}

// AppendLog implements queue.SharedStore.
func (s *Store) AppendLog(ctx context.Context, id string, entry queue.LogEntry) error {
	raw, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("queue: encode log line: %w", err)
	}
	ok, err := appendLogScript.Run(ctx, s.rdb, []string{s.keys.job(id), s.keys.logs(id)},
		s.consumer, string(raw), s.keys.events, id).Int()
	if err != nil {
		return fmt.Errorf("queue: append log of %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("queue: append log of %s: %w", id, queue.ErrNotHeld)
	}
	return nil
}

// Watch implements queue.SharedStore: it relays the events channel and
// renews this process's claims every Lease/3 until ctx ends.
func (s *Store) Watch(ctx context.Context, fn func(queue.Event)) error {
	sub := s.rdb.Subscribe(ctx, s.keys.events)
	defer sub.Close()
	// Receive the subscription confirmation, so a broken connection is an
	// error here rather than a silent channel.
	if _, err := sub.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("queue: subscribe to %s: %w", s.keys.events, err)
	}
	messages := sub.Channel()
	heartbeat := time.NewTicker(s.lease / 3)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-messages:
			if !ok {
				return errors.New("queue: event subscription closed")
			}
			kind, id, found := strings.Cut(m.Payload, " ")
			if found {
				fn(queue.Event{Kind: queue.EventKind(kind), ID: id})
			}
		case <-heartbeat.C:
			s.renew(ctx, fn)
		}
	}
}

// renew extends the claims this process holds; a claim that is no longer
// this process's (taken over after missed heartbeats) is dropped and
// reported as EventLost, so its run stops.
func (s *Store) renew(ctx context.Context, fn func(queue.Event)) {
	s.mu.Lock()
	held := make(map[string]heldEntry, len(s.held))
	for id, h := range s.held {
		held[id] = h
	}
	s.mu.Unlock()
	for id, h := range held {
		ctx, cancel := context.WithTimeout(ctx, s.lease/3)
		ok, err := heartbeatScript.Run(ctx, s.rdb, []string{s.keys.job(id), h.stream},
			group, s.consumer, h.entry, strconv.Itoa(h.attempts)).Int()
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Str("request_id", id).Msg("renew job claim")
			continue
		}
		if ok == 1 {
			continue
		}
		s.mu.Lock()
		current, still := s.held[id]
		lost := still && current == h
		if lost {
			delete(s.held, id)
		}
		s.mu.Unlock()
		if lost {
			s.log.Warn().Str("request_id", id).Msg("job was taken over by another worker")
			fn(queue.Event{Kind: queue.EventLost, ID: id})
		}
	}
}

// QueuedCount implements queue.Store.
func (s *Store) QueuedCount(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCard(ctx, s.keys.queued).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: count queued: %w", err)
	}
	return int(n), nil
}

// List implements queue.Store. Completed jobs are the members of the expiry set.
func (s *Store) List(ctx context.Context, status queue.Status) ([]*queue.Job, error) {
	var ids []string
	var err error
	switch status {
	case queue.StatusQueued:
		ids, err = s.rdb.ZRange(ctx, s.keys.queued, 0, -1).Result()
	case queue.StatusRunning:
		ids, err = s.rdb.SMembers(ctx, s.keys.running).Result()
	case queue.StatusCompleted:
		ids, err = s.rdb.ZRange(ctx, s.keys.expiry, 0, -1).Result()
	default:
		return nil, fmt.Errorf("queue: list: unknown status %q", status)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: list %s: %w", status, err)
	}
	jobs, err := s.readJobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := jobs[:0]
	for _, j := range jobs {
		if j.Status == status {
			out = append(out, j)
		}
	}
	return out, nil
}

// readJobs reads several status records, skipping jobs deleted meanwhile.
func (s *Store) readJobs(ctx context.Context, ids []string) ([]*queue.Job, error) {
	jobs := make([]*queue.Job, 0, len(ids))
	for _, id := range ids {
		j, _, err := s.readJob(ctx, s.rdb, id, 0)
		if errors.Is(err, queue.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// PendingWebhooks implements queue.Store.
func (s *Store) PendingWebhooks(ctx context.Context) ([]*queue.Job, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.webhooks).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list webhooks: %w", err)
	}
	jobs, err := s.readJobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := jobs[:0]
	for _, j := range jobs {
		if j.Webhook.Pending() {
			out = append(out, j)
		}
	}
	return out, nil
}

// DeleteExpired implements queue.Store. Redis also expires the keys by itself
// (EXPIREAT at completion); this removes the index entries.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n, err := deleteExpiredScript.Run(ctx, s.rdb, []string{s.keys.expiry, s.keys.webhooks},
			now.UnixMilli(), s.keys.jobPrefix()).Int()
		if err != nil {
			return total, fmt.Errorf("queue: delete expired: %w", err)
		}
		total += n
		if n < 1000 {
			return total, nil
		}
	}
}

// Close leaves the consumer group when this process holds no entries (a
// crashed process's name stays until its entries are reclaimed) and closes
// the connection.
func (s *Store) Close(ctx context.Context) error {
	var errs []error
	for _, stream := range s.keys.streams {
		pending, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: stream, Group: group, Start: "-", End: "+", Count: 1, Consumer: s.consumer,
		}).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("queue: pending entries of %s: %w", s.consumer, err))
			continue
		}
		if len(pending) == 0 {
			errs = append(errs, s.rdb.XGroupDelConsumer(ctx, stream, group, s.consumer).Err())
		}
	}
	errs = append(errs, s.rdb.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue: close redis: %w", err)
	}
	return nil
}
