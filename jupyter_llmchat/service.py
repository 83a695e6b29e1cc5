"""The chat service: what each llmchat.v1 message does (docs/protocol.md).

Transport-free: the WebSocket handler, the REST handlers and other extensions all call
this one object, on the event loop thread. The engine reports tokens through
`on_tokens`, also on the loop thread, so no state here needs a lock.
"""

from __future__ import annotations

import binascii
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from . import protocol
from .connection import Connection, Identity
from .engine.types import (
    EngineUnavailable,
    GenerationRequest,
    QueueFull,
    SamplingConfig,
    TokenEvent,
)
from .hooks import Hook, HookRegistry
from .limits import TokenBucket
from .prompt_context import Question, build_turns
from .protocol import ChatError
from .rooms import Room
from .stats import TrafficCounters
from .store import HistoryStore


class EngineLike(Protocol):
    """The part of `engine.Engine` the service uses (tests may pass a stand-in)."""

    loaded: bool
    load_error: str | None
    model_name: str
    n_ctx: int
    parallel: int

    def submit(self, request: GenerationRequest) -> int: ...

    def cancel(self, message_id: str) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ServiceLimits:
    """The limits and defaults the service enforces (from the `LLMChat` traits)."""

    system_prompt: str = ""
    max_connections: int = 100
    message_size_limit: int = 1024 * 1024
    max_tokens: int = 1024
    default_max_tokens: int = 256
    rate_limit: float = 20.0
    rate_limit_burst: int = 40
    replay_events: int = 4096
    send_queue_bytes: int = 8 * 1024 * 1024
    history_messages: int = 64
    room_cleanup_delay: float = 300.0
    connection_timeout: float = 300.0
    max_binary_bytes: int = 512 * 1024
    cancel_when_room_empty: bool = False
    history_retention_days: float = 0.0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


ASSISTANT_USERNAME = "model"
_SEEN_REQUESTS = 4096  # Generate ids remembered for idempotent retries
_FINISHED_REMEMBERED = 4096  # finished message ids remembered, to answer Cancel with 409
_RETENTION_EVERY = 3600.0  # seconds between two sweeps of the history retention
CONTEXT_MODES = ("own", "shared")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message_id() -> str:
    return "m-" + secrets.token_hex(8)


def _question_fields(request: protocol.GenerateData) -> dict[str, Any]:
    """What a stored question says of how it was asked (never the attached data itself)."""
    fields: dict[str, Any] = {}
    if request.new_thread:
        fields["thread_start"] = True
    if request.reply_to:
        fields["reply_to"] = request.reply_to
    if request.attachments:
        fields["attachments"] = [{"kind": a.kind, "label": a.label, "chars": len(a.text)} for a in request.attachments]
    return fields


@dataclass
class Generation:
    """A running answer: who asked, where its tokens go, what it has said so far."""

    message_id: str
    owner: Identity
    request_id: str | None
    room: str | None
    connection: Connection | None
    in_reply_to: str | None = None
    regenerates: str | None = None
    parts: list[str] = field(default_factory=list)
    first_seq: int | None = None


