package queue

import (
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
)

// RedisStore is the Store that many processes share: API nodes submit and
// read jobs, GPU workers claim and run them. Dispatch is a Redis stream per
// priority with one consumer group of workers:
//
//   - Add writes the job hash, its queue index and a stream entry in one
//     script; its reply (and so the submit response) comes after Redis
//     acknowledged the write (durable when Redis runs with appendonly and
//     appendfsync always).
//   - ClaimNext, one script, first reclaims entries whose holder sent no
//     heartbeat for Lease (XAUTOCLAIM: the worker died), then reads new
//     entries (XREADGROUP), and marks the job IN_PROGRESS under this
//     process's consumer name with Attempts+1. Entries of jobs that are
//     already COMPLETED are acknowledged and dropped, never run again.
//   - While a job runs, Watch renews its entry every Lease/3 (XCLAIM JUSTID
//     resets the idle time), but only while the job hash still names this
//     process; otherwise the run is told it lost the job (EventLost).
//   - Update is an optimistic transaction (WATCH/MULTI) on the job hash, so
//     the Queue's guarded completion is atomic across processes: a worker
//     whose job was redelivered cannot overwrite the other's outcome.
//     Completion acknowledges and deletes the stream entry.
//
// Key layout under Prefix (default "kleinserve"):
//
//	P:job:ID        hash: the job's fields (status, payload, result, …, stream, entry)
//	P:job:ID:logs   list of LogEntry JSON
//	P:queued        sorted set of queued ids by queue order (positions, depth)
//	P:running       set of running ids
//	P:expiry        sorted set of completed ids by expiry (ms); keys also EXPIREAT
//	P:webhooks      set of completed ids with an undelivered webhook
//	P:seq           submit counter
//	P:stream:0|1    dispatch streams (normal, low priority), group "workers"
//	P:events        pub/sub channel of "KIND ID" change notices
//
// Scripts touch job keys derived from ids, so the store needs one Redis
// server (or a primary with replicas), not a sharded Redis Cluster.
type RedisStore struct {
	rdb      *redis.Client
	keys     redisKeys
	consumer string
	lease    time.Duration
	log      zerolog.Logger

	mu   sync.Mutex
	held map[string]heldEntry // jobs this process claimed and still runs
}

// RedisOptions configures OpenRedis.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db (rediss:// for TLS).
	URL string
	// Prefix namespaces every key and the channel (default "kleinserve").
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

// redisGroup is the consumer group of all workers.
const redisGroup = "workers"

// redisOpTimeout bounds one store operation: the Store interface has no
// context, and a hung Redis must surface as an error, not a stuck worker.
const redisOpTimeout = 10 * time.Second

type redisKeys struct {
	prefix, queued, running, expiry, webhooks, seq, events string
	streams                                                [2]string // by Priority
}

func newRedisKeys(prefix string) redisKeys {
	return redisKeys{
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

func (k redisKeys) jobPrefix() string     { return k.prefix + ":job:" }
func (k redisKeys) job(id string) string  { return k.jobPrefix() + id }
func (k redisKeys) logs(id string) string { return k.job(id) + ":logs" }
func (k redisKeys) stream(p Priority) string {
	if p == PriorityLow {
		return k.streams[1]
	}
	return k.streams[0]
}

type heldEntry struct {
	stream, entry string
	attempts      int
}

// OpenRedis connects, checks the server and creates the consumer groups.
func OpenRedis(ctx context.Context, opts RedisOptions) (*RedisStore, error) {
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
	s := &RedisStore{
		rdb:      redis.NewClient(ropts),
		keys:     newRedisKeys(opts.Prefix),
		consumer: opts.WorkerID + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8],
		lease:    opts.Lease,
		log:      opts.Logger,
		held:     map[string]heldEntry{},
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("queue: connect to redis %s: %w", ropts.Addr, err)
	}
	for _, stream := range s.keys.streams {
		// "0": entries added before the group existed are dispatched too.
		err := s.rdb.XGroupCreateMkStream(ctx, stream, redisGroup, "0").Err()
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
func (s *RedisStore) warnIfNotDurable(ctx context.Context, addr string) {
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
func (s *RedisStore) Consumer() string { return s.consumer }

// Ping checks the connection (readiness of API processes).
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis ping: %w", err)
	}
	return nil
}

func opContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), redisOpTimeout)
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

