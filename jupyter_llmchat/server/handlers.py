"""The llmchat.v1 WebSocket handler, and who its user is (`identity_of`, also the REST
handlers': `rest_handlers.py`); the URL table is `routes.py` (docs/protocol.md).

Authentication, authorization and origin checks are Jupyter Server's own: the handlers
derive from `JupyterHandler`, the upgrade is `@ws_authenticated`, and every action is
checked with the server's `authorizer` on the resource `llmchat`. The one addition is
`OwnerSecretMixin`: the server's own kernels and CLI may authenticate with the runtime
secret instead of a token (see owner_auth.py).
"""

from __future__ import annotations

import struct
import time
from typing import Any, Awaitable

from tornado.websocket import WebSocketClosedError

from .. import protocol
from .connection import Connection, Identity
from .service import ChatService
from .socket_base import LLMChatSocket
from .socket_closes import with_close_frames

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


class ChatSocketHandler(LLMChatSocket):
    """One llmchat.v1 client. Protocol pings come from Tornado, in seconds."""

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
