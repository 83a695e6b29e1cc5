"""`Answer` and `AsyncAnswer`: one generation streamed over its own llmchat.v1 WebSocket.

The socket is blocking (websocket-client) and never touches asyncio, so `ask` works in a
kernel cell whose event loop is already running. `AsyncAnswer` runs the same blocking
reads on a worker thread so that `aask` never blocks the caller's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generator, Iterator

import websocket

from .. import protocol
from .discovery import ServerInfo
from .errors import (
    AuthenticationFailed,
    ConnectionLost,
    ExtensionNotEnabled,
    ExtensionNotStarted,
    GenerationFailed,
    LLMChatClientError,
    ResponseTimeout,
    ServerNotFound,
    request_error,
)

def open_socket(server: ServerInfo, timeout: float, *, relay: bool = False) -> websocket.WebSocket:
    """A connected llmchat.v1 socket, its `Welcome` read (kept as `ws.welcome`); clear errors for the usual failures.

    `relay`: the socket carries a widget's frames (the kernel relay): what it posts is the
    user's own, not the kernel's (`protocol.RELAY_HEADER`)."""
    header = [f"Authorization: {server.authorization}"] if server.authorization else []
    if relay:
        header.append(f"{protocol.RELAY_HEADER}: widget")
    options: dict[str, Any] = {"header": header, "subprotocols": [protocol.PROTOCOL], "timeout": timeout}
    if server.sock:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.settimeout(timeout)
        raw.connect(server.sock)
        options["socket"] = raw
    else:
        options["http_no_proxy"] = ["*"]  # a Jupyter server is reached directly, never through a proxy
    try:
        ws = websocket.create_connection(server.ws_url, **options)
    except websocket.WebSocketBadStatusException as error:
        if error.status_code in (401, 403):
            raise AuthenticationFailed(f"{server.ws_url} refused our credentials (HTTP {error.status_code})") from None
        if error.status_code == 404:
            raise ExtensionNotEnabled(f"{server.url} has no llmchat endpoint: is jupyter_llmchat enabled?") from None
        raise request_error(error.status_code, f"WebSocket upgrade refused: {error}") from None
    except (OSError, websocket.WebSocketException) as error:
        raise ServerNotFound(f"cannot reach {server.ws_url}: {error}") from None
    welcome = read_frame(ws)
    if welcome.get("type") == "Error":  # refused before Welcome: the extension did not start
        shutdown_socket(ws)
        data = welcome.get("data") or {}
        code, message = int(data.get("code") or 503), str(data.get("message") or "refused")
        raise ExtensionNotStarted(code, message) if code == 503 else request_error(code, message)
    if welcome.get("type") != "Welcome":
        ws.close()
        raise LLMChatClientError(f"expected Welcome, got {welcome.get('type')!r}")
    ws.welcome = welcome  # the frame itself, for callers that pass it on (the widget's kernel relay)
    return ws


def read_frame(ws: websocket.WebSocket) -> dict[str, Any]:
    """The next JSON frame; `ConnectionLost` when the server closes, `ResponseTimeout` when it is silent."""
    while True:
        try:
            opcode, frame = ws.recv_data_frame()
        except websocket.WebSocketTimeoutException:
            raise ResponseTimeout(f"no frame from the llmchat server for {ws.gettimeout()} s") from None
        except (OSError, websocket.WebSocketConnectionClosedException) as error:
            raise ConnectionLost(None, str(error)) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
            raise ConnectionLost(code, frame.data[2:].decode("utf-8", "replace"))
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(frame.data)


def raise_for_error(frame: dict[str, Any]) -> None:
    """An `Error` frame as the matching `ChatRequestError` subclass."""
    data = frame.get("data") or {}
    raise request_error(int(data.get("code", 500)), str(data.get("message", "error")))


class Answer(Iterator[str]):
    """The model's answer to one prompt, as an iterator of text pieces.

    `ask` returns it once the server has accepted the request (`Ack`), so refusals such
    as 503 (model loading) or 429 (queue full) are raised by `ask` itself. Iterate for the
    pieces; afterwards `finish_reason`, `usage`, `timings` and `truncated` (the prompt was
    cut to fit the model's context) are set. Closing it early
    (`close()`, leaving a `with` block, a kernel interrupt) cancels the generation.
    Displayed as a cell's result, it prints the answer as it streams.
    """

    def __init__(
        self,
        server: ServerInfo,
        room: str | None,
        prompt: str,
        config: dict[str, Any],
        timeout: float,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """`fields`: further Generate data as sent (attachments, new_thread, reply_to)."""
        self.room = room
        self.message_id: str | None = None
        self.queue_position: int | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.truncated = False
        self.parts: list[str] = []
        self._error: str | None = None
        self._ws: websocket.WebSocket | None = None
        self._early: deque[dict[str, Any]] = deque()  # Token frames read before our Ack
        self._ws = open_socket(server, timeout)
        try:
            self._start(prompt, config, fields or {})
        except BaseException:
            self._ws.close()
            raise

    # -- public

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def text(self) -> str:
        """Wait for the rest of the answer; returns all of it."""
        for _ in self:
            pass
        return "".join(self.parts)

    def close(self) -> None:
        """Stop reading; an unfinished answer is cancelled (for everyone in the room)."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        try:
            if not self.done and self.message_id is not None:
                ws.send(protocol.client_frame("Cancel", protocol.CancelData(self.message_id), id=new_id("c")))
        except (OSError, websocket.WebSocketException):
            pass
        finally:
            ws.close()

    def __iter__(self) -> Answer:
        return self

    def __next__(self) -> str:
        while not self.done:
            try:
                frame = self._early.popleft() if self._early else self._read()
                piece = self._on_frame(frame)
            except BaseException:  # errors and KeyboardInterrupt (a kernel interrupt) alike
                self.close()
                raise
            if self.done:
                self._finish()
            if piece:
                return piece
        raise StopIteration

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = self.finish_reason or "streaming"
        where = f" in {self.room!r}" if self.room else ""
        return f"<Answer {self.message_id}{where}: {state}, {len(self.parts)} pieces>"

    def _ipython_display_(self) -> None:
        for piece in self:
            print(piece, end="", flush=True)
        print()

    # -- protocol

    def _read(self) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionLost(None, "answer closed")
        return read_frame(self._ws)

    def _send(self, type_: str, data: Any, request_id: str) -> None:
        assert self._ws is not None
        self._ws.send(protocol.client_frame(type_, data, id=request_id, room=self.room))

    def _start(self, prompt: str, config: dict[str, Any], fields: dict[str, Any]) -> None:
        """Join (room answers need membership), send Generate, wait for its Ack."""
        if self.room is not None:
            join_id = new_id("j")
            self._send("Join", protocol.JoinData(), join_id)
            self._until_reply(join_id, "Joined")
        generate_id = new_id("g")
        data: dict[str, Any] = {"prompt": prompt, **fields}
        if config:
            data["config"] = config
        self._send("Generate", data, generate_id)
        ack = self._until_reply(generate_id, "Ack")["data"]
        self.message_id = ack["message_id"]
        self.queue_position = ack.get("queue_position")
        self._early = deque(f for f in self._early if f["data"].get("message_id") == self.message_id)

    def _until_reply(self, request_id: str, kind: str) -> dict[str, Any]:
        while True:
            frame = self._read()
            if frame.get("type") == "Error" and frame.get("id") in (request_id, None):
                raise_for_error(frame)
            if frame.get("type") == kind and frame.get("id") == request_id:
                return frame
            if frame.get("type") == "Token":
                self._early.append(frame)

    def _on_frame(self, frame: dict[str, Any]) -> str:
        kind = frame.get("type")
        if kind == "Error":
            raise_for_error(frame)
        if kind != "Token":
            return ""
        data = frame.get("data") or {}
        if data.get("message_id") != self.message_id:
            return ""
        text = str(data.get("text") or "")
        if text:
            self.parts.append(text)
        if data.get("is_final"):
            self.finish_reason = data.get("finish_reason") or "stop"
            self.usage = data.get("usage") or {}
            self.timings = data.get("timings") or {}
            self.truncated = bool(data.get("truncated"))
            self._error = data.get("error")
        return text

    def _finish(self) -> None:
        self.close()
        if self.finish_reason == "error":
            raise GenerationFailed(500, self._error or "the generation failed")


class AsyncAnswer:
    """`Answer` for asyncio code: `async for piece in aask(...)`, or `text = await aask(...)`.

    Starts on first use. The blocking socket is read on a worker thread of its own, so the
    caller's event loop (a kernel's, a web app's) keeps running.
    """

    def __init__(self, start: Callable[[], Answer]) -> None:
        self._start = start
        self._answer: Answer | None = None
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmchat-aask")

    @property
    def answer(self) -> Answer | None:
        """The underlying `Answer` once started (message_id, finish_reason, usage...)."""
        return self._answer

    def __aiter__(self) -> AsyncAnswer:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        try:
            if self._answer is None:
                self._answer = await loop.run_in_executor(self._pool, self._start)
            piece = await loop.run_in_executor(self._pool, next, self._answer, None)
        except BaseException:
            await self.aclose()
            raise
        if piece is None:
            await self.aclose()
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        """Cancel an unfinished answer, without waiting for the worker thread."""
        if self._closed:
            return
        self._closed = True
        if self._answer is not None:
            self._pool.submit(self._answer.close)  # runs after a read still in progress
        self._pool.shutdown(wait=False)

    async def text(self) -> str:
        async for _ in self:
            pass
        return "".join(self._answer.parts) if self._answer else ""

    def __await__(self) -> Generator[Any, None, str]:
        return self.text().__await__()


def new_id(prefix: str) -> str:
    """A request id for a frame sent from Python (unique; the prefix says what it asked)."""
    return f"py-{prefix}-{uuid.uuid4().hex[:16]}"


def shutdown_socket(ws: websocket.WebSocket) -> None:
    """Close a socket at once, waking a thread blocked reading it (no close handshake)."""
    raw = getattr(ws, "sock", None)
    try:
        if raw is not None:
            raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        ws.shutdown()
    except Exception:
        pass
