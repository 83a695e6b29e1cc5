"""One client connection: who it is, which rooms it is in, and its bounded send queue.

Frames are queued and written by one writer task per connection, so a client that stops
reading costs at most `max_queue_bytes` of memory and never delays its room: when its
queue overflows it is disconnected (close 1008) and can resume with `Join {since}`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from ..protocol import Author, AuthorKind, Person
from .stats import TrafficCounters

CLOSE_TOO_SLOW = 1008  # policy violation: the client does not read its frames


@dataclass(frozen=True)
class Identity:
    """A user as Jupyter Server authenticated them; never taken from the client.

    `kind` is the author kind of what they post: "user" for people, "bot" for kernels
    and scripts (connections authenticated with the server's runtime secret). `owner`:
    authenticated with the runtime secret, i.e. the server owner's own kernel or CLI.
    """

    username: str
    name: str
    kind: AuthorKind = "user"
    owner: bool = False

    def person(self) -> Person:
        return Person(self.username, self.name)

    def author(self) -> Author:
        return Author(self.username, self.name, self.kind)


class Transport(Protocol):
    """What a connection needs from its socket (the Tornado handler implements it)."""

    def write_frame(self, frame: bytes) -> Awaitable[None]: ...

    def close_with(self, code: int, reason: str) -> None: ...


class Connection:
    """A client of the chat service; `send` never blocks and never grows without bound."""

    def __init__(
        self,
        client_id: str,
        user: Identity,
        transport: Transport,
        counters: TrafficCounters,
        max_queue_bytes: int,
        on_close: Callable[[Connection], None],
    ) -> None:
        self.client_id = client_id
        self.user = user
        self.rooms: set[str] = set()
        self.last_seen = time.monotonic()
        self.closed = False
        self._transport = transport
        self._counters = counters
        self._max_queue_bytes = max_queue_bytes
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._on_close = on_close

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame for this client."""
        if self.closed:
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if self._queued_bytes > self._max_queue_bytes:
            self.close(CLOSE_TOO_SLOW, "send queue full: client is not reading")
            return
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self.closed:
                frame = self._queue.popleft()
                self._queued_bytes -= len(frame)
                await self._transport.write_frame(frame)
                self._counters.messages_sent += 1
                self._counters.bytes_sent += len(frame)
        except Exception:  # the socket closed under us: the handler's on_close cleans up
            self.closed = True
        finally:
            self._writer = None

    def close(self, code: int, reason: str) -> None:
        """Close the socket and leave the service without waiting for the client's close
        handshake; queued frames are dropped (the client can resume with since).

        Leaving is deferred to the next loop iteration: a close can happen while a room
        is sending one event to its members, and that event must reach all of them
        before the `Presence` that says this member left.
        """
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._transport.close_with(code, reason)
        asyncio.get_running_loop().call_soon(self._on_close, self)
