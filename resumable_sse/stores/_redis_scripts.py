"""The Lua scripts of the Redis store: each store operation is one atomic script call.

Every script gets the same three names (one hash tag, so one Cluster slot) and the same
first five arguments::

    KEYS[1] meta hash   KEYS[2] log stream   KEYS[3] notification channel (not a key)
    ARGV[1] name of the "producer lost" event   ARGV[2] its data
    ARGV[3] retention (ms)   ARGV[4] sliding TTL while running (ms)   ARGV[5] lease (ms)

The log holds one stream entry per batch: its id is the batch's last sequence number
(``<seq>-0``) and its fields are ``n`` (the number of events) and ``b`` (the events,
encoded by the client as one JSON array of runs ``[event, [data, ...], ...]``). Only the
reaper writes ``b`` itself (with cjson); otherwise scripts never look inside it, so a
batch costs the same few commands and one argument whatever its size. A batch whose
encoding passes ``ENTRY_BYTES`` comes in parts, an entry each (one script call all the
same), and a read stops adding entries once they hold ``READ_BYTES``: large events never
make one read carry the whole stream.

A finished stream keeps its keys for ``max(retention, FINISHED_LINGER)`` and records in
``rx`` when its retention ends; past ``rx`` it is hidden (``claim`` replaces it, ``READ``
returns nil) except from a ``READ`` naming its incarnation: a reader still reading it.

Scripts that change what waiters wait for publish one letter on the session's channel
with ``SPUBLISH`` (sharded pub/sub: on Cluster the message stays on the slot's node):
``a`` appended, ``f`` finished, ``c`` cancel requested, ``d`` deleted. The store's
notifier (``_redis_notify.py``) wakes the local waiters; a message nobody hears costs
nothing but its delivery.

Time comes from the server (``TIME``), never from a client's clock. Any script that
loads the meta hash also *reaps*, in two steps, so that a stall or outage of Redis
itself (during which nobody can renew) is never taken for the producer's death:

1. A script run by anyone but the owner (a reader, ``info``, a claim, a cancel request)
   that finds the stream running with its lease expired only marks it *suspect*: the
   hash's ``sus`` field records the time.
2. A later such script that finds the lease still expired one full lease after that
   mark reaps: it appends the "producer lost" event and marks the stream ``error``.

The owner's scripts (those called with its token and incarnation) never reap: its
append or renewal succeeds however late it comes, unless the stream was reaped in
the meantime, and it clears the mark with its new lease. So a producer that is alive
gets one lease from the first look after Redis serves again, while a dead producer's
stream is reaped two leases after its last renewal (plus the time until somebody
looks; waiting readers wake for both steps: ``READ`` reports when the next step is
due). The scripts are written for Lua 5.1 (Redis) and also run on Lua 5.4 (fakeredis
with lupa), hence ``math.floor`` and the ``unpack`` fallback.
"""

from __future__ import annotations

from ._contract import FINISHED_LINGER

#: A batch whose encoding is longer than this is stored as several entries, each about
#: this long at most (or one event).
ENTRY_BYTES = 256 * 1024
#: A read adds no more entries once those it has hold this many bytes.
READ_BYTES = 1024 * 1024

__all__ = [
    "ALL",
    "APPEND",
    "CANCEL_CHECK",
    "CLAIM",
    "CLEAR_ACTIVE",
    "DELETE",
    "ENTRY_BYTES",
    "FINISH",
    "READ",
    "READ_BYTES",
    "RENEW",
    "REQUEST_CANCEL",
    "SET_ACTIVE",
]

