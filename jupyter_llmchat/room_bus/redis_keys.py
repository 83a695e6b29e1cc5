"""Where the Redis room bus keeps things, and the Lua scripts that change several at once.

Every key starts with `llmchat:`. Per room, `r` is the room's name percent-encoded
(`urllib.parse.quote(name, safe="")`: letters, digits and `_.-~` stay, every other byte is
`%XX`), so it never holds `:`, `{`, `}` or `*`: no two rooms share a key whatever their
names (`general:present` is `llmchat:room:general%3Apresent`, never room `general`'s
presence), and no name is read as a key pattern or a cluster hash tag.

| key | type | holds |
|---|---|---|
| `llmchat:room:<r>` | hash | `seq` (the head, HINCRBY), `epoch` |
| `llmchat:room:<r>:events` | stream | the replay window: entry id `<seq>-0`, fields `f` (the frame as sent), `a` (answer id of a Token) |
| `llmchat:room:<r>:live` | Pub/Sub channel | each emitted batch: `<first seq> <epoch>\\n<frame>\\n<frame>…` |
| `llmchat:room:<r>:msgs` | sorted set | stored message ids, scored by seq |
| `llmchat:room:<r>:msg` | hash | message id -> the stored `Text` data (JSON) |
| `llmchat:room:<r>:deleted` | sorted set | deleted message ids, scored by the seq of their `Deleted` event: replay redacts them |
| `llmchat:room:<r>:present` | hash | `<server>|<username>` -> `<expiry ms> <identity JSON>`; a stopped server's entries are removed by `DEPART` |

Shared: `llmchat:rooms` (set of room names), `llmchat:settings` (hash room -> JSON),
`llmchat:answers` (hash answer id -> JSON {server, room, stub}: answers streaming now),
`llmchat:answer_first` (hash answer id -> seq of its first token), `llmchat:server:{id}`
(a heartbeat key with a TTL, one per running server).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, unquote

ROOMS = "llmchat:rooms"
SETTINGS = "llmchat:settings"
ANSWERS = "llmchat:answers"
ANSWER_FIRST = "llmchat:answer_first"

_ROOM = "llmchat:room:"
RoomPart = Literal["", "events", "live", "msgs", "msg", "present", "deleted"]


def room(name: str, part: RoomPart = "") -> str:
    """The key of room `name`'s hash, or of one of its other parts (the table above)."""
    encoded = quote(name, safe="")
    return f"{_ROOM}{encoded}:{part}" if part else f"{_ROOM}{encoded}"


def room_of_channel(channel: bytes) -> str:
    """The room whose `room(name, "live")` channel this is (Pub/Sub names it in bytes)."""
    return unquote(channel[len(_ROOM) : -len(":live")].decode())


def server(server_id: str) -> str:
    return f"llmchat:server:{server_id}"


# Number a batch of events, keep them in the stream, publish them: one atomic step, so seq
# order = stream order = publish order on every server.
# With a message id in ARGV[4], a message is also stored in the history in the same step
# (a posted `Text` at its own seq, the batch's first; an ended answer at its first token's
# seq, ARGV[6]): members never see a message the history lacks.
# KEYS: room hash, stream, channel, rooms set, answer_first hash, msgs zset, msg hash.
# ARGV: maxlen, epoch for a new room, room name, the id of the message to store ("" none),
# its stored JSON, the seq to store it at ("": the batch's first), then per event: the
# frame's bytes before `"seq":`, after it, the answer id of a Token ("" else), "1" for an
# answer's first token.
EMIT = """
local n = (#ARGV - 6) / 4
local last = redis.call('HINCRBY', KEYS[1], 'seq', n)
local first = last - n + 1
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
redis.call('SADD', KEYS[4], ARGV[3])
local out = {}
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[6], tonumber(ARGV[6]) or first, ARGV[4])
  redis.call('HSET', KEYS[7], ARGV[4], ARGV[5])
end
for i = 0, n - 1 do
  local b = 7 + i * 4
  local seq = first + i
  local frame = ARGV[b] .. ',"seq":' .. seq .. ARGV[b + 1]
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'f', frame, 'a', ARGV[b + 2])
  if ARGV[b + 3] == '1' then redis.call('HSETNX', KEYS[5], ARGV[b + 2], seq) end
  out[#out + 1] = frame
end
redis.call('PUBLISH', KEYS[3], first .. ' ' .. epoch .. '\\n' .. table.concat(out, '\\n'))
return first
"""

# A presence entry is `<server>|<username>` -> `<expiry ms> <identity JSON>`. Anything else
# in the hash (written by another program, or by a version whose keys could collide) counts
# as expired and is never returned as an identity.
_PRESENCE = """
local function expiry(value) return tonumber(string.match(value, '^(%d+) ')) or 0 end
local function server_of(field)
  local bar = string.find(field, '|', 1, true)
  if bar then return string.sub(field, 1, bar - 1) end
end
local function user_of(field)
  local bar = string.find(field, '|', 1, true)
  if bar then return string.sub(field, bar + 1) end
end
"""

# A user arrives in a room through this server: add this one (entries of servers that stopped
# are removed by DEPART, which announces them), keep this server's heartbeat; returns
# {1 when no other server has the user there (a Presence is due), the room's epoch, the
# present hash then (HGETALL's flat list)}.
# KEYS: present hash, rooms set, room hash, this server's heartbeat.
# ARGV: now ms, field, value, username, room name, epoch, heartbeat ttl ms.
JOIN = _PRESENCE + """
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local elsewhere = 0
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  if field ~= ARGV[2] and expiry(value) >= now and user_of(field) == ARGV[4] then
    elsewhere = 1
  end
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[7])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[6])
return {1 - elsewhere, redis.call('HGET', KEYS[3], 'epoch'), redis.call('HGETALL', KEYS[1])}
"""

# A user's last connection here left: remove this server's entry, and the user's expired ones
# (this Presence announces them too); returns 1 when the user is on no other server there (a
# Presence is due). KEYS: present hash. ARGV: now ms, field, username.
LEAVE = _PRESENCE + """
local now = tonumber(ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local elsewhere = 0
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  if user_of(field) == ARGV[3] then
    if expiry(value) < now then
      redis.call('HDEL', KEYS[1], field)
    else
      elsewhere = 1
    end
  end
end
return 1 - elsewhere
"""

# The members of servers that stopped (their entries expired, or their heartbeat did) leave a
# room: remove their entries and return the values (`<expiry> <identity JSON>`) of the users
# now on no server there, one per user. Removing is the claim: when several servers run this
# at once, each departure is returned to exactly one of them, which announces it.
# KEYS: present hash. ARGV: now ms, then the ids of the servers whose heartbeat expired.
DEPART = _PRESENCE + """
local now = tonumber(ARGV[1])
local stopped = {}
for i = 2, #ARGV do stopped[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
local gone, staying = {}, {}
for i = 1, #all, 2 do
  local field, value = all[i], all[i + 1]
  local user = user_of(field)
  if user == nil or expiry(value) == 0 then
    redis.call('HDEL', KEYS[1], field)  -- not a presence entry: nobody to announce
  elseif stopped[server_of(field)] or expiry(value) < now then
    redis.call('HDEL', KEYS[1], field)
    gone[user] = value
  else
    staying[user] = true
  end
end
local out = {}
for user, value in pairs(gone) do
  if not staying[user] then out[#out + 1] = value end
end
return out
"""
