"""The Lua scripts of the Redis engine (each runs atomically on the server)."""

from __future__ import annotations

__all__ = [
    "FORGET_MESSAGE",
    "POSITION",
    "PUBLISH",
    "READ",
    "SHARDED_PUBLISH",
    "TRIM_SLACK_DIVISOR",
]

TRIM_SLACK_DIVISOR = 16
"""A publish trims only once the stream is over a bound by 1/16 of it (at least one
event, one byte): trimming then costs a few commands per 1/16 of the bound instead of
four per event. Reads trim exactly first, so no answer is ever past a bound."""

# Drop the oldest entries of a user's stream while it holds more than max_events
# entries, more than max_bytes, or entries older than max_age_ms (by the caller's
# clock). size: the stream's bytes; returns the bytes left (the caller stores them).
# Reads the oldest entries in growing pages, deletes with one XDEL per 512 ids.
TRIM = """
local function trim(stream, max_events, max_bytes, max_age_ms, now, size)
  local length = redis.call('XLEN', stream)
  local doomed = {}
  local after = '-'
  local page = math.max(1, math.min(512, length - max_events + 1))
  while length > 0 do
    local entries = redis.call('XRANGE', stream, after, '+', 'COUNT', page)
    if #entries == 0 then break end
    local kept = false
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      if length > max_events or size > max_bytes or now - tonumber(fields[4]) > max_age_ms then
        doomed[#doomed + 1] = entry[1]
        size = size - #fields[2]
        length = length - 1
      else
        kept = true
        break
      end
    end
    if kept then break end
    after = '(' .. entries[#entries][1]
    page = math.min(512, page * 2)
  end
  for i = 1, #doomed, 512 do
    redis.call('XDEL', stream, unpack(doomed, i, math.min(i + 511, #doomed)))
  end
  return size
end
"""