_PRELUDE = (
    f"local LINGER = {int(FINISHED_LINGER * 1000)}\n"
    + """
local META, LOG, CHAN = KEYS[1], KEYS[2], KEYS[3]
local KEEP = math.max(tonumber(ARGV[3]), LINGER)
local RUNNING_TTL = tonumber(ARGV[4])
local LEASE = tonumber(ARGV[5])
local unpack = table.unpack or unpack
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)

local function expire_all(ms)
  redis.call('PEXPIRE', META, ms)
  redis.call('PEXPIRE', LOG, ms)
end

-- A stream that has just ended: hidden once its retention is over (at rx), kept for
-- readers still reading it until KEEP ms after its end.
local function ended()
  local rx = NOW + tonumber(ARGV[3])
  redis.call('HSET', META, 'rx', rx)
  expire_all(KEEP)
  return tostring(rx)
end

-- m: 1 inc, 2 tok, 3 st, 4 first, 5 last, 6 created, 7 updated, 8 cancel, 9 lease,
-- 10 lost, 11 owner, 12 rx (retention end), 13 suspect. After load(), m[9] is when an
-- observer should look again: the lease's expiry, or, once the stream is suspect, the
-- mark plus one lease. tok/inc: the caller's claim, if it has one; its owner never
-- reaps (see the docstring).
local function load(tok, inc)
  local m = redis.call('HMGET', META, 'inc', 'tok', 'st', 'first', 'last', 'c', 'u', 'cx',
                       'le', 'lost', 'own', 'rx', 'sus')
  if not m[1] then return nil end
  if m[3] ~= 'running' or tonumber(m[9]) > NOW or (m[2] == tok and m[1] == inc) then
    return m
  end
  if not m[13] then
    redis.call('HSET', META, 'sus', NOW)
    m[13] = tostring(NOW)
  elseif tonumber(m[13]) + LEASE <= NOW then
    local seq = tonumber(m[5]) + 1
    redis.call('XADD', LOG, seq .. '-0', 'n', 1, 'b', cjson.encode({ARGV[1], {ARGV[2]}}))
    redis.call('HSET', META, 'st', 'error', 'last', seq, 'u', NOW, 'lost', '1')
    m[3], m[5], m[7], m[10] = 'error', tostring(seq), tostring(NOW), '1'
    m[12] = ended()
    redis.call('SPUBLISH', CHAN, 'f')
  end
  m[9] = tostring(tonumber(m[13]) + LEASE)
  return m
end

-- The owner's write or renewal: a new lease, and the stream is no longer suspect.
local function extend(m)
  if m[13] then
    redis.call('HDEL', META, 'sus')
  end
  redis.call('HSET', META, 'le', NOW + LEASE)
end

-- A finished stream past its retention, unless the caller names its incarnation.
local function hidden(m, inc)
  return m[3] ~= 'running' and m[12] and tonumber(m[12]) <= NOW and m[1] ~= inc
end

local function owned(m, tok, inc)
  return m ~= nil and m[2] == tok and m[1] == inc
end
"""
)

#: ARGV[6] incarnation, [7] owner ('' for none). Returns the fencing token (a string),
#: or nil if a stream exists (a hidden one is replaced).
CLAIM = (
    _PRELUDE
    + """
local m = load()
if m and not hidden(m, '') then return false end
redis.call('DEL', META, LOG)
local tok = T[1] .. string.format('%06d', tonumber(T[2]))
redis.call('HSET', META, 'inc', ARGV[6], 'tok', tok, 'st', 'running', 'first', '1',
           'last', '0', 'c', NOW, 'u', NOW, 'cx', '0', 'le', NOW + LEASE)
if ARGV[7] ~= '' then redis.call('HSET', META, 'own', ARGV[7]) end
redis.call('PEXPIRE', META, RUNNING_TTL)
return tok
"""
)

#: ARGV[6] token, [7] incarnation, [8] first seq, [9] max_len (0: none), [10] number
#: of events, then the encoded batch in parts, each its number of events and its
#: encoding: one stream entry each. Returns 1 (written, or a retry that had landed) or
#: 0 (lease lost / gap). The sliding TTL is extended by ``RENEW`` only (every lease / 3),
#: not by every batch.
APPEND = (
    _PRELUDE
    + """
local m = load(ARGV[6], ARGV[7])
if not owned(m, ARGV[6], ARGV[7]) or m[3] ~= 'running' then return 0 end
local last = tonumber(m[5])
local first = tonumber(ARGV[8])
local top = first - 1 + tonumber(ARGV[10])
if last == top then return 1 end
if last ~= first - 1 then return 0 end
local seq = last
for i = 11, #ARGV, 2 do
  seq = seq + tonumber(ARGV[i])
  redis.call('XADD', LOG, seq .. '-0', 'n', ARGV[i], 'b', ARGV[i + 1])
end
redis.call('HSET', META, 'last', top, 'u', NOW)
extend(m)
if last == 0 then redis.call('PEXPIRE', LOG, RUNNING_TTL) end
redis.call('SPUBLISH', CHAN, 'a')
local cap = tonumber(ARGV[9])
if cap > 0 and top > cap then
  redis.call('XTRIM', LOG, 'MINID', (top - cap + 1) .. '-0')
  local oldest = redis.call('XRANGE', LOG, '-', '+', 'COUNT', 1)[1]
  local id = tonumber(string.match(oldest[1], '^%d+'))
  redis.call('HSET', META, 'first', id - tonumber(oldest[2][2]) + 1)
end
return 1
"""
)

