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
#   entries slack, bytes slack, the batch's epoch candidate (a user whose stream is new
#   or was lost gets it with the group's number, 4 hex digits, appended); then per
#   group: live channel, the run of each of its events' runs ("<run_id>") and "", then
#   per event: its run, seq, frame prefix, frame suffix (the envelope around its
#   offset); then "".
# Reply: per group {epoch, offset_1, stored_1, ..., offset_n, stored_n}; stored is 0
# (stored as sent), 1 (a duplicate: not stored) or -S (a terminal event stored with
# seq S instead of its own: see below).
#
# The meta hash holds epoch, offset (the last one), bytes (the stream's), x (when the
# keys' time to live was last set, ms), and per run "r:<run_id>" its last stored seq,
# "o:<run_id>" that event's offset and "t:<run_id>" when (ms). Stream IDs are
# "<offset>-0". Per group: one HMGET, one XADD per new event, one HSET, one PUBLISH
# of all the group's new frames ("epoch|first offset|frame\nframe...": a compact JSON
# envelope holds no raw newline). An event
# whose (run, seq) is not newer than the run's last stored one is not stored again (a
# retried publish): duplicate 1, with the offset of the run's last stored event. A
# terminal event comes with its seq negated: once it is stored the run's last seq is
# ENDED (2^53 - 1), so nothing of that run is stored after it (an agent still going on
# a node taken for dead, whose runs another node ended): duplicate 1 again. A terminal
# event whose seq is not newer, of a run not ended, is stored all the same with the
# seq after the run's last one (its frame's "seq" rewritten: the first "seq": of an
# envelope's suffix is its own, as run_id and thread_id are JSON strings).
# Amortised: trimming once a bound is passed by its slack (XLEN only once the stream
# could hold that many: it never holds more entries than its last offset); the age
# bound when the group passes a multiple of 16 offsets; both keys' time to live once
# 1/16 of key ttl has passed since it was last set (by the caller's clock; on a
# stream's first event too), set to key ttl + 1/16, so the keys live at least key ttl
# after the user's last event and at most 1/16 longer; when the group passes an
# offset 1 (mod 64), run fields older than the run field ttl are dropped.
# Lua converts between numbers and strings slowly (~0.3 us each): values stay the
# strings they arrive or are stored as wherever no arithmetic needs them, and the
# layout ends lists with "" rather than counting them.
# On a Redis Cluster the group's frames go out with SPUBLISH (SHARDED_PUBLISH): the
# user's live channel has the user's hash tag, so it is in the slot of its keys; each
# group touches one slot, the groups of one call the slots of one master.
_PUBLISH_TEMPLATE = (
    TRIM
    + """
local now = ARGV[1]
local now_ms = tonumber(now)
local max_events, max_bytes, max_age = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local key_ttl, run_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local refresh_ms = key_ttl * 1000 / 16
local expire_s = key_ttl + math.ceil(key_ttl / 16)
local slack_events, slack_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local candidate = ARGV[9]
local ENDED, ENDED_NUMBER = '9007199254740991', 9007199254740991
local reply = {}
local k, a = 1, 10
local total = #ARGV
while a <= total do
  local meta, stream = KEYS[k], KEYS[k + 1]
  local channel = ARGV[a]
  local wanted = {meta, 'epoch', 'offset', 'bytes', 'x'}
  a = a + 1
  local runs = {}
  while ARGV[a] ~= '' do
    local run = ARGV[a]
    runs[#runs + 1] = run
    wanted[#wanted + 1] = 'r:' .. run
    wanted[#wanted + 1] = 'o:' .. run
    a = a + 1
  end
  a = a + 1
  local got = redis.call('HMGET', unpack(wanted))
  local epoch = got[1]
  local offset, size = tonumber(got[2] or '0'), tonumber(got[3] or '0')
  local new_epoch = not epoch
  if new_epoch then
    epoch, offset, size = candidate .. string.format('%04x', #reply + 1), 0, 0
    redis.call('DEL', meta, stream)
  end
  local last_seq, last_offset, seen = {}, {}, {}
  for r = 1, #runs do
    local seq = got[3 + 2 * r]
    if seq and not new_epoch then
      last_seq[runs[r]], last_offset[runs[r]] = tonumber(seq), got[4 + 2 * r]
    end
  end
  local first = offset + 1
  local frames, first_id = {}, nil
  local group = {epoch}
  while ARGV[a] ~= '' do
    local run, seq = ARGV[a], ARGV[a + 1]
    local number = tonumber(seq)
    local ended = number < 0  -- the run's terminal event: nothing of it is stored after
    if ended then number = -number end
    local last = last_seq[run]
    local suffix, stored_as = ARGV[a + 3], 0
    if last ~= nil and number <= last then
      if ended and last < ENDED_NUMBER then
        -- A terminal event the run's later events overtook (the node ending a lost run
        -- read its history before the lost node's agent stored more): it still ends
        -- the run, renumbered after its last event. A terminal retried after being
        -- stored finds the run ended, below.
        number = last + 1
        stored_as = -number
        suffix = (string.gsub(suffix, '"seq":%d+', '"seq":' .. string.format('%d', number), 1))
      else
        stored_as = 1
      end
    end
    if stored_as == 1 then
      group[#group + 1] = last_offset[run]
      group[#group + 1] = 1
    else
      offset = offset + 1
      local id = tostring(offset)
      first_id = first_id or id
      local frame = ARGV[a + 2] .. id .. suffix
      redis.call('XADD', stream, id, 'f', frame, 't', now)
      frames[#frames + 1] = frame
      size = size + #frame
      if ended then
        last_seq[run], seen[run] = ENDED_NUMBER, ENDED
      else
        last_seq[run], seen[run] = number, seq
      end
      last_offset[run] = id
      group[#group + 1] = id
      group[#group + 1] = stored_as
    end
    a = a + 4
  end
  a = a + 1
  local added = offset - first + 1
  if added > 0 then
    if offset % 16 < added or size > max_bytes + slack_bytes
        or (offset > max_events + slack_events
            and redis.call('XLEN', stream) > max_events + slack_events) then
      size = trim(stream, max_events, max_bytes, max_age, now_ms, size)
    end
    local update = {meta, 'offset', offset, 'bytes', size}
    if new_epoch then
      update[6], update[7] = 'epoch', epoch
    end
    local expire = new_epoch or now_ms - tonumber(got[4] or '0') >= refresh_ms
    if expire then
      local n = #update
      update[n + 1], update[n + 2] = 'x', now
    end
    for run, seq in pairs(seen) do
      local n = #update
      update[n + 1], update[n + 2] = 'r:' .. run, seq
      update[n + 3], update[n + 4] = 'o:' .. run, last_offset[run]
      update[n + 5], update[n + 6] = 't:' .. run, now
    end
    redis.call('HSET', unpack(update))
    if expire then
      redis.call('EXPIRE', meta, expire_s)
      redis.call('EXPIRE', stream, expire_s)
    end
    if (offset - 1) % 64 < added then
      local all = redis.call('HGETALL', meta)
      local stale = {meta}
      for i = 1, #all, 2 do
        local name = all[i]
        if string.sub(name, 1, 2) == 't:' and now_ms - tonumber(all[i + 1]) > run_ttl then
          local run = string.sub(name, 3)
          stale[#stale + 1], stale[#stale + 2], stale[#stale + 3] = name, 'r:' .. run, 'o:' .. run
        end
      end
      if #stale > 1 then redis.call('HDEL', unpack(stale)) end
    end
    local message = frames[1]
    if #frames > 1 then message = table.concat(frames, '\\n') end
    redis.call('__PUB__', channel, epoch .. '|' .. first_id .. '|' .. message)
  end
  reply[#reply + 1] = group
  k = k + 2
end
return reply
"""
)
PUBLISH = _PUBLISH_TEMPLATE.replace("__PUB__", "PUBLISH")
SHARDED_PUBLISH = (
    "#!lua flags=allow-cross-slot-keys\n"
    + """
local count = tonumber(ARGV[1])
local KEYS = {unpack(ARGV, 2, count + 1)}
local ARGV = {unpack(ARGV, count + 2)}
"""
    + _PUBLISH_TEMPLATE.replace("__PUB__", "SPUBLISH")
)
"""The cluster variant: SPUBLISH, and keys of several slots of one master, so one call
stores a batch's events of every user whose slot that master serves (the engine sends
one call per master). A script may only *declare* keys of one slot, even with the
Redis 7 / Valkey flag ``allow-cross-slot-keys`` (which lets it touch undeclared keys of
other slots on its node): the call declares the first group's two keys and passes
every group's keys first in ARGV (their count, then the keys), which the prelude
turns back into the ``KEYS`` and ``ARGV`` the publish script reads."""

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
