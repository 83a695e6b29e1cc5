"""Tornado handlers: the llmchat.v1 WebSocket and the REST API (docs/protocol.md).

Authentication, authorization and origin checks are Jupyter Server's own: the handlers
derive from `JupyterHandler`, the upgrade is `@ws_authenticated`, and every action is
checked with the server's `authorizer` on the resource `llmchat`. The one addition is
`OwnerSecretMixin`: the server's own kernels and CLI may authenticate with the runtime
secret instead of a token (see owner_auth.py).
"""

from __future__ import annotations

import functools
import struct
import time
from typing import Annotated, Any, Awaitable, Callable

import msgspec
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .. import protocol
from . import export
from .connection import Connection, Identity
from .messages import bot_author
from .model_control import switch_model
from .owner_auth import OwnerSecretMixin
from ..protocol import ROOM_RULE, ChatError, RoomName
from .service import ChatService
from .socket_closes import with_close_frames

AUTH_RESOURCE = "llmchat"
CLOSE_SERVER_FULL = 1013  # try again later
# Message types that change a room or use the model need "write"; the rest need "read".
WRITE_TYPES = frozenset({"Text", "Generate", "Cancel", "Custom", "Binary", "Audio", "RoomSettings", "Delete", "Edit", "Mute"})


def identity_of(handler: Any) -> Identity:
    """The authenticated user; the client never names itself.

    A connection authenticated with the runtime secret is the server owner's kernel or
    CLI: what it posts has author kind "bot" and name "notebook" (docs/protocol.md) —
    except on a socket the kernel relays a widget's frames over (`protocol.RELAY_HEADER`):
    those are the owner's own, as a user ("user", the owner's name).
    """
    user = handler.current_user
    username = getattr(user, "username", None) or str(user)
    if handler._secret_owner() is not None:
        if handler.request.headers.get(protocol.RELAY_HEADER):  # a widget relayed by the owner's kernel
            return Identity(username, getattr(user, "display_name", None) or username, moderator=True)
        return Identity(username, "notebook", owner=True, moderator=True)
    name = getattr(user, "display_name", None) or getattr(user, "name", None) or username
    return Identity(username, name, moderator=is_moderator(user, username, handler.settings))


def is_moderator(user: Any, username: str, settings: dict[str, Any]) -> bool:
    """A JupyterHub admin (the Hub's own identity model says so) or a named moderator."""
    hub_user = getattr(user, "hub_user", None)
    if isinstance(hub_user, dict) and hub_user.get("admin") is True:
        return True
    return username in settings.get("llmchat_moderators", ())