# One call stores a batch of events of any number of users; each user's events form
# one group, in the order given (so per user, offsets follow the batch order).
#
# KEYS, per group: the user's meta hash, its stream.
# ARGV: now ms, max entries, max bytes, max age ms, key ttl s, run field ttl ms,
#   entries slack, bytes slack; then per group: candidate epoch, live channel, runs r,
#   events n, the meta field of each run ("r:<run_id>"); then per event: its run's
#   field, seq, frame prefix, frame suffix (the envelope around its offset).
# Reply: per group {epoch, offset_1, duplicate_1, ..., offset_n, duplicate_n}.
#
# The meta hash holds epoch, offset (the last one), bytes (the stream's), and per run
# "r:<run_id>" = "<last stored seq>:<its offset>:<ms>". Stream IDs are "<offset>-0".
# Per group: one HMGET, one XADD per new event, one HSET, one PUBLISH of all the
# group's new frames ("epoch|first offset|frame\nframe...": a compact JSON envelope
# holds no raw newline). An event whose (run, seq) is not newer than the run's last
# stored one is not stored again (a retried publish): duplicate 1, with the offset of
# the run's last stored event. Amortised: trimming once a bound is passed by its
# slack (XLEN only once the stream could hold that many: it never holds more entries
# than its last offset); the age bound when the group passes a multiple of 16
# offsets; when it passes an offset 1 (mod 64), so on a stream's first event too: both
# keys' time to live (days), and run fields older than the run field ttl are dropped.
# Lua converts numbers to strings and back slowly (~0.3 us each), so values are kept
# as the strings they arrive or are stored as wherever no arithmetic needs them.
# On a Redis Cluster the group's frames go out with SPUBLISH (SHARDED_PUBLISH): the
# user's live channel has the user's hash tag, so it is in the slot of its keys.
_PUBLISH_TEMPLATE = (
    TRIM
    + """
local now = ARGV[1]
local now_ms = tonumber(now)
local max_events, max_bytes, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local key_ttl, run_ttl = ARGV[5], tonumber(ARGV[6])
local slack_events, slack_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local reply = {}
local k, a = 1, 9
local total = #ARGV
while a <= total do
  local meta, stream = KEYS[k], KEYS[k + 1]
  local candidate, channel = ARGV[a], ARGV[a + 1]
  local runs, count = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local fields = a + 4
  a = fields + runs
  local got = redis.call('HMGET', meta, 'epoch', 'offset', 'bytes', unpack(ARGV, fields, a - 1))
  local epoch = got[1]
  local offset, size = tonumber(got[2] or '0'), tonumber(got[3] or '0')
  local update = {'offset', 0, 'bytes', 0}
  if not epoch then
    epoch, offset, size = candidate, 0, 0
    redis.call('DEL', meta, stream)
    update[5], update[6] = 'epoch', epoch
  end
  local last_seq, last_offset, stored = {}, {}, {}
  for r = 1, runs do
    local value = got[r + 3]
    if value then
      local seq, at = string.match(value, '^(%d+):(%d+):')
      local field = ARGV[fields + r - 1]
      last_seq[field], last_offset[field] = tonumber(seq), at
    end
  end
  local first, first_id = offset + 1, nil
  local frames = {}
  local group = {epoch}
  for _ = 1, count do
    local field, seq = ARGV[a], ARGV[a + 1]
    local last = last_seq[field]
    if last ~= nil and tonumber(seq) <= last then
      group[#group + 1] = last_offset[field]
      group[#group + 1] = 1
    else
      offset = offset + 1
      local id = tostring(offset)
      first_id = first_id or id
      local frame = ARGV[a + 2] .. id .. ARGV[a + 3]
      redis.call('XADD', stream, id, 'f', frame, 't', now)
      frames[#frames + 1] = frame
      size = size + #frame
      last_seq[field], last_offset[field] = tonumber(seq), id
      stored[field] = seq .. ':' .. id .. ':' .. now
      group[#group + 1] = id
      group[#group + 1] = 0
    end
    a = a + 4
  end
  if #frames > 0 then
    if math.floor(offset / 16) > math.floor((first - 1) / 16) or size > max_bytes + slack_bytes
        or (offset > max_events + slack_events
            and redis.call('XLEN', stream) > max_events + slack_events) then
      size = trim(stream, max_events, max_bytes, max_age, now_ms, size)
    end
    update[2], update[4] = offset, size
    for field, value in pairs(stored) do
      update[#update + 1] = field
      update[#update + 1] = value
    end
    redis.call('HSET', meta, unpack(update))
    if math.floor((offset - 1) / 64) > math.floor((first - 2) / 64) then
      redis.call('EXPIRE', meta, key_ttl)
      redis.call('EXPIRE', stream, key_ttl)
      local all = redis.call('HGETALL', meta)
      local stale = {}
      for i = 1, #all, 2 do
        local name = all[i]
        if string.sub(name, 1, 2) == 'r:' then
          local at = tonumber(string.match(all[i + 1], ':(%d+)$'))
          if at == nil or now_ms - at > run_ttl then stale[#stale + 1] = name end
        end
      end
      if #stale > 0 then redis.call('HDEL', meta, unpack(stale)) end
    end
    redis.call('__PUB__', channel, epoch .. '|' .. first_id .. '|' .. table.concat(frames, '\\n'))
  end
  reply[#reply + 1] = group
  k = k + 2
end
return reply
"""
)
PUBLISH = _PUBLISH_TEMPLATE.replace("__PUB__", "PUBLISH")
SHARDED_PUBLISH = _PUBLISH_TEMPLATE.replace("__PUB__", "SPUBLISH")

# KEYS: meta, stream. ARGV: candidate epoch, key ttl s.
POSITION = """
local got = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if not got[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {ARGV[1], 0}
end
return {got[1], tonumber(got[2] or '0')}
"""

# KEYS: meta, stream. ARGV: after offset, count, max entries, max bytes, max age ms,
# now ms. Trims exactly (no slack) before it reads.
READ = (
    TRIM
    + """
local got = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'bytes')
local size = tonumber(got[3] or '0')
local left = trim(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), size)
if left ~= size then redis.call('HSET', KEYS[1], 'bytes', left) end
local entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {got[1] or '', tonumber(got[2] or '0'), entries}
"""
)


# KEYS: a message key (``message_key``). ARGV: a run id. Drops the idempotency key
# only if it still names that run (its value is ``run_id|thread_id``).
FORGET_MESSAGE = """
local known = redis.call('GET', KEYS[1])
if known and string.sub(known, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
