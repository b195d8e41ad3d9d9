"""The Lua scripts of the Redis engine (each runs atomically on the server)."""

from __future__ import annotations

__all__ = ["FORGET_MESSAGE", "POSITION", "PUBLISH", "READ"]

# Trim the user's stream from its oldest entry while it holds more than ARGV[1]
# entries or max bytes, or entries older than max age (ms, by the caller's clock).
TRIM = """
local function trim(stream, size_key, max_events, max_bytes, max_age_ms, now, check_age)
  local length = redis.call('XLEN', stream)
  local size = tonumber(redis.call('GET', size_key) or '0')
  if not check_age and length <= max_events and size <= max_bytes then
    return
  end
  while length > 0 do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    local fields = oldest[2]
    local bytes = #fields[2]
    local age = now - tonumber(fields[4])
    if length > max_events or size > max_bytes or age > max_age_ms then
      redis.call('XDEL', stream, oldest[1])
      size = redis.call('DECRBY', size_key, bytes)
      length = length - 1
    else
      break
    end
  end
end
"""

# KEYS: epoch, offset, stream, bytes, the run's last seq. ARGV: candidate epoch, frame
# prefix, frame suffix, max entries, max bytes, max age ms, key ttl s, channel, now ms,
# seq, run key ttl s. An event whose (run_id, seq) is not newer than the run's last
# stored one is not stored again (a retried publish): the reply's third item is 1 and
# its offset is that of the run's last stored event.
PUBLISH = (
    TRIM
    + """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
local seq = tonumber(ARGV[10])
local last = redis.call('GET', KEYS[5])
if last then
  local sep = string.find(last, ':')
  if seq <= tonumber(string.sub(last, 1, sep - 1)) then
    return {epoch, tonumber(string.sub(last, sep + 1)), 1}
  end
end
local offset = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[5], seq .. ':' .. offset, 'EX', ARGV[11])
local frame = ARGV[2] .. offset .. ARGV[3]
local now = tonumber(ARGV[9])
redis.call('XADD', KEYS[3], offset .. '-1', 'f', frame, 't', now)
redis.call('INCRBY', KEYS[4], #frame)
-- The age bound is checked every 16 events here (and always on reads).
trim(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), now,
  offset % 16 == 0)
if offset % 64 == 1 then
  -- Refreshing the keys' time to live every 64 events is enough: it is days long.
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
end
redis.call('PUBLISH', ARGV[8], epoch .. '|' .. frame)
return {epoch, offset, 0}
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
# max age ms, now ms.
READ = (
    TRIM
    + """
trim(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  true)
local epoch = redis.call('GET', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-1', '+', 'COUNT', ARGV[2])
return {epoch or '', last, entries}
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
