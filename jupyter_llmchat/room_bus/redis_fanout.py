"""Live fan-out for the Redis room bus: one Pub/Sub subscription per room with members here.

Every batch a server emits is published with its first seq (`redis_keys.EMIT`). For each
room, this server remembers the last seq its members were sent (`LocalRoom.room.head_seq`)
and hands on only what follows it: a batch already sent is skipped, a gap (a publish lost
while Redis was away) is filled from the room's stream first, in order. So each event
reaches each member exactly once, in seq order. A room's batches are handed on under its
lock, which a Join holds while it replies (`RoomBus.holding`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Callable

import msgspec
from redis.exceptions import RedisError

from .. import protocol
from . import redis_keys as keys
from .rooms import Room

SUBSCRIBE_TIMEOUT = 5.0  # seconds to wait for Redis to confirm a subscription


def frame_parts(type_: str, data: msgspec.Struct, room: str) -> tuple[bytes, bytes]:
    """A room event's frame without its seq, split where the seq goes: the emit script
    joins them around the seq Redis assigns, giving the bytes `protocol.encode` would."""
    encoded = protocol.encode(type_, data, room=room)
    cut = encoded.index(b',"data":')  # the envelope's: inside a JSON string a quote is escaped
    return encoded[:cut], encoded[cut:]


class LocalRoom:
    """A shared room as this server sees it: its members here, what they were sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.room = Room(name, 0, 0)  # members and identities; head_seq = the last seq sent here
        self.epoch: str | None = None
        self.subscribed = False
        self.lock = asyncio.Lock()
        self.pending: deque[bytes | None] = deque()  # published batches (None: read the stream)
        self.task: asyncio.Task[None] | None = None


Heal = Callable[[LocalRoom, "int | None"], Awaitable["tuple[str | None, list[tuple[int, bytes]]]"]]