// Lua scripts. Each runs atomically in Redis.
var (
	// addScript: KEYS job, queued, stream; ARGV maxQueued, score, id,
	// channel, then the job's field/value pairs. Returns the position, -1
	// for a duplicate id, -2 for a full queue.
	addScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local max = tonumber(ARGV[1])
if max > 0 and redis.call('ZCARD', KEYS[2]) >= max then return -2 end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[3])
redis.call('HSET', KEYS[1], 'stream', KEYS[3], 'entry', entry, unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'queued ' .. ARGV[3])
return redis.call('ZRANK', KEYS[2], ARGV[3])
`)

	// claimScript: KEYS normal stream, low stream, queued, running; ARGV
	// group, consumer, lease ms, now (RFC 3339), job key prefix, channel.
	// Returns the claimed id or false.
	claimScript = redis.NewScript(`
local function take(stream, entry, fields)
  if not fields or fields[1] ~= 'id' then
    redis.call('XACK', stream, ARGV[1], entry)
    redis.call('XDEL', stream, entry)
    return nil
  end
  local id = fields[2]
  local key = ARGV[5] .. id
  local status = redis.call('HGET', key, 'status')
  if not status or status == 'COMPLETED' then
    -- finished (maybe by a worker that was presumed dead) or expired
    redis.call('XACK', stream, ARGV[1], entry)
    redis.call('XDEL', stream, entry)
    return nil
  end
  local prev = redis.call('HGET', key, 'worker') or ''
  if status == 'IN_PROGRESS' and prev == ARGV[2] then
    return nil -- this process runs it; XAUTOCLAIM just renewed it
  end
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'status', 'IN_PROGRESS', 'worker', ARGV[2], 'started_at', ARGV[4],
    'stream', stream, 'entry', entry)
  redis.call('ZREM', KEYS[3], id)
  redis.call('SADD', KEYS[4], id)
  if status == 'IN_PROGRESS' then
    redis.call('RPUSH', key .. ':logs', cjson.encode({time = ARGV[4], level = 'WARN',
      message = 'Worker ' .. prev .. ' stopped responding while running this request; redelivered'}))
  end
  redis.call('PUBLISH', ARGV[6], 'changed ' .. id)
  return id
end
for i = 1, 2 do
  local stream = KEYS[i]
  local cursor = '0-0'
  repeat
    local r = redis.call('XAUTOCLAIM', stream, ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
    cursor = r[1]
    for _, e in ipairs(r[2]) do
      local id = take(stream, e[1], e[2])
      if id then return id end
    end
  until cursor == '0-0'
  while true do
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', stream, '>')
    if not r then break end
    local e = r[1][2][1]
    local id = take(stream, e[1], e[2])
    if id then return id end
  end
end
return false
`)

	// heartbeatScript: KEYS job, stream; ARGV group, consumer, entry,
	// attempts. Renews the entry while the job is still this claim.
	heartbeatScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') == 'IN_PROGRESS'
  and redis.call('HGET', KEYS[1], 'worker') == ARGV[2]
  and redis.call('HGET', KEYS[1], 'attempts') == ARGV[4] then
  redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
`)

	// appendLogScript: KEYS job, logs; ARGV consumer, line, channel, id.
	appendLogScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') == 'IN_PROGRESS' and redis.call('HGET', KEYS[1], 'worker') == ARGV[1] then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'changed ' .. ARGV[4])
  return 1
end
return 0
`)

	// redispatchScript: KEYS stream, job; ARGV group, consumer, entry, id,
	// channel. A requeued job's entry is made idle "forever", so the next
	// claim by any worker reclaims it first (it keeps its place at the
	// front); an entry no longer pending is replaced by a new one.
	redispatchScript = redis.NewScript(`
local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', 86400000, 'JUSTID')
if #r == 0 then
  local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[4])
  redis.call('HSET', KEYS[2], 'stream', KEYS[1], 'entry', entry)
end
redis.call('PUBLISH', ARGV[5], 'queued ' .. ARGV[4])
return 1
`)

	// deleteExpiredScript: KEYS expiry, webhooks; ARGV now ms, job key
	// prefix. Returns how many jobs it removed.
	deleteExpiredScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('SREM', KEYS[2], id)
  redis.call('DEL', ARGV[2] .. id, ARGV[2] .. id .. ':logs')
end
return #ids
`)
)

// Job hash encoding. Every field is written on every update, so a cleared
// field (a result, a failure) is cleared in Redis too.

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %s: %w", field, err)
	}
	return t, nil
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return ""
}

