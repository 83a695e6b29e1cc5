"""The room bus: the one seam between the chat service and where rooms live.

A bus assigns each room's `seq`, keeps its replay window and its stored history, fans every
room event out to this server's members, and knows who is present. The service talks to
rooms only through this interface, so a bus shared by many servers (Redis) is a second
implementation, not a branch in the service. The first is `memory_bus.MemoryRoomBus`:
rooms in this process, history in SQLite; the second is `redis_bus.RedisRoomBus`: rooms
shared by every server naming the same Redis.

The seam is async wherever a shared bus needs I/O (docs/architecture.md): the memory bus
implements those methods without ever suspending, so on it a call completes in the same
loop step, as before. `is_member`, `live_rooms` and `local_member_count` are about this
server's own connections and stay synchronous.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, AsyncContextManager, Iterable

import msgspec

from ..protocol import Text
from ..server.connection import Connection, Identity

Message = tuple[int, dict[str, Any]]  # (seq, Text data) of a stored message
StoredText = tuple[int, Text]  # (seq, the message) of one stored message, typed


class _NoHold:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_HOLD = _NoHold()


@dataclass(frozen=True)
class JoinedRoom:
    """What a Join needs from the bus, read as the member is added (one round trip on Redis)."""

    first: bool  # its user was not present before: a `Presence` is due
    head_seq: int
    epoch: str | None
    count: int  # distinct users present, the new one included
    members: list[Identity]  # the first `MEMBERS_SHOWN` of them


class RoomBus(abc.ABC):
    """Rooms, their sequence numbers, replay windows, history and members."""

    # True when other servers share these rooms: state kept beside them (room settings,
    # mutes) must be read from the bus each time, not cached by one server.
    shared: bool = False

    # -- membership and fan-out (this server's connections) --------------------------------

    @abc.abstractmethod
    async def join(self, room: str, connection: Connection) -> JoinedRoom:
        """Add a member (creating the room); the room's head, epoch and members then."""

    @abc.abstractmethod
    async def leave(self, room: str, connection: Connection) -> bool:
        """Remove a member; True when that was its user's last connection in the room."""

    @abc.abstractmethod
    def is_member(self, room: str, connection: Connection) -> bool: ...

    @abc.abstractmethod
    async def members(self, room: str, offset: int = 0, limit: int | None = None) -> list[Identity]:
        """Distinct users present (one user with two tabs is one member), a page of them."""

    @abc.abstractmethod
    async def member_count(self, room: str) -> int:
        """How many distinct users are present (on every server sharing the bus)."""

    @abc.abstractmethod
    def local_member_count(self, room: str) -> int:
        """How many distinct users are present through this server's connections (`Stats`)."""

    @abc.abstractmethod
    async def emit(self, room: str, type_: str, data: msgspec.Struct) -> int:
        """Number a room event, keep it for replay, send it to every member; returns its seq."""

    async def post(self, room: str, text: Text) -> int:
        """Emit a `Text` and store it at its seq as one step; returns the seq. A shared bus
        does both in one atomic call, so a message its members saw is never missing from
        the history (a call that timed out may still have done both, never one)."""
        seq = await self.emit(room, "Text", text)
        await self.store_message(room, seq, text, seq)
        return seq

    async def emit_many(self, room: str, events: list[tuple[str, msgspec.Struct]]) -> list[int]:
        """Emit several events of one room in order (one decode step's tokens): a shared bus
        makes it one round trip. Returns their seqs."""
        return [await self.emit(room, type_, data) for type_, data in events]

    def holding(self, room: str) -> AsyncContextManager[None]:
        """While held, no new event of `room` reaches this server's members: a Join reads the
        head, replays what was missed and queues its replies before live events go on.
        A bus that fans out in the emitting step (the memory bus) needs no hold."""
        return _NO_HOLD

    @abc.abstractmethod
    async def deliver(self, room: str, frame: bytes) -> None:
        """Send a frame that is not a room event (e.g. `Reset`) to this server's members."""

    # -- sequence, replay and epochs --------------------------------------------------------

    @abc.abstractmethod
    async def exists(self, room: str) -> bool:
        """True for a room that is live or has ever been used."""

    @abc.abstractmethod
    async def head(self, room: str) -> tuple[int, str | None]:
        """The room's head seq and epoch (epoch None: not live in this process)."""

    @abc.abstractmethod
    async def catch_up(self, room: str, since: int, epoch: str | None) -> Iterable[bytes] | None:
        """Every event after `since`, as first sent; None when they cannot all be replayed."""

    @abc.abstractmethod
    async def running_answer_frames(self, room: str) -> Iterable[bytes]:
        """The tokens so far of answers still streaming, for a member joining mid-answer."""

    @abc.abstractmethod
    async def answer_started(self, room: str, message_id: str, stub: Text) -> None:
        """An answer began streaming into `room`. `stub` is the `Text` it will be stored as
        (content still empty): a shared bus keeps it, so that another server can store what
        the answer said if this server dies mid-answer."""

    @abc.abstractmethod
    async def answer_ended(self, room: str, message_id: str) -> None: ...

    @abc.abstractmethod
    async def running_answers(self, room: str) -> list[str]: ...

    # -- history ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def store_message(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        """Keep a finished `Text` message (stored at `seq`; the room's head is `head_seq`).

        It comes back from `messages` and `message` as the JSON dict it was stored as.
        """

    @abc.abstractmethod
    async def store_in_progress(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        """Keep an answer as far as it got (marked interrupted), about once a second while it
        streams: what the history shows if this server dies before it ends. Readers never
        see it while the answer streams; `store_message` of the finished answer replaces it.
        """

    @abc.abstractmethod
    async def save_head(self, room: str, seq: int) -> None:
        """Make `seq` durable as the room's head (events that leave no message, e.g. an empty answer)."""

    @abc.abstractmethod
    async def messages(
        self, room: str, *, before_seq: int | None = None, since: int | None = None, limit: int = 50
    ) -> list[Message]:
        """Stored messages in a seq range, oldest first: the newest `limit` of them, or with
        `since` alone the oldest `limit` after it (paging forward)."""

    @abc.abstractmethod
    async def message(self, room: str, *, message_id: str | None = None, seq: int | None = None) -> StoredText | None:
        """One stored message by id or seq, typed (a `Text`); None when there is none."""

    @abc.abstractmethod
    async def exchanges(
        self, room: str, username: str, *, before_seq: int, limit: int
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """A user's latest (question, answer) pairs in a room, newest first."""

    @abc.abstractmethod
    async def forget_message(self, room: str, message_id: str, deleted_seq: int) -> None:
        """A message was deleted (its `Deleted` event is `deleted_seq`): from now on replay
        gives its `Text` as a tombstone and its answer's `Token`s without their text. The
        stored row is replaced by the caller (`store_message` of the tombstone)."""

    @abc.abstractmethod
    async def clear(self, room: str) -> int:
        """Delete a room's history; nothing before now can be replayed (new epoch)."""

    @abc.abstractmethod
    async def delete_older_than(self, created_before: str) -> int: ...

    @abc.abstractmethod
    async def settings(self, room: str) -> dict[str, Any]:
        """A room's own stored settings ({} when it has none)."""

    @abc.abstractmethod
    async def save_settings(self, room: str, settings: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def room_list(self) -> list[dict[str, Any]]:
        """Every room: [{room, members, head_seq}]."""

    @abc.abstractmethod
    def live_rooms(self) -> list[str]:
        """Rooms with members or recent activity on this server."""

    # -- lifetime ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def sweep(self, now: float) -> None:
        """Forget rooms that stayed empty and quiet (run every second)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
