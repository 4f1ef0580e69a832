package redisstore

import "github.com/redis/go-redis/v9"

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
	// Returns {id, redelivered (0 or 1)} or false. A job taken over from a
	// worker that stopped renewing it (still IN_PROGRESS under another
	// name) counts a crash.
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
  local redelivered = 0
  if status == 'IN_PROGRESS' then
    redelivered = 1
    redis.call('HINCRBY', key, 'crashes', 1)
    redis.call('RPUSH', key .. ':logs', cjson.encode({time = ARGV[4], level = 'WARN',
      message = 'Worker ' .. prev .. ' stopped responding while running this request; redelivered'}))
  end
  redis.call('PUBLISH', ARGV[6], 'changed ' .. id)
  return {id, redelivered}
end
for i = 1, 2 do
  local stream = KEYS[i]
  local cursor = '0-0'
  repeat
    local r = redis.call('XAUTOCLAIM', stream, ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
    cursor = r[1]
    for _, e in ipairs(r[2]) do
      local got = take(stream, e[1], e[2])
      if got then return got end
    end
  until cursor == '0-0'
  while true do
    local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', stream, '>')
    if not r then break end
    local e = r[1][2][1]
    local got = take(stream, e[1], e[2])
    if got then return got end
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
	// channel. A job requeued at the front keeps its entry, made idle
	// "forever", so the next claim by any worker reclaims it first; an
	// entry no longer pending is replaced by a new one.
	redispatchScript = redis.NewScript(`
local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', 86400000, 'JUSTID')
if #r == 0 then
  local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[4])
  redis.call('HSET', KEYS[2], 'stream', KEYS[1], 'entry', entry)
end
redis.call('PUBLISH', ARGV[5], 'queued ' .. ARGV[4])
return 1
`)

	// requeueBackScript: KEYS old stream, new stream, job; ARGV group, old
	// entry, id, channel. A job requeued at the back drops its entry and
	// gets a new one at the end of its stream, behind every waiting job.
	requeueBackScript = redis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[3])
redis.call('HSET', KEYS[3], 'stream', KEYS[2], 'entry', entry)
redis.call('PUBLISH', ARGV[4], 'queued ' .. ARGV[3])
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