func jobFields(j *Job) ([]any, error) {
	var failure, webhook []byte
	var err error
	if j.Failure != nil {
		if failure, err = json.Marshal(j.Failure); err != nil {
			return nil, fmt.Errorf("queue: encode failure of %s: %w", j.ID, err)
		}
	}
	if j.Webhook != nil {
		if webhook, err = json.Marshal(j.Webhook); err != nil {
			return nil, fmt.Errorf("queue: encode webhook of %s: %w", j.ID, err)
		}
	}
	return []any{
		"id", j.ID, "endpoint", j.Endpoint, "payload", string(j.Payload),
		"priority", strconv.Itoa(int(j.Priority)), "ephemeral", boolField(j.Ephemeral),
		"status", string(j.Status), "queue_key", string(j.QueueKey),
		"submitted_at", formatTime(j.SubmittedAt), "started_at", formatTime(j.StartedAt),
		"finished_at", formatTime(j.FinishedAt), "expires_at", formatTime(j.ExpiresAt),
		"start_deadline", formatTime(j.StartDeadline), "cancel_requested", boolField(j.CancelRequested),
		"attempts", strconv.Itoa(j.Attempts), "worker", j.Worker,
		"result", string(j.Result), "failure", string(failure), "webhook", string(webhook),
	}, nil
}

// redisMeta is the dispatch state of a job hash, not part of Job.
type redisMeta struct{ stream, entry string }

