"""Talk to llmchat rooms from notebook code, without any widget on screen.

    import jupyter_llmchat as chat
    chat.broadcast("general", "Hint: look at exercise 3 again", author_name="Teacher")
    for piece in chat.ask("general", "What is a closure?", max_tokens=64):
        print(piece, end="")

The server is found by `discovery` (the server that started this kernel, normally);
`connect(url=..., token=...)` picks another. Everything here is blocking and thread-free
except `aask`, so it works inside a kernel whose event loop is already running.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
from typing import Any, Callable, TypeVar
from urllib.parse import urlencode, urlsplit

from .discovery import ServerInfo, find_server
from .errors import AuthenticationFailed, ExtensionNotEnabled, ResponseTimeout, ServerNotFound, request_error
from .protocol import ROOM_PATTERN
from .streaming import Answer, AsyncAnswer, new_id, open_socket, raise_for_error, read_frame, shutdown_socket

__all__ = ["ChatClient", "connect", "default_client", "broadcast", "ask", "aask", "cancel", "rooms", "stats", "history"]

ROOM_RE = re.compile(ROOM_PATTERN)
CONFIG_KEYS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "stop"})
T = TypeVar("T")
# The server cannot be used at all (nothing was done): callers may rediscover or fall back.
UNREACHABLE = (ServerNotFound, ExtensionNotEnabled, AuthenticationFailed)
DEFAULT_TIMEOUT = 120.0  # generous: an answer may wait in the queue before its first token


class ChatClient:
    """One server's llmchat API: REST for posts and figures, a WebSocket per `ask`."""

    def __init__(self, server: ServerInfo, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout  # seconds to connect, and at most between two frames of an answer

    def __repr__(self) -> str:
        return f"<ChatClient {self.server.describe()}>"

    # -- rooms

    def broadcast(self, room: str, content: str, author_name: str | None = None) -> dict[str, Any]:
        """Post `content` into `room` as a bot; returns {message_id, seq}.

        Every member sees it with author kind "bot", username = the user this client is
        authenticated as, and name = `author_name` (default "notebook").
        """
        if not isinstance(content, str) or not content:
            raise ValueError("content must be a non-empty string")
        body: dict[str, Any] = {"content": content}
        if author_name is not None:
            body["author_name"] = author_name
        return self._request("POST", f"rooms/{_room(room)}/messages", body=body)

    def ask(self, room: str | None, prompt: str, **config: Any) -> Answer:
        """Ask the shared model; returns an `Answer`, an iterator of the streamed text pieces.

        With a room, the prompt and the answer appear in that room for every member; with
        `room=None`, it is a private completion. `config`: max_tokens, temperature, top_p,
        top_k, min_p, repeat_penalty, seed, stop.
        """
        return Answer(self.server, _room(room) if room is not None else None, _prompt(prompt), generation_config(config), self.timeout)

    def generate(self, room: str, prompt: str, *, author_name: str | None = None, **config: Any) -> dict[str, Any]:
        """Ask the model into `room` without waiting for the answer; returns {message_id, queue_position}.

        REST `POST llmchat/api/rooms/{room}/generate`, with a fresh `Idempotency-Key`. The
        prompt is posted as a bot message (name `author_name`, default "notebook") and the
        answer streams to every member of the room; nothing streams back here (use `ask`
        for that). Refusals (503 model loading, 429 queue full) are raised at once.
        """
        body: dict[str, Any] = {"prompt": _prompt(prompt)}
        settings = generation_config(config)
        if settings:
            body["config"] = settings
        if author_name is not None:
            body["author_name"] = author_name
        key = new_id("g")
        return self._request("POST", f"rooms/{_room(room)}/generate", body=body, headers={"Idempotency-Key": key})

    def cancel(self, message_id: str) -> bool:
        """Stop an answer (the `message_id` of `generate`'s result or of an `Answer`).

        True when the server accepted it (the answer's last token then says
        `finish_reason: "cancelled"`), False when the answer had already finished. Only the
        user who asked may cancel (`ChatRequestError` 403); an unknown id gives 404.
        """
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("message_id must be a non-empty string")
        ws = open_socket(self.server, min(self.timeout, 30.0))
        try:
            cancel_id, ping_id = new_id("c"), new_id("p")
            ws.send(json.dumps({"type": "Cancel", "id": cancel_id, "data": {"message_id": message_id}}))
            # An accepted Cancel has no reply of its own: the Pong that follows it says "done".
            ws.send(json.dumps({"type": "Ping", "id": ping_id, "data": {}}))
            while True:
                frame = read_frame(ws)
                if frame.get("type") == "Error" and frame.get("id") == cancel_id:
                    if (frame.get("data") or {}).get("code") == 409:
                        return False  # already finished
                    raise_for_error(frame)
                if frame.get("type") == "Pong" and frame.get("id") == ping_id:
                    return True
        finally:
            shutdown_socket(ws)

    def aask(self, room: str | None, prompt: str, **config: Any) -> AsyncAnswer:
        """`ask` for async code: `async for piece in client.aask(...)` or `await client.aask(...)`."""
        room = _room(room) if room is not None else None
        prompt, config = _prompt(prompt), generation_config(config)
        return AsyncAnswer(lambda: Answer(self.server, room, prompt, config, self.timeout))

    def rooms(self) -> list[dict[str, Any]]:
        """Every room with its member count and head seq: [{room, members, head_seq}]."""
        return self._request("GET", "rooms")["rooms"]

    def history(self, room: str, since: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The room's stored messages (Text events, oldest first), after `since` if given."""
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        return self._request("GET", f"rooms/{_room(room)}/messages", params=params)["messages"]

    def stats(self) -> dict[str, Any]:
        """The server's live figures (SPEC section 6)."""
        return self._request("GET", "stats")

    # -- transport

    def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        parts = urlsplit(self.server.url)
        target = f"{parts.path}llmchat/api/{path}" + (f"?{urlencode(params)}" if params else "")
        headers = {"Accept": "application/json", **(headers or {})}
        if self.server.authorization:
            headers["Authorization"] = self.server.authorization
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection(parts.scheme, parts.netloc)
        try:
            connection.request(method, target, body=payload, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except TimeoutError:
            raise ResponseTimeout(f"{self.server.url} did not answer within {self.timeout} s") from None
        except OSError as error:
            raise ServerNotFound(f"cannot reach {self.server.url}: {error}") from None
        finally:
            connection.close()
        return self._result(status, raw, path)

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if self.server.sock:
            return _UnixHTTPConnection(self.server.sock, self.timeout)
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=ssl.create_default_context())
        return http.client.HTTPConnection(netloc, timeout=self.timeout)

    def _result(self, status: int, raw: bytes, path: str) -> Any:
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            value = None
        if 200 <= status < 300:
            return value
        chat_error = isinstance(value, dict) and "code" in value and "message" in value
        if status in (401, 403) or 300 <= status < 400:
            how = "the runtime secret" if self.server.secret else "the token" if self.server.token else "no credentials"
            raise AuthenticationFailed(
                f"{self.server.url} refused the request (HTTP {status}, sent {how}); "
                "pass token= (or LLMCHAT_TOKEN) with a valid Jupyter token"
            )
        if status == 404 and not chat_error:
            raise ExtensionNotEnabled(
                f"{self.server.url} answered 404 for llmchat/api/{path}: the jupyter_llmchat extension is not "
                "enabled on that server (jupyter server extension enable jupyter_llmchat), or the URL lacks "
                "the server's base_url"
            )
        message = value["message"] if isinstance(value, dict) and value.get("message") else f"HTTP {status}"
        raise request_error(status, str(message))


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the Unix socket of a server started with `--sock`."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def connect(url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> ChatClient:
    """A client for the server found by `discovery.find_server` (or the one given)."""
    return ChatClient(find_server(url, token), timeout=timeout)


# -- module-level API over one cached client

_default: ChatClient | None = None
_default_lock = threading.Lock()


def default_client() -> ChatClient:
    """The client the module-level functions use, discovered once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = connect()
        return _default


def with_default_client(call: Callable[[ChatClient], T]) -> T:
    """Run `call` on the default client.

    A cached client whose server went away or restarted (new token or secret) fails with
    one of the "unreachable" errors: it is dropped and discovery runs once more, so a
    kernel outlives a server restart. (Those errors mean nothing was done, so a retry is safe.)
    """
    global _default
    cached = _default is not None
    client = default_client()
    try:
        return call(client)
    except UNREACHABLE:
        with _default_lock:
            if _default is client:
                _default = None
        if not cached:
            raise
    return call(default_client())


def broadcast(room: str, content: str, author_name: str | None = None) -> dict[str, Any]:
    """`ChatClient.broadcast` on the server that started this kernel."""
    return with_default_client(lambda client: client.broadcast(room, content, author_name))


def ask(room: str | None, prompt: str, **config: Any) -> Answer:
    """`ChatClient.ask` on the server that started this kernel."""
    return with_default_client(lambda client: client.ask(room, prompt, **config))


def aask(room: str | None, prompt: str, **config: Any) -> AsyncAnswer:
    """`ChatClient.aask` on the server that started this kernel."""
    return with_default_client(lambda client: client.aask(room, prompt, **config))


def cancel(message_id: str) -> bool:
    """`ChatClient.cancel` on the server that started this kernel."""
    return with_default_client(lambda client: client.cancel(message_id))


def rooms() -> list[dict[str, Any]]:
    return with_default_client(lambda client: client.rooms())


def stats() -> dict[str, Any]:
    return with_default_client(lambda client: client.stats())


def history(room: str, since: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    return with_default_client(lambda client: client.history(room, since, limit))


# -- argument checks (clear errors before any network)


def _room(room: str) -> str:
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise ValueError(f"invalid room name {room!r}: 1-128 of A-Z a-z 0-9 _ . : -, starting with a letter or digit")
    return room  # the pattern leaves nothing to escape in a URL path


def _prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    return prompt


def generation_config(config: dict[str, Any]) -> dict[str, Any]:
    """Generation settings as sent: unknown keys refused (TypeError), unset (None) ones dropped."""
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}")
    return {key: value for key, value in config.items() if value is not None}

