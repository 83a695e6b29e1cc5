"""The kernel's HTTP transport: one `llmchat/api/` request to a server, and its answer typed.

`ChatClient` asks through `request`; `export` streams a long answer over `open_connection` and
reads a refusal with `result`. HTTP errors become the client's own errors (`errors.py`): a
refused token, a server without the extension and a chat error read apart, so a caller can
tell "rediscover" from "you asked something wrong".
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

from .discovery import ServerInfo
from .errors import AuthenticationFailed, ExtensionNotEnabled, ExtensionNotStarted, ResponseTimeout, ServerNotFound, request_error

__all__ = ["request", "open_connection", "result"]


def request(
    server: ServerInfo,
    timeout: float,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """`method` on `llmchat/api/{path}` with a JSON `body`; the JSON answer, or a client error."""
    target = f"{urlsplit(server.url).path}llmchat/api/{path}" + (f"?{urlencode(params)}" if params else "")
    headers = {"Accept": "application/json", **(headers or {})}
    if server.authorization:
        headers["Authorization"] = server.authorization
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = open_connection(server, timeout)
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except TimeoutError:
        raise ResponseTimeout(f"{server.url} did not answer within {timeout} s") from None
    except OSError as error:
        raise ServerNotFound(f"cannot reach {server.url}: {error}") from None
    finally:
        connection.close()
    return result(server, status, raw, path)


def open_connection(server: ServerInfo, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `server` (over its Unix socket if it has one), not yet connected."""
    if server.sock:
        return _UnixHTTPConnection(server.sock, timeout)
    parts = urlsplit(server.url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(parts.netloc, timeout=timeout)


def result(server: ServerInfo, status: int, raw: bytes, path: str) -> Any:
    """The JSON of a 2xx answer to `llmchat/api/{path}`; otherwise the client error it means."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        value = None
    if 200 <= status < 300:
        return value
    chat_error = isinstance(value, dict) and "code" in value and "message" in value
    if (status in (401, 403) and not chat_error) or 300 <= status < 400:
        how = "the runtime secret" if server.secret else "the token" if server.token else "no credentials"
        raise AuthenticationFailed(
            f"{server.url} refused the request (HTTP {status}, sent {how}); "
            "pass token= (or LLMCHAT_TOKEN) with a valid Jupyter token"
        )
    if status == 404 and not chat_error:
        raise ExtensionNotEnabled(
            f"{server.url} answered 404 for llmchat/api/{path}: the jupyter_llmchat extension is not "
            "enabled on that server (jupyter server extension enable jupyter_llmchat), or the URL lacks "
            "the server's base_url"
        )
    if status == 503 and isinstance(value, dict) and isinstance(value.get("error"), str):
        raise ExtensionNotStarted(status, value["error"])  # a bad setting stopped the extension
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
