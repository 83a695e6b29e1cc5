"""The REST API's Tornado handlers (docs/protocol.md): each one authenticates, authorizes
on the resource `llmchat`, bounds its body, and calls the chat service; a `ChatError`
becomes a JSON error reply. The WebSocket handler is `handlers.py`.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Awaitable, Callable

import msgspec
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .. import protocol
from . import export
from .connection import Identity
from .handlers import identity_of
from .socket_base import AUTH_RESOURCE
from .messages import bot_author
from .model_control import switch_model
from .owner_auth import OwnerSecretMixin
from ..protocol import ROOM_RULE, ChatError, RoomName
from .service import ChatService


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