func decodeJob(h map[string]string, logs []string) (*Job, redisMeta, error) {
	j := &Job{
		ID: h["id"], Endpoint: h["endpoint"], Status: Status(h["status"]),
		Ephemeral: h["ephemeral"] == "1", CancelRequested: h["cancel_requested"] == "1", Worker: h["worker"],
	}
	meta := redisMeta{stream: h["stream"], entry: h["entry"]}
	var errs []error
	if p := h["payload"]; p != "" {
		j.Payload = json.RawMessage(p)
	}
	if r := h["result"]; r != "" {
		j.Result = json.RawMessage(r)
	}
	if k := h["queue_key"]; k != "" {
		j.QueueKey = []byte(k)
	}
	prio, err := strconv.Atoi(h["priority"])
	errs = append(errs, err)
	j.Priority = Priority(prio)
	if a := h["attempts"]; a != "" {
		j.Attempts, err = strconv.Atoi(a)
		errs = append(errs, err)
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{
		{"submitted_at", &j.SubmittedAt}, {"started_at", &j.StartedAt}, {"finished_at", &j.FinishedAt},
		{"expires_at", &j.ExpiresAt}, {"start_deadline", &j.StartDeadline},
	} {
		*f.dst, err = parseTime(f.name, h[f.name])
		errs = append(errs, err)
	}
	if f := h["failure"]; f != "" {
		j.Failure = &Failure{}
		errs = append(errs, json.Unmarshal([]byte(f), j.Failure))
	}
	if w := h["webhook"]; w != "" {
		j.Webhook = &Webhook{}
		errs = append(errs, json.Unmarshal([]byte(w), j.Webhook))
	}
	for _, l := range logs {
		var e LogEntry
		errs = append(errs, json.Unmarshal([]byte(l), &e))
		j.Logs = append(j.Logs, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, meta, fmt.Errorf("queue: decode job %s: %w", j.ID, err)
	}
	return j, meta, nil
}

// readJob reads a job hash, its log and its queue rank in one round trip.
func (s *RedisStore) readJob(ctx context.Context, c redis.Cmdable, id string) (*Job, redisMeta, error) {
	var hash *redis.MapStringStringCmd
	var logs *redis.StringSliceCmd
	var rank *redis.IntCmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		hash = p.HGetAll(ctx, s.keys.job(id))
		logs = p.LRange(ctx, s.keys.logs(id), 0, -1)
		rank = p.ZRank(ctx, s.keys.queued, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, redisMeta{}, fmt.Errorf("queue: read job %s: %w", id, err)
	}
	if len(hash.Val()) == 0 || hash.Val()["status"] == "" {
		return nil, redisMeta{}, ErrNotFound
	}
	j, meta, err := decodeJob(hash.Val(), logs.Val())
	if err != nil {
		return nil, meta, err
	}
	if j.Status == StatusQueued && rank.Err() == nil {
		j.Position = int(rank.Val())
	}
	return j, meta, nil
}

// Add implements Store.
func (s *RedisStore) Add(job *Job, maxQueued int) error {
	ctx, cancel := opContext()
	defer cancel()
	seq, err := s.rdb.Incr(ctx, s.keys.seq).Result()
	if err != nil {
		return fmt.Errorf("queue: sequence: %w", err)
	}
	job.Status = StatusQueued
	job.QueueKey = queueKey(job.Priority, uint64(seq))
	fields, err := jobFields(job)
	if err != nil {
		return err
	}
	args := append([]any{maxQueued, queueScore(job.QueueKey), job.ID, s.keys.events}, fields...)
	pos, err := addScript.Run(ctx, s.rdb, []string{s.keys.job(job.ID), s.keys.queued, s.keys.stream(job.Priority)},
		args...).Int()
	if err != nil {
		return fmt.Errorf("queue: add job %s: %w", job.ID, err)
	}
	switch pos {
	case -1:
		return ErrDuplicateID
	case -2:
		return ErrQueueFull
	}
	job.Position = pos
	return nil
}

// Get implements Store.
func (s *RedisStore) Get(id string) (*Job, error) {
	ctx, cancel := opContext()
	defer cancel()
	j, _, err := s.readJob(ctx, s.rdb, id)
	return j, err
}

// Update implements Store as an optimistic transaction on the job hash,
// retried when another process changed the job in between.
func (s *RedisStore) Update(id string, fn func(*Job) error) (*Job, error) {
	ctx, cancel := opContext()
	defer cancel()
	key := s.keys.job(id)
	for {
		var out *Job
		var leftRunning bool
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			before, meta, err := s.readJob(ctx, tx, id)
			if err != nil {
				return err
			}
			after, _, err := s.readJob(ctx, tx, id) // an independent copy for fn
			if err != nil {
				return err
			}
			if err := fn(after); err != nil {
				return err
			}
			after.ID = before.ID
			if after.Status == StatusQueued && len(after.QueueKey) == 0 {
				seq, err := tx.Incr(ctx, s.keys.seq).Result()
				if err != nil {
					return fmt.Errorf("queue: sequence: %w", err)
				}
				after.QueueKey = queueKey(after.Priority, uint64(seq))
			}
			fields, err := jobFields(after)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, key, fields...)
				if n := len(before.Logs); len(after.Logs) > n {
					lines := make([]any, 0, len(after.Logs)-n)
					for _, l := range after.Logs[n:] {
						raw, err := json.Marshal(l)
						if err != nil {
							return fmt.Errorf("queue: encode log line: %w", err)
						}
						lines = append(lines, string(raw))
					}
					p.RPush(ctx, s.keys.logs(id), lines...)
				}
				s.reindex(ctx, p, before, after, meta)
				return nil
			})
			if err != nil {
				return err
			}
			leftRunning = before.Status == StatusRunning && after.Status != StatusRunning
			if after.Status == StatusQueued {
				after.Position = -1 // filled below, outside the transaction
			}
			out = after
			return nil
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // another process changed the job: redo fn on fresh state
		}
		if err != nil {
			if errors.Is(err, ErrNotFound) || errors.Is(err, errStateChanged) {
				return nil, err
			}
			return nil, fmt.Errorf("queue: update job %s: %w", id, err)
		}
		if leftRunning {
			s.mu.Lock()
			delete(s.held, id)
			s.mu.Unlock()
		}
		if out.Status == StatusQueued {
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
func (s *RedisStore) reindex(ctx context.Context, p redis.Pipeliner, before, after *Job, meta redisMeta) {
	id := after.ID
	if before.Status == StatusQueued && after.Status != StatusQueued {
		p.ZRem(ctx, s.keys.queued, id)
	}
	if after.Status == StatusQueued {
		p.ZAdd(ctx, s.keys.queued, redis.Z{Score: queueScore(after.QueueKey), Member: id})
	}
	if before.Status == StatusRunning && after.Status != StatusRunning {
		p.SRem(ctx, s.keys.running, id)
	}
	if after.Status == StatusRunning {
		p.SAdd(ctx, s.keys.running, id)
	}
	if before.Status == StatusRunning && after.Status == StatusQueued && meta.stream != "" {
		// Eval, not Run: a NOSCRIPT error inside MULTI would not abort it.
		redispatchScript.Eval(ctx, p, []string{meta.stream, s.keys.job(id)},
			redisGroup, s.consumer, meta.entry, id, s.keys.events)
	}
	if after.Status == StatusCompleted {
		if before.Status != StatusCompleted && meta.stream != "" {
			p.XAck(ctx, meta.stream, redisGroup, meta.entry)
			p.XDel(ctx, meta.stream, meta.entry)
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
	if !before.CancelRequested && after.CancelRequested && after.Status == StatusRunning {
		p.Publish(ctx, s.keys.events, string(EventCancel)+" "+id)
	}
	p.Publish(ctx, s.keys.events, string(EventChanged)+" "+id)
}

// ClaimNext implements Store: a dead worker's job first, then the oldest
// new normal-priority entry, then low priority.
func (s *RedisStore) ClaimNext(now time.Time) (*Job, error) {
	ctx, cancel := opContext()
	defer cancel()
	keys := []string{s.keys.streams[0], s.keys.streams[1], s.keys.queued, s.keys.running}
	id, err := claimScript.Run(ctx, s.rdb, keys, redisGroup, s.consumer, s.lease.Milliseconds(),
		formatTime(now), s.keys.jobPrefix(), s.keys.events).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: claim: %w", err)
	}
	j, meta, err := s.readJob(ctx, s.rdb, id)
	if err != nil {
		return nil, fmt.Errorf("queue: read claimed job %s: %w", id, err)
	}
	s.mu.Lock()
	s.held[id] = heldEntry{stream: meta.stream, entry: meta.entry, attempts: j.Attempts}
	s.mu.Unlock()
	return j, nil
}

// AppendLog implements SharedStore.
func (s *RedisStore) AppendLog(id string, entry LogEntry) error {
	raw, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("queue: encode log line: %w", err)
	}
	ctx, cancel := opContext()
	defer cancel()
	ok, err := appendLogScript.Run(ctx, s.rdb, []string{s.keys.job(id), s.keys.logs(id)},
		s.consumer, string(raw), s.keys.events, id).Int()
	if err != nil {
		return fmt.Errorf("queue: append log of %s: %w", id, err)
	}
	if ok == 0 {
		return fmt.Errorf("queue: append log of %s: %w", id, errStateChanged)
	}
	return nil
}

// Watch implements SharedStore: it relays the events channel and renews
// this process's claims every Lease/3 until ctx ends.
func (s *RedisStore) Watch(ctx context.Context, fn func(Event)) error {
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
				fn(Event{Kind: EventKind(kind), ID: id})
			}
		case <-heartbeat.C:
			s.renew(ctx, fn)
		}
	}
}

