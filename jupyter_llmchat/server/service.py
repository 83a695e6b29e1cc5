"""The chat service: what each llmchat.v1 message does (docs/protocol.md).

Transport-free: the WebSocket handler, the REST handlers and other extensions all call
this one object, on the event loop thread; its entry points are coroutines because the room
bus may do I/O (a frame's handling is awaited before the socket's next frame is read). It
talks to rooms only through the room bus (`room_bus.RoomBus`) and to the model only through
the model backend (`model_backend.ModelBackend`, via `answers.Answers`), so no state here
needs a lock.
Frames are built from `protocol`'s structs; what the REST handlers and other extensions get
back from `generate`, `stats` and `room_info` stays plain JSON values (dicts), as it was.
What only REST and extensions call on rooms (history pages, room info, bot posts) is the
`room_api.RoomApi` half of this object.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from .. import protocol
from ..protocol import ChatError, Stats
from .answers import Answers
from .connection import Connection, Identity
from .hooks import HookApi, HookRegistry
from .limits import RateLimiter
from .messages import iso_time, post_text
from ..backends.model_backend import ModelBackend
from ..room_bus.bus import RoomBus
from .moderation import FRAMES as MODERATION_FRAMES
from .moderation import Moderation
from .room_api import RoomApi
from .room_settings import RoomSettingsBook
from .settings import ServiceLimits
from .stats import TrafficCounters, model_summary, server_stats
from .token_steps import TokenSteps

_RETENTION_EVERY = 3600.0  # seconds between two sweeps of the history retention


class ChatService(RoomApi, HookApi):
    """Connections, rooms and answers of one Jupyter server."""

    def __init__(
        self,
        limits: ServiceLimits,
        bus: RoomBus,
        backend: ModelBackend,
        tokens: TokenSteps,
        log: logging.Logger | None = None,
        version: str = "",
    ) -> None:
        self.limits = limits
        self.bus = bus
        self.backend = backend
        self.log = log or logging.getLogger("jupyter_llmchat")
        self.version = version
        self.counters = TrafficCounters()
        self.hooks = HookRegistry(self.log)
        self.connections: dict[str, Connection] = {}
        self.settings = RoomSettingsBook(bus, self.log)
        self.tokens = tokens  # the backend's sink
        self.answers = Answers(bus, self.settings, limits, backend, tokens)
        self.moderation = Moderation(bus, self.settings, self.answers, self.forget_saved_states, self.log)
        self.rate = RateLimiter(limits.rate_limit, limits.rate_limit_burst)
        self._next_client = 0
        self._retention_due = 0.0
        self._tasks: set[asyncio.Task[None]] = set()  # disconnects under way
        #: Set while the service hands over and takes no more work: why (new sockets and
        #: questions are refused with it; running answers finish).
        self.closing = ""

    # ----------------------------------------------------------------- connections

    def refusal(self, user: Identity) -> str | None:
        """Why a new socket of `user` is refused (close 1013), or None to admit it.

        No user may hold more than `max_connections_per_user` sockets, so one client cannot
        fill the server; the owner's kernels and CLI (runtime secret) get in even when it is
        full, up to `owner_reserved_connections` beyond `max_connections`."""
        if self.closing:
            return self.closing
        limits = self.limits
        total = len(self.connections)
        if user.owner:
            if total < limits.max_connections + limits.owner_reserved_connections:
                return None
            return "server at max_connections (and the owner's reserve); try again later"
        if total >= limits.max_connections:
            return "server at max_connections; try again later"
        mine = sum(1 for connection in self.connections.values() if connection.user.username == user.username)
        if mine >= limits.max_connections_per_user:
            return f"you have {mine} sockets open (max_connections_per_user); close one first"
        return None

    def connect(self, user: Identity, transport: Any) -> Connection:
        """Register a new connection and send its `Welcome`."""
        self._next_client += 1
        client_id = f"c{self._next_client}-{secrets.token_hex(3)}"
        connection = Connection(
            client_id, user, transport, self.counters, self.limits.send_queue_bytes, self.disconnect_soon
        )
        self.connections[client_id] = connection
        connection.send(protocol.encode("Welcome", self.welcome_data(connection)))
        self.hooks.run(self.hooks.on_connect, self, connection)
        return connection

    def disconnect_soon(self, connection: Connection) -> None:
        """`disconnect` from synchronous code (a socket's close callback)."""
        task = asyncio.ensure_future(self.disconnect(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def disconnect(self, connection: Connection) -> None:
        """Forget a closed connection: leave its rooms, stop its private answers."""
        if self.connections.pop(connection.client_id, None) is None:
            return
        connection.closed = True
        for name in list(connection.rooms):
            try:
                await self._leave(connection, name)
            except Exception:  # e.g. the room bus is away: its presence expires on its own
                self.log.warning("llmchat: leaving room %r failed", name, exc_info=True)
        self.answers.cancel_private(connection)
        self.hooks.run(self.hooks.on_disconnect, self, connection)

    def welcome_data(self, connection: Connection) -> protocol.Welcome:
        limits = self.limits
        return protocol.Welcome(
            client_id=connection.client_id,
            user=protocol.Me(connection.user.username, connection.user.name, connection.user.moderator),
            protocol=protocol.PROTOCOL,
            server=protocol.ServerVersion(self.version),
            model=model_summary(self.backend),
            limits=protocol.Limits(
                message_size_limit=limits.message_size_limit,
                max_tokens=limits.max_tokens,
                max_connections=limits.max_connections,
                max_connections_per_user=limits.max_connections_per_user,
                rate_limit=limits.rate_limit,
                rate_limit_burst=limits.rate_limit_burst,
                replay_events=limits.replay_events,
                max_binary_bytes=limits.max_binary_bytes,
                connection_timeout=limits.connection_timeout,
            ),
        )

    # ------------------------------------------------------------------- messages

    async def receive(self, connection: Connection, raw: str | bytes, request_id: str | None) -> None:
        """Handle one frame from a client; every failure becomes an `Error` frame.

        `request_id` is what the transport's `protocol.peek` read of the frame (it peeks to
        authorize by type): the frame is peeked once, and even an invalid frame's Error
        carries its id."""
        connection.last_seen = time.monotonic()
        self.counters.messages_received += 1
        self.counters.bytes_received += len(raw.encode()) if isinstance(raw, str) else len(raw)
        allowed = self.rate.take(connection.user.username)  # malformed frames count too
        try:
            envelope = protocol.decode_envelope(raw)
            request_id = envelope.id
            if not allowed:
                raise ChatError(429, "rate limit exceeded; slow down")
            data = protocol.decode_data(envelope)
            self.hooks.run(self.hooks.on_message, self, connection, envelope.type, envelope, data)
            if envelope.type in MODERATION_FRAMES:
                await self.moderation.receive(connection, envelope, data)
            else:
                await getattr(self, f"_on_{envelope.type.lower()}")(connection, envelope, data)
        except ChatError as error:
            connection.send(protocol.error_frame(error.code, error.message, id=request_id))
        except Exception:
            self.log.exception("llmchat: failed to handle a message")
            connection.send(protocol.error_frame(500, "internal error", id=request_id))

    def admit_rest_post(self, username: str, size: int) -> None:
        """A REST post counts like a socket frame: the same size limit and per-user rate."""
        if size > self.limits.message_size_limit:
            raise ChatError(413, f"request of {size} bytes is over the {self.limits.message_size_limit}-byte message_size_limit")
        if not self.rate.take(username):
            raise ChatError(429, "rate limit exceeded; slow down")

    def _reply(self, connection: Connection, type_: str, data: msgspec.Struct, envelope: protocol.Envelope) -> None:
        connection.send(protocol.encode(type_, data, id=envelope.id, room=envelope.room))

    def _require_member(self, connection: Connection, room: str) -> None:
        if not self.bus.is_member(room, connection):
            raise ChatError(409, f"not a member of room {room!r}: send Join first")

    async def _on_ping(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        self._reply(connection, "Pong", protocol.Pong(), envelope)

    async def _on_stats(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        self._reply(connection, "Stats", self.stats_data(), envelope)

    async def _on_audio(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        raise ChatError(501, "Audio is not supported yet")

    async def _on_join(self, connection: Connection, envelope: protocol.Envelope, data: protocol.JoinData) -> None:
        name = envelope.room
        if name not in connection.rooms and len(connection.rooms) >= self.limits.max_rooms_per_connection:
            raise ChatError(429, f"this connection is in {len(connection.rooms)} rooms (max_rooms_per_connection); leave one first")
        async with self.bus.holding(name):  # no live event reaches the member before these replies
            room = await self.bus.join(name, connection)
            joined = protocol.Joined(
                room.head_seq, room.epoch, room.count, [user.person() for user in room.members], await self.settings.get(name),
                await self.moderation.muted_until(name, connection.user),
            )
            self._reply(connection, "Joined", joined, envelope)
            # What a Join queues at once stays within half the socket's send queue: a room
            # holding huge messages is still joined, resumed and paged, never closed (1008).
            budget = self.limits.send_queue_bytes // 2
            missed = await self._missed(name, data, budget)
            if missed is not None:
                for frame in missed:
                    connection.send(frame)
            else:
                if data.since is not None:
                    connection.send(protocol.encode("Reset", protocol.Reset(room.head_seq), room=name))
                # Up to the head just sent: a message stored since comes live, not twice.
                history = await self.history_data(name, before_seq=room.head_seq + 1, max_bytes=budget)
                connection.send(protocol.encode("History", history, room=name))
                for frame in await self.bus.running_answer_frames(name):
                    connection.send(frame)
            if room.first:
                presence = protocol.Presence([connection.user.person()], [], room.count)
                await self.bus.emit(name, "Presence", presence)

    async def _missed(self, name: str, data: protocol.JoinData, budget: int) -> list[bytes] | None:
        """The events after `since` to replay, or None (Reset) when they cannot all be
        replayed or would not fit in `budget` bytes."""
        if data.since is None:
            return None
        frames = await self.bus.catch_up(name, data.since, data.epoch)
        if frames is None:
            return None
        kept, size = [], 0
        for frame in frames:
            size += len(frame)
            if size > budget:
                return None
            kept.append(frame)
        return kept

    async def _on_leave(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        name = envelope.room
        await self._leave(connection, name)
        head_seq, epoch = await self.bus.head(name)
        left = protocol.Left(head_seq, epoch, await self.bus.member_count(name), await self._members(name))
        self._reply(connection, "Left", left, envelope)

    async def _leave(self, connection: Connection, name: str) -> None:
        if await self.bus.leave(name, connection):
            await self.bus.emit(name, "Presence", protocol.Presence([], [connection.user.person()], await self.bus.member_count(name)))
        if self.limits.cancel_when_room_empty and not await self.bus.member_count(name):
            await self.answers.cancel_room(name)

    async def _on_text(self, connection: Connection, envelope: protocol.Envelope, data: protocol.TextData) -> None:
        self._require_member(connection, envelope.room)
        await self.moderation.check_post(connection.user, envelope.room)
        await post_text(self.bus, envelope.room, data.content, connection.user.author())

    async def _on_generate(self, connection: Connection, envelope: protocol.Envelope, data: protocol.GenerateData) -> None:
        if envelope.room is not None:
            self._require_member(connection, envelope.room)
        self._taking_work()
        await self.moderation.check_ask(connection.user, envelope.room)
        ack = await self.answers.generate(
            owner=connection.user,
            request=data,
            room=envelope.room,
            connection=None if envelope.room else connection,
            request_id=envelope.id,
            author=connection.user.author(),
        )
        self._reply(connection, "Ack", ack, envelope)

    async def _on_roomsettings(self, connection: Connection, envelope: protocol.Envelope, data: protocol.RoomSettingsData) -> None:
        self._require_member(connection, envelope.room)
        self._reply(connection, "RoomSettings", await self.settings.change(envelope.room, data, connection.user), envelope)

    async def _on_cancel(self, connection: Connection, envelope: protocol.Envelope, data: protocol.CancelData) -> None:
        self.answers.cancel(connection.user, data.message_id)

    async def _on_history(self, connection: Connection, envelope: protocol.Envelope, data: protocol.HistoryData) -> None:
        await self.require_room(envelope.room)
        # Bounded in bytes like a Join's page: 50 huge messages would overflow the send queue (1008).
        history = await self.history_data(
            envelope.room, before_seq=data.before_seq, limit=data.limit or 50, max_bytes=self.limits.send_queue_bytes // 2
        )
        self._reply(connection, "History", history, envelope)

    async def _on_custom(self, connection: Connection, envelope: protocol.Envelope, data: protocol.CustomData) -> None:
        if envelope.room:
            self._require_member(connection, envelope.room)
        await self.hooks.run_awaited(self.hooks.custom.get(data.kind, []), self, connection, envelope.room, data.kind, data.payload)
        if envelope.room:
            await self.bus.emit(envelope.room, "Custom", protocol.Custom(data.kind, data.payload, connection.user.author()))

    async def _on_binary(self, connection: Connection, envelope: protocol.Envelope, data: protocol.BinaryData) -> None:
        self._require_member(connection, envelope.room)
        try:
            size = len(binascii.a2b_base64(data.data, strict_mode=True))
        except (binascii.Error, ValueError):
            raise ChatError(400, "invalid Binary data: `data` is not valid base64") from None
        if size > self.limits.max_binary_bytes:
            raise ChatError(413, f"attachment of {size} bytes is over the {self.limits.max_binary_bytes}-byte limit")
        mime_type = data.mime_type or "application/octet-stream"
        await self.bus.emit(envelope.room, "Binary", protocol.Binary(data.data, mime_type, size, connection.user.author()))

    # ---------------------------------------------------------- answers (REST and extensions)

    async def generate(self, **request: Any) -> dict[str, Any]:
        """Ask the model (REST, extensions): see `answers.Answers.generate`; the `Ack` data as a dict."""
        self._taking_work()
        await self.moderation.check_ask(request["owner"], request["room"])
        return msgspec.to_builtins(await self.answers.generate(**request))

    def _taking_work(self) -> None:
        if self.closing:
            raise ChatError(503, self.closing)

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """The `Stats` data as a dict (REST, /metrics, extensions)."""
        return msgspec.to_builtins(self.stats_data())

    def stats_data(self) -> Stats:
        return server_stats(self.counters, len(self.connections), self.bus, self.backend)

    # --------------------------------------------------------------- housekeeping

    async def sweep(self, now: float | None = None) -> None:
        """Close idle connections, apply the retention, forget quiet rooms and the rate
        buckets of quiet users (every second)."""
        now = time.monotonic() if now is None else now
        self.rate.prune(now)
        timeout = self.limits.connection_timeout
        if timeout > 0:
            for connection in list(self.connections.values()):
                if now - connection.last_seen > timeout:
                    connection.close(1000, f"idle for more than {timeout:g} s")
        days = self.limits.history_retention_days
        if days > 0 and now >= self._retention_due:
            self._retention_due = now + _RETENTION_EVERY
            cutoff = datetime.now(timezone.utc) - timedelta(days=days)
            await self.bus.delete_older_than(iso_time(cutoff))
        await self.answers.end_unended()  # before the bus's own sweep, which ends answers it finds orphaned
        await self.bus.sweep(now)

    async def close(self) -> None:
        """Emit the tokens still queued, then persist the rooms (the backend is closed by its owner)."""
        await self.tokens.drained()
        await self.answers.end_unended()  # answers the room bus failed: one last try
        await self.bus.close()