class Subscriber:
    """One Pub/Sub connection for this server; a reader task hands batches to their rooms."""

    def __init__(self, redis: Any, rooms: dict[str, LocalRoom], heal: Heal, log: logging.Logger) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub()
        self.rooms = rooms
        self._heal = heal
        self.log = log
        self._reader: asyncio.Task[None] | None = None
        self._confirm: dict[bytes, asyncio.Future[None]] = {}

    async def subscribe(self, local: LocalRoom) -> None:
        """Subscribe, then read the head: every event after it will arrive by Pub/Sub."""
        if local.subscribed:
            return
        channel = keys.room(local.name, "live").encode()
        confirmed = self._confirm[channel] = asyncio.get_running_loop().create_future()
        try:
            await self.pubsub.subscribe(channel)
            if self._reader is None:
                self._reader = asyncio.ensure_future(self._read())
            await asyncio.wait_for(confirmed, SUBSCRIBE_TIMEOUT)
        finally:
            self._confirm.pop(channel, None)
        seq, epoch = await self.redis.hmget(keys.room(local.name), ["seq", "epoch"])
        local.room.head_seq = int(seq or 0)
        local.epoch = epoch.decode() if epoch else None
        local.subscribed = True

    async def unsubscribe(self, local: LocalRoom) -> None:
        local.subscribed = False
        local.pending.clear()
        try:
            await self.pubsub.unsubscribe(keys.room(local.name, "live"))
        except (RedisError, OSError):
            pass  # gone with the connection anyway

    def heal(self, local: LocalRoom) -> None:
        """Read the room's stream for events its members were not sent (a lost publish)."""
        local.pending.append(None)
        self._kick(local)

    async def _read(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self.pubsub.get_message(timeout=1.0)
                delay = 0.1
            except (RedisError, OSError) as error:  # reconnects (and resubscribes) on the next read
                self.log.warning("llmchat: room bus subscription lost (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if message is None:
                continue
            channel = message["channel"]
            if message["type"] == "subscribe":
                confirmed = self._confirm.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                else:  # subscribed again after a lost connection: read what was published meanwhile
                    local = self._local_of(channel)
                    if local is not None and local.subscribed:
                        self.heal(local)
            elif message["type"] == "message":
                local = self._local_of(channel)
                if local is not None and local.subscribed and not self._sent_now(local, message["data"]):
                    local.pending.append(message["data"])
                    self._kick(local)

    def _local_of(self, channel: bytes) -> LocalRoom | None:
        return self.rooms.get(keys.room_of_channel(channel))

    def _sent_now(self, local: LocalRoom, batch: bytes) -> bool:
        """The usual case, handed on in this step: the next events of the room, nothing
        queued before them, no Join holding the room."""
        if local.pending or local.task is not None or local.lock.locked():
            return False
        header, _, body = batch.partition(b"\n")
        seq, _, epoch = header.partition(b" ")
        if not epoch or epoch.decode() != local.epoch or int(seq) > local.room.head_seq + 1:
            return False
        self._send_events(local, list(enumerate(body.split(b"\n"), start=int(seq))))
        return True

    def _kick(self, local: LocalRoom) -> None:
        if local.task is None:
            local.task = asyncio.ensure_future(self._hand_on(local))

    async def _hand_on(self, local: LocalRoom) -> None:
        try:
            while local.pending:
                async with local.lock:  # one batch at a time: a waiting Join goes between two
                    if not local.pending:
                        break
                    await self._hand_on_one(local, local.pending.popleft())
        except (RedisError, OSError) as error:  # the gap stays; the bus's next refresh heals it
            self.log.warning("llmchat: room %r could not read its stream: %s", local.name, error)
        finally:
            local.task = None

    async def _hand_on_one(self, local: LocalRoom, batch: bytes | None) -> None:
        if batch is None:
            epoch, missed = await self._heal(local, None)
            if epoch is not None and epoch != local.epoch:
                self._new_epoch(local, epoch, missed[0][0] if missed else local.room.head_seq + 1)
            self._send_missed(local, missed, None)
            return
        header, _, body = batch.partition(b"\n")
        if header == b"E":  # the room was cleared: a new epoch
            local.epoch = body.decode()
        elif header == b"0":  # not a room event (e.g. Reset): to every member as it is
            self._send(local, body)
        else:
            seq, _, epoch = header.partition(b" ")
            first, frames = int(seq), body.split(b"\n")
            if epoch.decode() != local.epoch:
                self._new_epoch(local, epoch.decode(), first)
            if first > local.room.head_seq + 1:
                self._send_missed(local, (await self._heal(local, first - 1))[1], first - 1)
            self._send_events(local, list(enumerate(frames, start=first)))

    def _new_epoch(self, local: LocalRoom, epoch: str, first: int) -> None:
        """Redis numbers the room under another epoch: cleared (seq goes on), or lost by Redis
        (seq starts again): then the members get `Reset` and events are counted from `first`."""
        local.epoch = epoch
        if first <= local.room.head_seq:
            local.room.head_seq = first - 1
            self._send(local, protocol.encode("Reset", protocol.Reset(first - 1), room=local.name))

    def _send_missed(self, local: LocalRoom, missed: list[tuple[int, bytes]], upto: int | None) -> None:
        """Events read from the stream; where the window no longer holds the next one, the
        members get `Reset` (they reload the history) and the events from there on."""
        gap_until = missed[0][0] - 1 if missed else upto
        if gap_until is not None and gap_until > local.room.head_seq:
            local.room.head_seq = gap_until
            self._send(local, protocol.encode("Reset", protocol.Reset(gap_until), room=local.name))
        self._send_events(local, missed)

    def _send_events(self, local: LocalRoom, events: list[tuple[int, bytes]]) -> None:
        """Numbered events: those after what was sent here go to every member, in order."""
        for seq, frame in events:
            if seq > local.room.head_seq:
                self._send(local, frame)
                local.room.head_seq = seq

    def _send(self, local: LocalRoom, frame: bytes) -> None:
        for member in list(local.room.members.values()):
            member.send(frame)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, RedisError, OSError):
                pass
        for local in self.rooms.values():
            if local.task is not None:
                local.task.cancel()
        try:
            await self.pubsub.aclose()
        except (RedisError, OSError):
            pass