class ChatService:
    """Rooms, connections and generations of one Jupyter server."""

    def __init__(
        self,
        limits: ServiceLimits,
        store: HistoryStore,
        engine: EngineLike | None = None,
        log: logging.Logger | None = None,
        version: str = "",
    ) -> None:
        self.limits = limits
        self.store = store
        self.engine = engine
        self.log = log or logging.getLogger("jupyter_llmchat")
        self.version = version
        self.counters = TrafficCounters()
        self.hooks = HookRegistry(self.log)
        self.connections: dict[str, Connection] = {}
        self.rooms: dict[str, Room] = {}
        self._generations: dict[str, Generation] = {}
        self._acks: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._finished: OrderedDict[str, str] = OrderedDict()  # message_id -> owner username
        self._buckets: dict[str, TokenBucket] = {}
        self._settings: dict[str, dict[str, Any]] = {}  # room -> its own settings, read once
        self._next_client = 0
        self._retention_due = 0.0

    # ----------------------------------------------------------------- connections

    def at_capacity(self) -> bool:
        return len(self.connections) >= self.limits.max_connections

    def connect(self, user: Identity, transport: Any) -> Connection:
        """Register a new connection and send its `Welcome`."""
        self._next_client += 1
        client_id = f"c{self._next_client}-{secrets.token_hex(3)}"
        connection = Connection(
            client_id, user, transport, self.counters, self.limits.send_queue_bytes, self.disconnect
        )
        self.connections[client_id] = connection
        connection.send(protocol.encode("Welcome", self.welcome_data(connection)))
        self.hooks.run(self.hooks.on_connect, self, connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        """Forget a closed connection: leave its rooms, stop its private completions."""
        if self.connections.pop(connection.client_id, None) is None:
            return
        connection.closed = True
        for name in list(connection.rooms):
            self._leave(connection, self.rooms[name])
        for generation in list(self._generations.values()):
            if generation.connection is connection and self.engine is not None:
                self.engine.cancel(generation.message_id)
        self.hooks.run(self.hooks.on_disconnect, self, connection)

    def welcome_data(self, connection: Connection) -> dict[str, Any]:
        return {
            "client_id": connection.client_id,
            "user": connection.user.as_dict(),
            "protocol": protocol.PROTOCOL,
            "server": {"version": self.version},
            "model": self._model_summary(),
            "limits": {
                "message_size_limit": self.limits.message_size_limit,
                "max_tokens": self.limits.max_tokens,
                "max_connections": self.limits.max_connections,
                "rate_limit": self.limits.rate_limit,
                "rate_limit_burst": self.limits.rate_limit_burst,
                "replay_events": self.limits.replay_events,
                "max_binary_bytes": self.limits.max_binary_bytes,
                "connection_timeout": self.limits.connection_timeout,
            },
        }

    # ------------------------------------------------------------------- messages

    def receive(self, connection: Connection, raw: str | bytes) -> None:
        """Handle one frame from a client; every failure becomes an `Error` frame."""
        connection.last_seen = time.monotonic()
        self.counters.messages_received += 1
        self.counters.bytes_received += len(raw.encode()) if isinstance(raw, str) else len(raw)
        allowed = self._bucket(connection.user.username).take()  # malformed frames count too
        _, request_id = protocol.peek(raw)  # so that even an invalid frame's Error carries its id
        try:
            envelope = protocol.decode_envelope(raw)
            request_id = envelope.id
            if not allowed:
                raise ChatError(429, "rate limit exceeded; slow down")
            data = protocol.decode_data(envelope)
            self.hooks.run(self.hooks.on_message, self, connection, envelope.type, envelope, data)
            handler = getattr(self, f"_on_{envelope.type.lower()}")
            handler(connection, envelope, data)
        except ChatError as error:
            connection.send(protocol.error_frame(error.code, error.message, id=request_id))
        except Exception:
            self.log.exception("llmchat: failed to handle a message")
            connection.send(protocol.error_frame(500, "internal error", id=request_id))

    def admit_rest_post(self, username: str, size: int) -> None:
        """A REST post counts like a socket frame: the same size limit and per-user rate."""
        if size > self.limits.message_size_limit:
            raise ChatError(413, f"request of {size} bytes is over the {self.limits.message_size_limit}-byte message_size_limit")
        if not self._bucket(username).take():
            raise ChatError(429, "rate limit exceeded; slow down")

    def _bucket(self, username: str) -> TokenBucket:
        bucket = self._buckets.get(username)
        if bucket is None:
            bucket = TokenBucket(self.limits.rate_limit, self.limits.rate_limit_burst)
            self._buckets[username] = bucket
        return bucket

    def _reply(self, connection: Connection, type_: str, data: Any, envelope: protocol.Envelope) -> None:
        connection.send(protocol.encode(type_, data, id=envelope.id, room=envelope.room))

    def _member_room(self, connection: Connection, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None or connection.client_id not in room.members:
            raise ChatError(409, f"not a member of room {name!r}: send Join first")
        return room

    def _on_ping(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        self._reply(connection, "Pong", {}, envelope)

    def _on_stats(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        self._reply(connection, "Stats", self.stats(), envelope)

    def _on_audio(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        raise ChatError(501, "Audio is not supported yet")

    def _on_join(self, connection: Connection, envelope: protocol.Envelope, data: protocol.JoinData) -> None:
        room = self.room(envelope.room, create=True)
        first = room.add(connection)  # nothing is emitted until the replies below are queued
        joined = {
            "seq": room.head_seq,
            "epoch": room.epoch,
            "members": room.members_data(),
            "settings": self.room_settings(room.name),
        }
        self._reply(connection, "Joined", joined, envelope)
        if data.since is not None and room.can_resume(data.since, data.epoch):
            for frame in room.events_after(data.since):
                connection.send(frame)
        else:
            if data.since is not None:
                connection.send(protocol.encode("Reset", {"head_seq": room.head_seq}, room=room.name))
            connection.send(protocol.encode("History", self.history_data(room.name), room=room.name))
            for frame in room.running_answer_tokens():
                connection.send(frame)
        if first:
            room.emit("Presence", {"joined": connection.user.as_dict(), "members": room.members_data()})

    def _on_leave(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        room = self.rooms.get(envelope.room)
        if room is not None:
            self._leave(connection, room)
        head_seq, epoch = self.room_head(envelope.room)
        members = room.members_data() if room else []
        self._reply(connection, "Left", {"seq": head_seq, "epoch": epoch, "members": members}, envelope)

    def _leave(self, connection: Connection, room: Room) -> None:
        if room.remove(connection):
            room.emit("Presence", {"left": connection.user.as_dict(), "members": room.members_data()})
        if not room.members and self.limits.cancel_when_room_empty and self.engine is not None:
            for message_id in list(room.active_generations):
                self.engine.cancel(message_id)

    def _on_text(self, connection: Connection, envelope: protocol.Envelope, data: protocol.TextData) -> None:
        room = self._member_room(connection, envelope.room)
        self.post(room.name, data.content, connection.user.author())

    def _on_generate(self, connection: Connection, envelope: protocol.Envelope, data: protocol.GenerateData) -> None:
        if envelope.room is not None:
            self._member_room(connection, envelope.room)
        ack = self.generate(
            owner=connection.user,
            request=data,
            room=envelope.room,
            connection=None if envelope.room else connection,
            request_id=envelope.id,
            author=connection.user.author(),
        )
        self._reply(connection, "Ack", ack, envelope)

    def _on_roomsettings(self, connection: Connection, envelope: protocol.Envelope, data: protocol.RoomSettingsData) -> None:
        self._member_room(connection, envelope.room)
        settings = self.set_room_settings(envelope.room, data, connection.user)
        self._reply(connection, "RoomSettings", settings, envelope)

    def _on_cancel(self, connection: Connection, envelope: protocol.Envelope, data: protocol.CancelData) -> None:
        self.cancel(connection.user, data.message_id)

    def _on_history(self, connection: Connection, envelope: protocol.Envelope, data: protocol.HistoryData) -> None:
        self.require_room(envelope.room)
        history = self.history_data(envelope.room, before_seq=data.before_seq, limit=data.limit or 50)
        self._reply(connection, "History", history, envelope)

    def _on_custom(self, connection: Connection, envelope: protocol.Envelope, data: protocol.CustomData) -> None:
        room = self._member_room(connection, envelope.room) if envelope.room else None
        self.hooks.run(self.hooks.custom.get(data.kind, []), self, connection, envelope.room, data.kind, data.payload)
        if room is not None:
            author = connection.user.author()
            room.emit("Custom", {"kind": data.kind, "payload": data.payload, "author": author})

    def _on_binary(self, connection: Connection, envelope: protocol.Envelope, data: protocol.BinaryData) -> None:
        room = self._member_room(connection, envelope.room)
        try:
            size = len(binascii.a2b_base64(data.data, strict_mode=True))
        except (binascii.Error, ValueError):
            raise ChatError(400, "invalid Binary data: `data` is not valid base64") from None
        if size > self.limits.max_binary_bytes:
            raise ChatError(413, f"attachment of {size} bytes is over the {self.limits.max_binary_bytes}-byte limit")
        author = connection.user.author()
        room.emit(
            "Binary",
            {"data": data.data, "mime_type": data.mime_type or "application/octet-stream", "size": size, "author": author},
        )

    # ------------------------------------------------------------ rooms and history

    def room(self, name: str, *, create: bool = False) -> Room:
        """The live room of that name, brought back from the store (new epoch) if needed."""
        room = self.rooms.get(name)
        if room is None:
            head = self.store.head_seq(name)
            if head is None and not create:
                raise ChatError(404, f"unknown room {name!r}")
            room = Room(name, head or 0, self.limits.replay_events)
            self.rooms[name] = room
        return room

    def history_data(
        self, name: str, *, before_seq: int | None = None, since: int | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """`History` data: stored messages as Text room events, oldest first."""
        messages = [
            {"type": "Text", "room": name, "seq": seq, "data": data}
            for seq, data in self.store.messages(name, before_seq=before_seq, since=since, limit=limit)
        ]
        head_seq, epoch = self.room_head(name)
        return {"messages": messages, "head_seq": head_seq, "epoch": epoch}

    def require_room(self, name: str) -> None:
        """ChatError 404 unless the room is live or has ever been used."""
        if name not in self.rooms and self.store.head_seq(name) is None:
            raise ChatError(404, f"unknown room {name!r}")

    def room_head(self, name: str) -> tuple[int, str | None]:
        """A room's head seq and epoch (None for a room not live in this process)."""
        room = self.rooms.get(name)
        if room is not None:
            return room.head_seq, room.epoch
        return self.store.head_seq(name) or 0, None

    def post(
        self, room_name: str, content: str, author: dict[str, str], extra: dict[str, Any] | None = None
    ) -> tuple[str, int]:
        """Post a `Text` into a room (creating it), store it; returns (message_id, seq)."""
        room = self.room(room_name, create=True)
        data = {"message_id": new_message_id(), "content": content, "author": author, "created": now_iso(), **(extra or {})}
        seq = room.emit("Text", data)
        self.store.add_message(room.name, seq, data, seq)
        return data["message_id"], seq

    def room_info(self, name: str) -> dict[str, Any]:
        """REST `GET rooms/{room}`: head seq, epoch, members and the room's own settings."""
        head_seq, epoch = self.room_head(name)
        room = self.rooms.get(name)
        members = room.members_data() if room is not None else []
        return {
            "room": name,
            "head_seq": head_seq,
            "epoch": epoch,
            "count": len(members),
            "members": members,
            "settings": self.room_settings(name),
        }

    def room_list(self) -> list[dict[str, Any]]:
        heads = self.store.rooms()
        for name, room in self.rooms.items():
            heads[name] = room.head_seq
        return [
            {
                "room": name,
                "members": len(self.rooms[name].users()) if name in self.rooms else 0,
                "head_seq": head,
            }
            for name, head in sorted(heads.items())
        ]

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        *,
        owner: Identity,
        request: protocol.GenerateData,
        room: str | None,
        connection: Connection | None,
        request_id: str | None,
        author: dict[str, str],
    ) -> dict[str, Any]:
        """Queue an answer; returns the `Ack` data. A retried request id gets its first Ack."""
        key = (owner.username, request_id) if request_id else None
        if key is not None and key in self._acks:
            return self._acks[key]
        if self.engine is None or not self.engine.loaded:
            reason = getattr(self.engine, "load_error", None) or "the model is still loading"
            raise ChatError(503, f"model not available: {reason}")
        question, asked = self._question(owner, request, room)
        settings = self.room_settings(room) if room is not None else {}
        turns = build_turns(
            self.store,
            question,
            system_prompt=settings.get("system_prompt") or self.limits.system_prompt,
            context=settings.get("context", "own"),
            history_messages=self.limits.history_messages,
        )
        # Each asker's thread in a room is its own conversation: its own KV prefix to reuse.
        cache_key = None if room is None else room if settings.get("context") == "shared" else f"{room}\n{owner.username}"
        message_id = new_message_id()
        try:
            position = self.engine.submit(GenerationRequest(message_id, turns, self.sampling(request.config), cache_key))
        except QueueFull as error:
            raise ChatError(429, f"generation queue is full: {error}") from None
        except EngineUnavailable as error:
            raise ChatError(503, f"model not available: {error}") from None
        generation = Generation(message_id, owner, request_id, room, connection, regenerates=request.regenerate)
        self._generations[message_id] = generation
        ack = {"message_id": message_id, "queue_position": position}
        if key is not None:
            self._acks[key] = ack
            while len(self._acks) > _SEEN_REQUESTS:
                self._acks.popitem(last=False)
        if room is not None:
            live = self.room(room, create=True)
            live.active_generations.add(message_id)
            if asked is not None:  # regenerating: the question is in the room already
                generation.in_reply_to = asked
            else:
                generation.in_reply_to, _ = self.post(room, request.prompt, author, _question_fields(request))
        return ack

    def _question(
        self, owner: Identity, request: protocol.GenerateData, room: str | None
    ) -> tuple[Question, str | None]:
        """The question to answer, and the id of the stored one when it is asked again."""
        attachments = tuple(request.attachments or ())
        if room is None:
            return Question(None, owner.username, request.prompt, 0, attachments=attachments), None
        head = self.room(room, create=True).head_seq
        if request.regenerate is None:
            return (
                Question(room, owner.username, request.prompt, head + 1, request.new_thread, request.reply_to, attachments),
                None,
            )
        found = self.store.message(room, message_id=request.regenerate)
        answer = found[1] if found else {}
        asked = self.store.message(room, message_id=answer.get("in_reply_to") or "") if answer else None
        if found is None or (answer.get("author") or {}).get("kind") != "assistant" or asked is None:
            raise ChatError(404, f"no stored answer {request.regenerate!r} in room {room!r} to regenerate")
        seq, data = asked
        if (data.get("author") or {}).get("username") != owner.username:
            raise ChatError(403, "only the user who asked can regenerate this answer")
        question = Question(
            room,
            owner.username,
            str(data.get("content", "")),
            seq,
            bool(data.get("thread_start")),
            data.get("reply_to"),
            attachments,
        )
        return question, data["message_id"]

    def sampling(self, config: protocol.GenerateConfig | None) -> SamplingConfig:
        """The server's defaults overlaid with what the client set; max_tokens is capped."""
        base = self.limits.sampling
        values = {name: getattr(base, name) for name in base.__dataclass_fields__}
        values["max_tokens"] = self.limits.default_max_tokens
        if config is not None:
            for name in values:
                value = getattr(config, name, None)
                if value is not None:
                    values[name] = tuple(value) if name == "stop" else value
        values["max_tokens"] = min(values["max_tokens"], self.limits.max_tokens)
        return SamplingConfig(**values)

    def cancel(self, user: Identity, message_id: str) -> None:
        generation = self._generations.get(message_id)
        if generation is None:
            owner = self._finished.get(message_id)
            if owner is None:
                raise ChatError(404, f"unknown message {message_id!r}")
            if owner != user.username:
                raise ChatError(403, "only the user who asked can cancel this generation")
            raise ChatError(409, f"message {message_id!r} has already finished")
        if generation.owner.username != user.username:
            raise ChatError(403, "only the user who asked can cancel this generation")
        if self.engine is not None:
            self.engine.cancel(message_id)

    def on_tokens(self, events: list[TokenEvent]) -> None:
        """Engine sink (loop thread): stream each event to its room or its requester."""
        for event in events:
            generation = self._generations.get(event.message_id)
            if generation is None:
                continue
            data: dict[str, Any] = {
                "message_id": event.message_id,
                "index": event.index,
                "text": event.text,
                "is_final": event.is_final,
            }
            if event.is_final:
                data["finish_reason"] = event.finish_reason
                data["usage"] = event.usage or {}
                data["timings"] = event.timings or {}
                if event.error:
                    data["error"] = event.error
            if generation.room is not None:
                room = self.room(generation.room, create=True)
                seq = room.emit("Token", data)
                if generation.first_seq is None:
                    generation.first_seq = seq
                generation.parts.append(event.text)
                if event.is_final:
                    self._finish_room_answer(room, generation, event, seq)
            elif generation.connection is not None:
                generation.connection.send(protocol.encode("Token", data, id=generation.request_id))
            if event.is_final:
                self._generations.pop(event.message_id, None)
                self._finished[event.message_id] = generation.owner.username
                while len(self._finished) > _FINISHED_REMEMBERED:
                    self._finished.popitem(last=False)

    def _finish_room_answer(self, room: Room, generation: Generation, event: TokenEvent, seq: int) -> None:
        """Store the answer as an assistant `Text` at the seq of its first token."""
        room.active_generations.discard(generation.message_id)
        if not room.members and not room.active_generations:
            room.empty_since = time.monotonic()
        content = "".join(generation.parts)
        if not content:
            self.store.save_head(room.name, seq)
            return
        data = {
            "message_id": generation.message_id,
            "content": content,
            "author": {"username": ASSISTANT_USERNAME, "name": self._model_name(), "kind": "assistant"},
            "created": now_iso(),
            "in_reply_to": generation.in_reply_to,
            "finish_reason": event.finish_reason,
        }
        if generation.regenerates:
            data["regenerates"] = generation.regenerates
        if event.error:  # why it ended early, e.g. "server shutting down": shown with the answer
            data["error"] = event.error
        self.store.add_message(room.name, generation.first_seq or seq, data, seq)

    # ---------------------------------------------------------- room settings

    def room_settings(self, name: str) -> dict[str, Any]:
        """A room's own settings: `system_prompt` ("" = the server's) and `context`."""
        settings = self._settings.get(name)
        if settings is None:
            stored = self.store.room_settings(name)
            settings = {"system_prompt": stored.get("system_prompt", ""), "context": stored.get("context", "own")}
            if len(self._settings) >= 4096:  # a cache, not a registry: rooms come and go
                self._settings.clear()
            self._settings[name] = settings
        return settings

    def set_room_settings(self, name: str, change: protocol.RoomSettingsData, user: Identity) -> dict[str, Any]:
        """Change a room's settings, store them, and tell its members with a system `Text`."""
        settings = dict(self.room_settings(name))
        said: list[str] = []
        if change.system_prompt is not None:
            settings["system_prompt"] = change.system_prompt.strip()
            said.append("set this room's system prompt" if settings["system_prompt"] else "reset this room's system prompt")
        if change.context is not None:
            settings["context"] = change.context
            said.append(
                "let the model see the whole room" if change.context == "shared" else "let the model see only each asker's own thread"
            )
        self.store.save_room_settings(name, settings)
        self._settings[name] = settings
        if said:
            author = {"username": user.username, "name": user.name, "kind": "system"}
            self.post(name, f"{user.name} {' and '.join(said)}.", author, {"settings": settings})
        return settings

    def clear_room(self, name: str) -> int:
        """Delete a room's stored messages; its members reload an empty history (new epoch)."""
        self.require_room(name)
        deleted = self.store.delete_messages(name)
        room = self.rooms.get(name)
        if room is not None:
            room.forget_events()
            for member in list(room.members.values()):
                member.send(protocol.encode("Reset", {"head_seq": room.head_seq}, room=name))
                member.send(protocol.encode("History", self.history_data(name), room=name))
        return deleted

    # --------------------------------------------------------- server-side API

    def broadcast_to_room(self, room: str, content: str, *, username: str, author_name: str | None = None) -> tuple[str, int]:
        """Post as a bot (REST, kernels, other extensions): docs/protocol.md."""
        return self.post(room, content, {"username": username, "name": author_name or "notebook", "kind": "bot"})

    def broadcast(self, content: str, *, username: str, author_name: str | None = None) -> dict[str, tuple[str, int]]:
        """Post one bot message into every live room (e.g. "restarting in 5 minutes").

        Returns {room: (message_id, seq)}. Rooms only in the store (nobody there since the
        last restart or cleanup) are left alone: nobody would see it live.
        """
        return {
            name: self.broadcast_to_room(name, content, username=username, author_name=author_name)
            for name in list(self.rooms)
        }

    # Hook registration for other extensions; each returns the hook, so it works as a decorator.
    # Signatures: on_connect(service, connection), on_disconnect(service, connection),
    # on_message(service, connection, type, envelope, data) before the message is handled,
    # on_custom(kind)(service, connection, room | None, kind, payload).

    def on_connect(self, hook: Hook) -> Hook:
        self.hooks.on_connect.append(hook)
        return hook

    def on_message(self, hook: Hook) -> Hook:
        self.hooks.on_message.append(hook)
        return hook

    def on_disconnect(self, hook: Hook) -> Hook:
        self.hooks.on_disconnect.append(hook)
        return hook

    def on_custom(self, kind: str, hook: Hook | None = None) -> Any:
        """`service.on_custom("poll", fn)` or `@service.on_custom("poll")`."""
        if hook is None:
            return lambda fn: self.on_custom(kind, fn)
        self.hooks.add_custom(kind, hook)
        return hook

    def send_to(self, client_id: str, type_: str, data: Any) -> bool:
        connection = self.connections.get(client_id)
        if connection is None:
            return False
        connection.send(protocol.encode(type_, data))
        return True

    def connection_count(self) -> int:
        return len(self.connections)

    # ------------------------------------------------------------------ stats

    def _model_name(self) -> str:
        return getattr(self.engine, "model_name", "") or "unknown"

    def _model_summary(self) -> dict[str, Any]:
        engine = self.engine
        summary = {
            "name": self._model_name(),
            "loaded": bool(engine and engine.loaded),
            "n_ctx": getattr(engine, "n_ctx", 0),
            "parallel": getattr(engine, "parallel", 0),
        }
        if engine is not None and engine.load_error:
            summary["error"] = engine.load_error
        return summary

    def stats(self) -> dict[str, Any]:
        counters = self.counters
        model = {**self._model_summary(), **(self.engine.stats() if self.engine else {})}
        return {
            "active_connections": len(self.connections),
            "messages_received": counters.messages_received,
            "messages_sent": counters.messages_sent,
            "bytes_received": counters.bytes_received,
            "bytes_sent": counters.bytes_sent,
            "uptime_seconds": counters.uptime_seconds,
            "rooms": {
                "count": len(self.rooms),
                "members": {name: len(room.users()) for name, room in self.rooms.items()},
            },
            "model": model,
        }

    # --------------------------------------------------------------- housekeeping

    def sweep(self, now: float | None = None) -> None:
        """Close idle connections and forget rooms that stayed empty (run every second)."""
        now = time.monotonic() if now is None else now
        timeout = self.limits.connection_timeout
        if timeout > 0:
            for connection in list(self.connections.values()):
                if now - connection.last_seen > timeout:
                    connection.close(1000, f"idle for more than {timeout:g} s")
        days = self.limits.history_retention_days
        if days > 0 and now >= self._retention_due:
            self._retention_due = now + _RETENTION_EVERY
            cutoff = datetime.now(timezone.utc) - timedelta(days=days)
            self.store.delete_older_than(cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        for name, room in list(self.rooms.items()):
            if room.idle_for(now) > self.limits.room_cleanup_delay:
                self.store.save_head(name, room.head_seq)
                del self.rooms[name]

    def close(self) -> None:
        """Persist every room's head seq (the engine is closed by its owner)."""
        for name, room in self.rooms.items():
            self.store.save_head(name, room.head_seq)