class ChatSocketHandler(OwnerSecretMixin, WebSocketHandler, JupyterHandler):
    """One llmchat.v1 client. Protocol pings come from Tornado, in seconds."""

    auth_resource = AUTH_RESOURCE
    connection: Connection | None = None

    @property
    def service(self) -> ChatService:
        return self.settings["llmchat_service"]

    # Tornado reads these three properties when the upgrade is accepted.
    @property
    def ping_interval(self) -> float | None:
        return self.settings["llmchat_ping_interval"] or None

    @property
    def max_message_size(self) -> int:
        return self.service.limits.message_size_limit

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.settings["llmchat_compression"] else None

    def get_websocket_protocol(self) -> Any:
        return with_close_frames(super().get_websocket_protocol())

    def check_origin(self, origin: str | None = None) -> bool:
        return JupyterHandler.check_origin(self)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return protocol.PROTOCOL if protocol.PROTOCOL in subprotocols else None

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not await self.allowed("read"):
            raise web.HTTPError(403, "not authorized to use llmchat")
        await super().get(*args, **kwargs)

    async def allowed(self, action: str) -> bool:
        """The authorizer's answer for `action` on llmchat. It may be a coroutine (JupyterHub's
        authorizers are): an un-awaited one would be truthy, i.e. "allowed"."""
        return bool(await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)))

    def open(self, *args: Any, **kwargs: Any) -> None:
        user = identity_of(self)
        refusal = self.service.refusal(user)
        if refusal is not None:
            self.close(CLOSE_SERVER_FULL, refusal)
            return
        # Frames are small and come in bursts (an Error then a Pong, Token after Token):
        # without this, Nagle's algorithm holds each next one until the client's delayed ACK.
        self.set_nodelay(True)
        self.connection = self.service.connect(user, self)

    async def on_message(self, message: str | bytes) -> None:
        """Tornado awaits this before reading the socket's next frame: one client's frames
        are handled one at a time, in order, even when the room bus does I/O."""
        connection = self.connection
        if connection is None:
            return
        kind, request_id = protocol.peek(message)
        if isinstance(message, bytes):
            connection.send(protocol.error_frame(400, "binary frames are not accepted; send JSON text", id=request_id))
            return
        if kind in WRITE_TYPES and not await self.allowed("write"):
            connection.send(protocol.error_frame(403, f"not authorized to send {kind}", id=request_id))
            return
        await self.service.receive(connection, message, request_id)

    def on_pong(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.last_seen = time.monotonic()

    def on_close(self) -> None:
        if self.connection is not None:
            self.service.disconnect_soon(self.connection)

    # Transport, for Connection
    def write_frames(self, frames: list[bytes]) -> Awaitable[None]:
        """One loop turn's frames in one write to the socket, as text frames.

        Tornado's `write_message` costs a coroutine and a write per frame; a server's frames
        are unmasked, so without compression they are framed here and written at once."""
        ws = self.ws_connection
        if ws is None or ws.is_closing() or ws.stream is None:
            raise WebSocketClosedError()
        if self.settings["llmchat_compression"]:  # compressed per message by Tornado
            for frame in frames:
                written = self.write_message(frame)  # bytes with binary=False: a text frame
            return written
        return ws.stream.write(b"".join(part for frame in frames for part in (text_frame_header(len(frame)), frame)))

    def close_with(self, code: int, reason: str) -> None:
        try:
            self.close(code, reason)
        except WebSocketClosedError:
            pass


def text_frame_header(size: int) -> bytes:
    """The header of one final, unmasked WebSocket text frame of `size` bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size)
    return struct.pack("!BBQ", 0x81, 127, size)


def answers_chat_errors(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Turn a `ChatError` raised by a REST method into its JSON error reply."""

    @functools.wraps(method)
    async def wrapper(self: ChatAPIHandler, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except ChatError as error:
            self.reply(protocol.Error(error.message, error.code), status=error.code)

    return wrapper


@web.stream_request_body
class ChatAPIHandler(OwnerSecretMixin, APIHandler):
    """Base of the REST handlers: service access, `ChatError` as a JSON error, and a body
    limit enforced before the body is read.

    The body is streamed (`stream_request_body`), so a request whose Content-Length is over
    `message_size_limit` is refused with 413 as soon as its headers are authenticated, and a
    chunked body that grows past the limit is cut off by Tornado; neither is buffered first.
    """

    auth_resource = AUTH_RESOURCE
    _body: bytearray

    @property
    def service(self) -> ChatService:
        return self.settings["llmchat_service"]

    async def prepare(self) -> None:
        self._body = bytearray()
        await super().prepare()  # authentication, XSRF and origin first: strangers learn nothing
        if self._finished:
            return
        limit = self.service.limits.message_size_limit
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            message = f"request body of {declared} bytes is over the {limit}-byte message_size_limit"
            self.reply(protocol.Error(message, 413), status=413)
            return
        connection = self.request.connection
        if hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(limit)

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def reply(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(protocol.encode_json(value))

    def admitted_poster(self) -> Identity:
        """The authenticated user of a POST, once its size and rate pass (413 / 429)."""
        user = identity_of(self)
        self.service.admit_rest_post(user.username, len(self.body))
        return user

    def room_name(self, room: str) -> str:
        try:
            return msgspec.convert(room, RoomName)
        except msgspec.ValidationError:
            raise ChatError(400, f"invalid room name {room!r}: {ROOM_RULE}") from None

    def int_argument(self, name: str, default: int | None, low: int, high: int) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ChatError(400, f"`{name}` must be an integer") from None
        if not low <= value <= high:
            raise ChatError(400, f"`{name}` must be between {low} and {high}")
        return value


class StatsHandler(ChatAPIHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply(self.service.stats())


class RoomsHandler(ChatAPIHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply({"rooms": await self.service.room_list()})


AuthorName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class MessageBody(msgspec.Struct):
    content: str
    author_name: AuthorName | None = None


class GenerateBody(protocol.GenerateData):
    """The socket's `Generate` data, plus the bot name the prompt is posted under."""

    author_name: AuthorName | None = None


class MessagesHandler(ChatAPIHandler):
    @web.authenticated
    @authorized
    @answers_chat_errors
    async def get(self, room: str) -> None:
        name = self.room_name(room)
        since = self.int_argument("since", None, 0, 2**62)
        limit = self.int_argument("limit", 50, 1, 500)
        await self.service.require_room(name)
        # Bounded in bytes like a Join's page: 500 messages of 1 MiB would be one 500 MiB reply.
        page_bytes = self.service.limits.send_queue_bytes // 2
        self.reply(await self.service.history_data(name, since=since, limit=limit, max_bytes=page_bytes))

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def post(self, room: str) -> None:
        name = self.room_name(room)
        user = self.admitted_poster()
        body = protocol.decode_json(self.body, MessageBody)
        if not body.content:
            raise ChatError(400, "`content` must not be empty")
        await self.service.moderation.check_post(user, name)
        message_id, seq = await self.service.broadcast_to_room(
            name, body.content, username=user.username, author_name=body.author_name
        )
        self.reply({"message_id": message_id, "seq": seq}, status=201)

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def delete(self, room: str) -> None:
        """Clear the room's history (needs the authorizer's "write" on llmchat)."""
        name = self.room_name(room)
        self.reply({"deleted": await self.service.clear_room(name)})


class RoomHandler(ChatAPIHandler):
    """One room: its head, epoch, members and own settings; PUT changes the settings."""

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def get(self, room: str) -> None:
        name = self.room_name(room)
        await self.service.require_room(name)
        offset = self.int_argument("offset", 0, 0, 2**31)
        limit = self.int_argument("limit", protocol.MEMBERS_SHOWN, 1, 1000)
        self.reply(await self.service.room_info(name, offset, limit))

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def put(self, room: str) -> None:
        name = self.room_name(room)
        user = self.admitted_poster()
        change = protocol.decode_json(self.body, protocol.RoomSettingsData)
        self.reply(await self.service.settings.change(name, change, user))


class GenerateHandler(ChatAPIHandler):
    @web.authenticated
    @authorized
    @answers_chat_errors
    async def post(self, room: str) -> None:
        name = self.room_name(room)
        user = self.admitted_poster()
        body = protocol.decode_json(self.body, GenerateBody)
        ack = await self.service.generate(
            owner=user,
            request=body,
            room=name,
            connection=None,
            request_id=self.request.headers.get("Idempotency-Key"),
            author=bot_author(user.username, body.author_name),
        )
        self.reply(ack, status=202)


class ExportHandler(ChatAPIHandler):
    """A room's whole transcript for moderators, streamed page by page (server/export.py)."""

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def get(self, room: str) -> None:
        name = self.room_name(room)
        user = identity_of(self)
        if not user.moderator:
            raise ChatError(403, "only moderators can export a room")
        fmt = self.get_argument("format", "md")
        if fmt not in export.FORMATS:
            raise ChatError(400, f"`format` must be one of {', '.join(export.FORMATS)}")
        await self.service.require_room(name)
        await self.service.moderation.exported(user, name, fmt)
        self.set_header("Content-Type", "application/json" if fmt == "json" else "text/markdown; charset=UTF-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}.{fmt}"')
        async for piece in export.transcript(self.service.bus, name, fmt):
            self.write(piece)
            await self.flush()  # one page in memory at a time, however long the room
        self.finish()


class ModelBody(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(max_length=1024)]


class ModelHandler(ChatAPIHandler):
    """The running model: GET says which and how far it is; PUT switches it (moderators only)."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply(self.service.stats()["model"])

    @web.authenticated
    @authorized
    @answers_chat_errors
    async def put(self) -> None:
        user = self.admitted_poster()
        body = protocol.decode_json(self.body, ModelBody)
        self.reply(switch_model(self.service, user, body.model), status=202)


def routes() -> list[tuple[str, type]]:
    """URL patterns, relative to the server's base_url (the ExtensionApp prepends it)."""
    room = r"(?P<room>[^/]+)"
    return [
        ("llmchat/ws", ChatSocketHandler),
        ("llmchat/api/stats", StatsHandler),
        ("llmchat/api/model", ModelHandler),
        ("llmchat/api/rooms", RoomsHandler),
        (f"llmchat/api/rooms/{room}", RoomHandler),
        (f"llmchat/api/rooms/{room}/messages", MessagesHandler),
        (f"llmchat/api/rooms/{room}/generate", GenerateHandler),
        (f"llmchat/api/rooms/{room}/export", ExportHandler),
    ]
