"""One client connection: who it is, which rooms it is in, and its bounded send queue.

Frames sent to a connection during one turn of the event loop are written together, in
one write to its socket at the end of the turn: a room event reaching 1,000 members costs
1,000 appends and 1,000 writes, not 1,000 coroutines. What the socket has not flushed yet
counts against `max_queue_bytes`, so a client that stops reading costs at most that much
memory and never delays its room: past it, it is disconnected (close 1008) and can
resume with `Join {since}`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Awaitable, Callable, Protocol

from ..protocol import Author, AuthorKind, Person
from .stats import TrafficCounters

CLOSE_TOO_SLOW = 1008  # policy violation: the client does not read its frames


@dataclass(frozen=True)
class Identity:
    """A user as Jupyter Server authenticated them; never taken from the client.

    `owner`: authenticated with the server's runtime secret (`handlers.identity_of`), i.e.
    the server owner's own kernel or CLI. It is the one flag the owner's reserves go by
    (`owner_reserved_connections`, `owner_queue_reserve`) and it makes what they post a
    bot's; what a request says (an `author_name`) never makes anyone the owner.

    `moderator`: may run rooms and switch the model (docs/security.md): the owner, a
    JupyterHub admin (as the Hub's identity says) or a user named in `LLMChat.moderators`.
    Never Jupyter's authorizer alone: its default allows everything.
    """

    username: str
    name: str
    owner: bool = False
    moderator: bool = False

    @property
    def kind(self) -> AuthorKind:
        """The author kind of what they post: "bot" for the owner's kernels, else "user"."""
        return "bot" if self.owner else "user"

    def person(self) -> Person:
        return Person(self.username, self.name)

    def author(self) -> Author:
        return Author(self.username, self.name, self.kind)


class Transport(Protocol):
    """What a connection needs from its socket (the Tornado handler implements it)."""

    def write_frames(self, frames: list[bytes]) -> Awaitable[None]:
        """Write these encoded frames in order; done once the socket has taken them all."""

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
        self._queue: list[bytes] = []  # sent this loop turn, written at its end
        self._queued_bytes = 0
        self._unflushed = 0  # bytes handed to the socket that it has not sent yet
        self._flush_due = False
        self._on_close = on_close

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame for this client; it is written at the end of this loop turn."""
        if self.closed:
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if self._queued_bytes + self._unflushed > self._max_queue_bytes:
            self.close(CLOSE_TOO_SLOW, "send queue full: client is not reading")
            return
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.closed or not self._queue:
            return
        frames, size = self._queue, self._queued_bytes
        self._queue, self._queued_bytes = [], 0
        try:
            written = asyncio.ensure_future(self._transport.write_frames(frames))
        except Exception:  # the socket closed under us: the handler's on_close cleans up
            self.closed = True
            return
        self._counters.messages_sent += len(frames)
        self._counters.bytes_sent += size
        self._unflushed += size
        written.add_done_callback(partial(self._flushed, size))

    def _flushed(self, size: int, written: asyncio.Future[None]) -> None:
        self._unflushed -= size
        if not written.cancelled() and written.exception() is not None:
            self.closed = True

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
        self._queue, self._queued_bytes = [], 0
        self._transport.close_with(code, reason)
        asyncio.get_running_loop().call_soon(self._on_close, self)