#: ARGV[6] token, [7] incarnation, [8] state, [9] seq, [10] the terminal event, encoded
#: as a one-event batch.
#: Returns 1 (finished, or a retry that had landed) or 0 (lease lost).
FINISH = (
    _PRELUDE
    + """
local m = load(ARGV[6], ARGV[7])
if not owned(m, ARGV[6], ARGV[7]) then return 0 end
local seq = tonumber(ARGV[9])
if m[3] == ARGV[8] and tonumber(m[5]) == seq and not m[10] then return 1 end
if m[3] ~= 'running' or tonumber(m[5]) ~= seq - 1 then return 0 end
redis.call('XADD', LOG, seq .. '-0', 'n', 1, 'b', ARGV[10])
redis.call('HSET', META, 'st', ARGV[8], 'last', seq, 'u', NOW)
ended()
redis.call('SPUBLISH', CHAN, 'f')
return 1
"""
)

#: ARGV[6] after, [7] limit (0: state only), [8] the incarnation the caller reads ('' for
#: none). Returns nil if there is no stream (or it is hidden from the caller), else
#: {inc, state, first, last, created, updated, cancel, due, now, owner} followed, for
#: each batch holding events after ``after`` until ``limit`` of them are covered, by
#: its last seq, its number of events and its encoded events; batches stop once they
#: hold READ_BYTES (after the first). ``due`` is when a reader
#: waiting on a running stream should look again: its lease's expiry, or, once the
#: stream is suspect, the time its reap would be due.
READ = (
    _PRELUDE
    + f"local READ_BYTES = {READ_BYTES}\n"
    + """
local m = load()
if not m or hidden(m, ARGV[8]) then return false end
local out = {m[1], m[3], m[4], m[5], m[6], m[7], m[8], m[9], tostring(NOW), m[11] or ''}
local after = tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local count, bytes = 0, 0
if limit > 0 and tonumber(m[5]) > after then
  local from = '(' .. after .. '-0'
  while count < limit and bytes < READ_BYTES do
    local entries = redis.call('XRANGE', LOG, from, '+', 'COUNT', 16)
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      if count >= limit or bytes >= READ_BYTES then break end
      bytes = bytes + #entry[2][4]
      local top = tonumber(string.match(entry[1], '^%d+'))
      local n = tonumber(entry[2][2])
      count = count + math.min(n, top - after)
      out[#out + 1] = top
      out[#out + 1] = n
      out[#out + 1] = entry[2][4]
      from = '(' .. entry[1]
    end
    if #entries < 16 then break end  -- that was the end of the log
  end
end
return out
"""
)

#: Returns 1 if the stream is running (its producer is told), else 0.
REQUEST_CANCEL = (
    _PRELUDE
    + """
local m = load()
if not m or m[3] ~= 'running' then return 0 end
if m[8] ~= '1' then
  redis.call('HSET', META, 'cx', '1')
  redis.call('SPUBLISH', CHAN, 'c')
end
return 1
"""
)

#: ARGV[6] token, [7] incarnation. Returns 1 if the producer must stop (cancel
#: requested, stream gone, re-claimed or ended without it), else 0.
CANCEL_CHECK = (
    _PRELUDE
    + """
local m = load(ARGV[6], ARGV[7])
if not owned(m, ARGV[6], ARGV[7]) or m[8] == '1' or m[3] ~= 'running' then return 1 end
return 0
"""
)

#: ARGV[6] token, [7] incarnation. Returns 1 if the lease was extended, else 0.
RENEW = (
    _PRELUDE
    + """
local m = load(ARGV[6], ARGV[7])
if not owned(m, ARGV[6], ARGV[7]) or m[3] ~= 'running' then return 0 end
extend(m)
redis.call('PEXPIRE', META, RUNNING_TTL)
redis.call('PEXPIRE', LOG, RUNNING_TTL)
return 1
"""
)

#: Returns 1 if a stream existed; its readers and producer are told.
DELETE = (
    _PRELUDE
    + """
local existed = redis.call('DEL', META)
redis.call('DEL', LOG)
if existed == 0 then return 0 end
redis.call('SPUBLISH', CHAN, 'd')
return 1
"""
)

# -- conversations: one active stream each ----------------------------------------------
#
# These scripts touch one key, ``{<prefix>|<conversation id>}:active`` (a string holding
# the active session id), and take none of the common arguments above.

#: KEYS[1] the conversation's key. ARGV[1] session id, [2] '1' to replace another
#: session, [3] expiry (ms). Returns the session id mapped before the call, or nil.
SET_ACTIVE = """
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] or ARGV[2] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[3]))
end
return current
"""

#: KEYS[1] the conversation's key. ARGV[1] session id. Returns 1 if the mapping named it
#: and was removed, else 0.
CLEAR_ACTIVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

#: Every script, to load before the first call.
ALL = (
    CLAIM,
    APPEND,
    FINISH,
    READ,
    REQUEST_CANCEL,
    CANCEL_CHECK,
    RENEW,
    DELETE,
    SET_ACTIVE,
    CLEAR_ACTIVE,
)
