"""`jupyter llmchat export ROOM`: a room's transcript, streamed from the server to a file.

The server streams it page by page (`GET llmchat/api/rooms/{room}/export`, moderators only)
and this writes each chunk as it arrives, so a room of any length costs the shell no more
memory than the server's.
"""

from __future__ import annotations

import json
from typing import BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from . import rest
from .client import ChatClient
from .errors import ResponseTimeout, ServerNotFound, request_error

CHUNK = 64 * 1024


def export(client: ChatClient, room: str, fmt: str, out: BinaryIO) -> int:
    """Write `room`'s transcript in `fmt` ("md" or "json") to `out`; returns the bytes written.

    Raises the client's errors (403 for a user who is not a moderator, 404 unknown room)."""
    parts = urlsplit(client.server.url)
    target = f"{parts.path}llmchat/api/rooms/{quote(room, safe='')}/export?{urlencode({'format': fmt})}"
    headers = {"Authorization": client.server.authorization} if client.server.authorization else {}
    connection = rest.open_connection(client.server, client.timeout)
    written = 0
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            _refused(client, response.status, response.read(), room)
        while chunk := response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
    except TimeoutError:
        raise ResponseTimeout(f"{client.server.url} did not answer within {client.timeout} s") from None
    except OSError as error:
        raise ServerNotFound(f"cannot reach {client.server.url}: {error}") from None
    finally:
        connection.close()
    return written


def _refused(client: ChatClient, status: int, raw: bytes, room: str) -> None:
    """Raise the server's refusal: its own words for a 403 ("only moderators can export a
    room"), which the client would otherwise take for a bad token."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if status == 403 and isinstance(value, dict) and "code" in value and value.get("message"):
        raise request_error(403, str(value["message"]))
    rest.result(client.server, status, raw, f"rooms/{room}/export")
