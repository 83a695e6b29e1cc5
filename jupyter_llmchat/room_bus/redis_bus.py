"""The room bus shared by every Jupyter server that names the same Redis (`room_bus = "redis://…"`).

Redis holds each room's `seq`, its replay window (a Stream), its history, its members on
every server and the answers streaming now (keys: `redis_keys`). One Lua script numbers a
batch of events, appends it to the stream and publishes it, atomically: seq order is stream
order is publish order. Each server subscribes to the rooms its connections are in
(`redis_fanout.Subscriber`) and hands each event to its members exactly once, in seq order,
healing any gap from the stream. A server refreshes its members' presence and a heartbeat
every few seconds; when a server stops, another one ends its running answers
(`finish_reason: "error"`, stored as far as they got) and tells each room which of its
members left (`Presence`).

Redis away: every call that needs it raises `ChatError(503)` (the client sees why), live
delivery resumes when Redis is back, and nothing a client was acknowledged is lost beyond
what Redis's own persistence loses.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Iterable

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from .. import protocol
from ..protocol import MEMBERS_SHOWN, ChatError, Text
from . import redis_keys as keys
from ..server.connection import Connection, Identity
from .redis_answers import HEARTBEAT_TTL, RedisAnswers
from .redis_errors import ms, redis_errors_as_503
from .redis_fanout import LocalRoom, Subscriber, frame_parts
from .redis_history import RedisHistory
from .bus import JoinedRoom, RoomBus
from .redaction import redact_all, redact_frame
from .redis_presence import entry_expiry, entry_identity, entry_server, people
from .rooms import new_epoch

PRESENCE_TTL = 20.0  # seconds a server's members count without a refresh
REFRESH_EVERY = 5.0  # seconds between refreshes (presence, heartbeat, dead servers' answers)


class RedisRoomBus(RedisAnswers, RedisHistory, RoomBus):
    """Rooms shared through one Redis; this server's members are in `LocalRoom`s (the
    answers running now: `RedisAnswers`; the stored side: `RedisHistory`)."""

    shared = True

    def __init__(
        self, url: str, replay_events: int, cleanup_delay: float, max_rooms: int | None = None,
        log: logging.Logger | None = None, timeout: float = 5.0,
    ) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_connect_timeout=min(2.0, timeout), socket_timeout=timeout, health_check_interval=10
        )
        pool = self.redis.connection_pool.connection_kwargs
        self.where = pool.get("path") or f"{pool.get('host', 'localhost')}:{pool.get('port', 6379)}/{pool.get('db', 0)}"
        self.replay_events = max(replay_events, 1)
        self.cleanup_delay = cleanup_delay
        self.max_rooms = max_rooms
        self.log = log or logging.getLogger("jupyter_llmchat")
        self.server_id = secrets.token_hex(6)
        self.local: dict[str, LocalRoom] = {}
        self.fanout = Subscriber(self.redis, self.local, self._heal, self.log)
        self._emit = self.redis.register_script(keys.EMIT)
        self._join = self.redis.register_script(keys.JOIN)
        self._leave = self.redis.register_script(keys.LEAVE)
        self._depart = self.redis.register_script(keys.DEPART)
        self._mine: set[str] = set()  # answers this server registered and has not ended
        self._first_sent: set[str] = set()  # answers whose first token's seq Redis has
        self._refresh_due = 0.0
        self._away = False  # Redis failed at the last refresh (logged once)

    def _local(self, room: str) -> LocalRoom:
        local = self.local.get(room)
        if local is None:
            if self.max_rooms is not None and len(self.local) >= self.max_rooms:
                raise ChatError(503, f"this server has {len(self.local)} rooms open (max_rooms); try again later")
            local = self.local[room] = LocalRoom(room)
        return local

    # -- membership and fan-out --------------------------------------------------------------

    def holding(self, room: str) -> Any:
        return self._local(room).lock

    @redis_errors_as_503
    async def join(self, room: str, connection: Connection) -> JoinedRoom:
        """One round trip besides the subscription: the `keys.JOIN` script for a user new
        here, which returns the presence hash too; else that hash. The head is what this
        server's members were sent (subscribed now)."""
        local = self._local(room)
        await self.fanout.subscribe(local)
        user = connection.user
        first = False
        if user.username not in local.room.identities:
            value = f"{ms(time.time() + PRESENCE_TTL)} {json.dumps([user.username, user.name])}"
            first, epoch, flat = await self._join(
                keys=[keys.room(room, "present"), keys.ROOMS, keys.room(room), keys.server(self.server_id)],
                args=[ms(time.time()), self._field(user), value, user.username, room, new_epoch(), ms(HEARTBEAT_TTL)],
            )
            first = bool(first)
            local.epoch = local.epoch or epoch.decode()  # a room nobody used: its first epoch
            present = people(dict(zip(flat[::2], flat[1::2])))
        else:
            present = await self._present(room)
        local.room.add(connection)
        return JoinedRoom(first, local.room.head_seq, local.epoch, len(present), present[:MEMBERS_SHOWN])

    @redis_errors_as_503
    async def leave(self, room: str, connection: Connection) -> bool:
        local = self.local.get(room)
        if local is None or not local.room.remove(connection):
            return False
        user = connection.user
        return bool(await self._leave(keys=[keys.room(room, "present")], args=[ms(time.time()), self._field(user), user.username]))

    def _field(self, user: Identity) -> str:
        return f"{self.server_id}|{user.username}"

    def is_member(self, room: str, connection: Connection) -> bool:
        local = self.local.get(room)
        return local is not None and connection.client_id in local.room.members

    async def _present(self, room: str) -> list[Identity]:
        """Distinct users present on any server, their entries not expired."""
        return people(await self.redis.hgetall(keys.room(room, "present")))

    @redis_errors_as_503
    async def members(self, room: str, offset: int = 0, limit: int | None = None) -> list[Identity]:
        present = await self._present(room)
        return present[offset : None if limit is None else offset + limit]

    @redis_errors_as_503
    async def member_count(self, room: str) -> int:
        return len(await self._present(room))

    def local_member_count(self, room: str) -> int:
        local = self.local.get(room)
        return len(local.room.identities) if local is not None else 0

    def live_rooms(self) -> list[str]:
        return list(self.local)

    async def emit(self, room: str, type_: str, data: msgspec.Struct) -> int:
        return (await self.emit_many(room, [(type_, data)]))[0]

    async def emit_many(self, room: str, events: list[tuple[str, msgspec.Struct]]) -> list[int]:
        return await self._emit_and_store(room, events)

    async def post(self, room: str, text: Text) -> int:
        """One script emits the `Text` and stores it: a stall (a call that timed out but ran
        when Redis came back) leaves both done or neither, never a message seen live but
        missing from the history."""
        return (await self._emit_and_store(room, [("Text", text)], stored=text))[0]

    @redis_errors_as_503
    async def _emit_and_store(
        self, room: str, events: list[tuple[str, msgspec.Struct]], stored: Text | None = None, at: int | None = None
    ) -> list[int]:
        """`keys.EMIT`: number, keep and publish the events; store `stored` too, at seq `at`
        (None: the first event's)."""
        args: list[Any] = [self.replay_events, new_epoch(), room]
        args += [stored.message_id, msgspec.json.encode(stored), at or ""] if stored is not None else ["", "", ""]
        for type_, data in events:
            head, tail = frame_parts(type_, data, room)
            answer = data.message_id if isinstance(data, protocol.Token) else ""
            first_token = bool(answer) and answer not in self._first_sent
            if first_token:
                self._first_sent.add(answer)
            args += [head, tail, answer, "1" if first_token else "0"]
        first = int(await self._emit(
            keys=[
                keys.room(room), keys.room(room, "events"), keys.room(room, "live"), keys.ROOMS, keys.ANSWER_FIRST,
                keys.room(room, "msgs"), keys.room(room, "msg"),
            ],
            args=args,
        ))
        return list(range(first, first + len(events)))

    @redis_errors_as_503
    async def deliver(self, room: str, frame: bytes) -> None:
        await self.redis.publish(keys.room(room, "live"), b"0\n" + frame)

    # -- sequence, replay and epochs -----------------------------------------------------------

    @redis_errors_as_503
    async def exists(self, room: str) -> bool:
        return room in self.local or bool(await self.redis.sismember(keys.ROOMS, room))

    @redis_errors_as_503
    async def head(self, room: str) -> tuple[int, str | None]:
        local = self.local.get(room)
        if local is not None and local.subscribed:  # what this server's members have been sent
            return local.room.head_seq, local.epoch
        seq, epoch = await self.redis.hmget(keys.room(room), ["seq", "epoch"])
        return int(seq or 0), epoch.decode() if epoch else None

    @redis_errors_as_503
    async def catch_up(self, room: str, since: int, epoch: str | None) -> Iterable[bytes] | None:
        local = self._local(room)
        head = local.room.head_seq
        if (epoch is not None and epoch != local.epoch) or since > head:
            return None
        if since == head:
            return []
        entries = await self.redis.xrange(keys.room(room, "events"), min=f"{since + 1}-0", max=f"{head}-0")
        if len(entries) != head - since:  # trimmed from the window: cannot all be replayed
            return None
        return redact_all([fields[b"f"] for _, fields in entries], await self._deleted_after(room, since))

    async def _deleted_after(self, room: str, seq: int) -> set[str]:
        """Messages deleted by an event after `seq`: their events after `seq` are redacted."""
        return {found.decode() for found in await self.redis.zrangebyscore(keys.room(room, "deleted"), f"({seq}", "+inf")}

    # -- lifetime ------------------------------------------------------------------------------

    async def sweep(self, now: float) -> None:
        """Forget quiet rooms; every few seconds refresh presence and the heartbeat, heal a
        room that fell behind, end the answers of servers that stopped and announce their
        members' departures."""
        for name, local in list(self.local.items()):
            if local.room.idle_for(now) > self.cleanup_delay and not local.lock.locked():
                del self.local[name]
                await self.fanout.unsubscribe(local)
        if now < self._refresh_due:
            return
        self._refresh_due = now + REFRESH_EVERY
        try:
            await self._refresh()
            await self._end_orphaned_answers()
            await self._announce_departures()
            if self._away:
                self.log.info("llmchat: the room bus (Redis at %s) is back", self.where)
            self._away = False
        except (RedisError, OSError, ChatError) as error:
            if not self._away:
                self.log.warning("llmchat: the room bus (Redis at %s) is unavailable: %s", self.where, error)
            self._away = True

    async def _refresh(self) -> None:
        expiry = ms(time.time() + PRESENCE_TTL)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.server(self.server_id), "1", px=ms(HEARTBEAT_TTL))
            subscribed = [local for local in self.local.values() if local.subscribed]
            for local in subscribed:
                for user in local.room.identities.values():
                    pipe.hset(keys.room(local.name, "present"), self._field(user), f"{expiry} {json.dumps([user.username, user.name])}")
                pipe.hget(keys.room(local.name), "seq")
            results = await pipe.execute()
        heads = [result for result in results if not isinstance(result, (bool, int))]
        for local, head in zip(subscribed, heads):
            if head is not None and int(head) > local.room.head_seq:
                self.fanout.heal(local)  # a publish was missed (Redis went away): read the stream

    async def _announce_departures(self) -> None:
        """In each room with members here: the members of servers that stopped (heartbeat or
        presence expired) who are on no server any more get one `Presence` saying they left,
        from whichever server claims them first (`keys.DEPART`)."""
        rooms = [local.name for local in self.local.values() if local.subscribed]
        if not rooms:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hgetall(keys.room(room, "present"))
            presents: list[dict[bytes, bytes]] = await pipe.execute()
        servers = {entry_server(field) for present in presents for field in present}
        others = sorted(servers - {self.server_id})
        beats = await self.redis.mget([keys.server(server) for server in others]) if others else []
        stopped = {server for server, beat in zip(others, beats) if beat is None}
        now = ms(time.time())
        for room, present in zip(rooms, presents):
            if not any(entry_server(field) in stopped or entry_expiry(value) < now for field, value in present.items()):
                continue
            departed = await self._depart(keys=[keys.room(room, "present")], args=[ms(time.time()), *sorted(stopped)])
            gone = sorted({(user.username, user.name) for user in map(entry_identity, departed) if user is not None})
            if gone:
                left = [Identity(username, name).person() for username, name in gone]
                await self.emit(room, "Presence", protocol.Presence([], left, await self.member_count(room)))
                self.log.info("llmchat: %d member(s) of a stopped server left room %r", len(left), room)

    async def _heal(self, local: LocalRoom, upto: int | None) -> tuple[str | None, list[tuple[int, bytes]]]:
        """The room's epoch, and its events after what its members were sent (up to `upto`)
        from the stream: all it holds when the epoch is not the one they were sent."""
        high = f"{upto}-0" if upto else "+"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.room(local.name), "epoch")
            pipe.xrange(keys.room(local.name, "events"), min=f"{local.room.head_seq + 1}-0", max=high)
            pipe.zrangebyscore(keys.room(local.name, "deleted"), f"({local.room.head_seq}", "+inf")
            raw, entries, deleted = await pipe.execute()
        epoch = raw.decode() if raw else None
        if epoch is not None and epoch != local.epoch:
            entries = await self.redis.xrange(keys.room(local.name, "events"), min="-", max=high)
            deleted = await self.redis.zrange(keys.room(local.name, "deleted"), 0, -1)
        gone = {message_id.decode() for message_id in deleted}  # deleted meanwhile: healed as tombstones
        healed = [(int(entry_id.split(b"-")[0]), fields[b"f"]) for entry_id, fields in entries]
        return epoch, [(seq, redact_frame(frame, gone)) for seq, frame in healed] if gone else healed

    async def close(self) -> None:
        """Leave Redis as if this server's members had left; stop reading."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for local in self.local.values():
                    for user in local.room.identities.values():
                        pipe.hdel(keys.room(local.name, "present"), self._field(user))
                pipe.delete(keys.server(self.server_id))
                await pipe.execute()
        except (RedisError, OSError) as error:
            self.log.warning("llmchat: could not leave the room bus cleanly: %s", error)
        await self.fanout.close()
        await self.redis.aclose()
