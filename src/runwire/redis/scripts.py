"""The Lua scripts of the Redis engine (each runs atomically on the server)."""

from __future__ import annotations

__all__ = ["POSITION", "PUBLISH", "READ", "TRIM_SLACK_DIVISOR"]

TRIM_SLACK_DIVISOR = 16
"""A publish trims only once the stream is over a bound by 1/16 of it (at least one
event, one byte): trimming then costs a few commands per 1/16 of the bound instead of
four per event. Reads trim exactly first, so no answer is ever past a bound."""

# Drop the oldest entries of a user's stream while it holds more than max_events
# entries, more than max_bytes, or entries older than max_age_ms (by the caller's
# clock). size: the stream's bytes (its size key). Reads the oldest entries in growing
# pages, deletes with one XDEL per 512 ids and one DECRBY.
TRIM = """
local function trim(stream, size_key, max_events, max_bytes, max_age_ms, now, size)
  local length = redis.call('XLEN', stream)
  local doomed, freed = {}, 0
  local after = '-'
  local page = math.max(1, math.min(512, length - max_events + 1))
  while length > 0 do
    local entries = redis.call('XRANGE', stream, after, '+', 'COUNT', page)
    if #entries == 0 then break end
    local kept = false
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      local bytes = #fields[2]
      if length > max_events or size > max_bytes or now - tonumber(fields[4]) > max_age_ms then
        doomed[#doomed + 1] = entry[1]
        freed = freed + bytes
        size = size - bytes
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
  if freed > 0 then redis.call('DECRBY', size_key, freed) end
end
"""

# One call stores a batch of events of any number of users; each user's events form
# one group, in the order given (so per user, offsets follow the batch order).
#
# KEYS, per group: epoch, offset, stream, bytes, then the keys holding the last stored
#   "seq:offset" of each run the group has events of.
# ARGV: now ms, max entries, max bytes, max age ms, key ttl s, run key ttl s, entries
#   slack, bytes slack; then per group: candidate epoch, live channel, runs r, events n;
#   then per event: run index (1..r), seq, frame prefix, frame suffix (the envelope
#   around its offset).
# Reply: per group {epoch, offset_1, duplicate_1, ..., offset_n, duplicate_n}.
#
# Per group: one MGET (epoch, offset, the runs' last seq), one XADD per new event, one
# INCRBY each for offset and bytes, one SET per run, one PUBLISH of all the group's new
# frames ("epoch|first offset|frame\nframe...": a compact JSON envelope holds no raw
# newline). An event whose (run, seq) is not newer than the run's last stored one is
# not stored again (a retried publish): duplicate 1, with the offset of the run's last
# stored event. Trimming happens once a bound is passed by its slack (XLEN only once
# the stream could hold that many: it never holds more entries than its last offset),
# the age bound is checked when the group passes a multiple of 16 offsets, and the
# keys' time to live (days) is refreshed when it passes an offset 1 (mod 64): so the
# first event of a stream sets it.
PUBLISH = (
    TRIM
    + """
local now = tonumber(ARGV[1])
local max_events, max_bytes, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local key_ttl, run_ttl = ARGV[5], ARGV[6]
local slack_events, slack_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local reply = {}
local k, a = 1, 9
while a <= #ARGV do
  local epoch_key, offset_key, stream, size_key = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local candidate, channel = ARGV[a], ARGV[a + 1]
  local runs, count = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local got = redis.call('MGET', epoch_key, offset_key, unpack(KEYS, k + 4, k + 3 + runs))
  local epoch = got[1]
  local offset = tonumber(got[2] or '0')
  if not epoch then
    epoch = candidate
    offset = 0
    redis.call('SET', epoch_key, epoch)
    redis.call('DEL', offset_key, stream, size_key)
  end
  local last_seq, last_offset, touched = {}, {}, {}
  for r = 1, runs do
    local value = got[r + 2]
    if value then
      local sep = string.find(value, ':')
      last_seq[r] = tonumber(string.sub(value, 1, sep - 1))
      last_offset[r] = tonumber(string.sub(value, sep + 1))
    end
  end
  local first = offset + 1
  local frames, added = {}, 0
  local group = {epoch}
  for _ = 1, count do
    local r, seq = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    if last_seq[r] ~= nil and seq <= last_seq[r] then
      group[#group + 1] = last_offset[r]
      group[#group + 1] = 1
    else
      offset = offset + 1
      local frame = ARGV[a + 2] .. offset .. ARGV[a + 3]
      redis.call('XADD', stream, offset .. '-1', 'f', frame, 't', now)
      frames[#frames + 1] = frame
      added = added + #frame
      last_seq[r], last_offset[r], touched[r] = seq, offset, true
      group[#group + 1] = offset
      group[#group + 1] = 0
    end
    a = a + 4
  end
  if #frames > 0 then
    redis.call('INCRBY', offset_key, #frames)
    local size = redis.call('INCRBY', size_key, added)
    for r = 1, runs do
      if touched[r] then
        redis.call('SET', KEYS[k + 3 + r], last_seq[r] .. ':' .. last_offset[r], 'EX', run_ttl)
      end
    end
    local age_due = math.floor(offset / 16) > math.floor((first - 1) / 16)
    if age_due or size > max_bytes + slack_bytes or (offset > max_events + slack_events
        and redis.call('XLEN', stream) > max_events + slack_events) then
      trim(stream, size_key, max_events, max_bytes, max_age, now, size)
    end
    if math.floor((offset - 1) / 64) > math.floor((first - 2) / 64) then
      for i = 0, 3 do redis.call('EXPIRE', KEYS[k + i], key_ttl) end
    end
    redis.call('PUBLISH', channel, epoch .. '|' .. first .. '|' .. table.concat(frames, '\\n'))
  end
  reply[#reply + 1] = group
  k = k + 4 + runs
end
return reply
"""
)

# KEYS: epoch, offset, stream, bytes. ARGV: candidate epoch, key ttl s.
POSITION = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch, 'EX', ARGV[2])
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
return {epoch, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

# KEYS: epoch, offset, stream, bytes. ARGV: after offset, count, max entries, max bytes,
# max age ms, now ms. Trims exactly (no slack) before it reads.
READ = (
    TRIM
    + """
trim(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(redis.call('GET', KEYS[4]) or '0'))
local epoch = redis.call('GET', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-1', '+', 'COUNT', ARGV[2])
return {epoch or '', last, entries}
"""
)