// renew extends the claims this process holds; a claim that is no longer
// this process's (taken over after missed heartbeats) is dropped and
// reported as EventLost, so its run stops.
func (s *RedisStore) renew(ctx context.Context, fn func(Event)) {
	s.mu.Lock()
	held := make(map[string]heldEntry, len(s.held))
	for id, h := range s.held {
		held[id] = h
	}
	s.mu.Unlock()
	for id, h := range held {
		ctx, cancel := context.WithTimeout(ctx, s.lease/3)
		ok, err := heartbeatScript.Run(ctx, s.rdb, []string{s.keys.job(id), h.stream},
			redisGroup, s.consumer, h.entry, strconv.Itoa(h.attempts)).Int()
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
			fn(Event{Kind: EventLost, ID: id})
		}
	}
}

// QueuedCount implements Store.
func (s *RedisStore) QueuedCount() (int, error) {
	ctx, cancel := opContext()
	defer cancel()
	n, err := s.rdb.ZCard(ctx, s.keys.queued).Result()
	if err != nil {
		return 0, fmt.Errorf("queue: count queued: %w", err)
	}
	return int(n), nil
}

// List implements Store. Completed jobs are the members of the expiry set.
func (s *RedisStore) List(status Status) ([]*Job, error) {
	ctx, cancel := opContext()
	defer cancel()
	var ids []string
	var err error
	switch status {
	case StatusQueued:
		ids, err = s.rdb.ZRange(ctx, s.keys.queued, 0, -1).Result()
	case StatusRunning:
		ids, err = s.rdb.SMembers(ctx, s.keys.running).Result()
	case StatusCompleted:
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

// readJobs reads several jobs, skipping those deleted meanwhile.
func (s *RedisStore) readJobs(ctx context.Context, ids []string) ([]*Job, error) {
	jobs := make([]*Job, 0, len(ids))
	for _, id := range ids {
		j, _, err := s.readJob(ctx, s.rdb, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// PendingWebhooks implements Store.
func (s *RedisStore) PendingWebhooks() ([]*Job, error) {
	ctx, cancel := opContext()
	defer cancel()
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

// DeleteExpired implements Store. Redis also expires the keys by itself
// (EXPIREAT at completion); this removes the index entries.
func (s *RedisStore) DeleteExpired(now time.Time) (int, error) {
	ctx, cancel := opContext()
	defer cancel()
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
func (s *RedisStore) Close() error {
	ctx, cancel := opContext()
	defer cancel()
	var errs []error
	for _, stream := range s.keys.streams {
		pending, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: stream, Group: redisGroup, Start: "-", End: "+", Count: 1, Consumer: s.consumer,
		}).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("queue: pending entries of %s: %w", s.consumer, err))
			continue
		}
		if len(pending) == 0 {
			errs = append(errs, s.rdb.XGroupDelConsumer(ctx, stream, redisGroup, s.consumer).Err())
		}
	}
	errs = append(errs, s.rdb.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("queue: close redis: %w", err)
	}
	return nil
}
