"""Closes a client can read: a close frame with a code and a reason, never a dropped TCP
connection (which the client sees as 1006, no reason given).

Tornado's WebSocket protocol drops the connection in two cases a client can cause:

- a text frame that is not UTF-8: closed here with 1007 (RFC 6455, 8.1) instead;
- a frame over the size limit: Tornado sends its 1009 close frame, then closes the socket
  with the rest of the frame unread, which resets the connection (RST) and the client loses
  the close frame. Here the socket stops writing and discards what the client is still
  sending (at most `DISCARD_BYTES`, for at most `DISCARD_SECONDS`) before it is closed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13

CLOSE_NOT_UTF8 = 1007
CLOSE_TOO_BIG = 1009  # Tornado's own close for a frame over max_message_size
DISCARD_BYTES = 64 * 1024 * 1024
DISCARD_SECONDS = 2.0

_discarding: set[asyncio.Future[None]] = set()  # the loop holds tasks weakly


def with_close_frames(protocol: Any) -> Any:
    """Tornado's protocol object for one socket, given the two closes below (others as is)."""
    if type(protocol) is WebSocketProtocol13:
        protocol.__class__ = ClosesWithFrames
    return protocol


class ClosesWithFrames(WebSocketProtocol13):
    _too_big = False
    _discarding = False

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == 0x1 and not self._frame_compressed:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.close(CLOSE_NOT_UTF8, "text frames must be UTF-8")
                return None
        return super()._handle_message(opcode, data)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == CLOSE_TOO_BIG and not self.server_terminated:
            self._too_big = True
        super().close(code, reason)

    def _abort(self) -> None:
        if self._discarding:  # the handler's own close: the discarding task closes the socket
            return
        if not self._too_big or self.stream is None or self.stream.closed():
            super()._abort()
            return
        self._discarding = True
        self.client_terminated = self.server_terminated = True  # ends the frame loop
        task = asyncio.ensure_future(self._discard_then_abort())
        _discarding.add(task)
        task.add_done_callback(_discarding.discard)

    async def _discard_then_abort(self) -> None:
        stream, left = self.stream, DISCARD_BYTES
        try:
            await stream.write(b"")  # the close frame is sent
            stream.socket.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(DISCARD_SECONDS):
                while left > 0:
                    left -= len(await stream.read_bytes(64 * 1024, partial=True))
        except (StreamClosedError, OSError, TimeoutError):
            pass
        finally:
            self._discarding = False
            super()._abort()
