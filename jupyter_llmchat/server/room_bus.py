"""The room bus: the one seam between the chat service and where rooms live.

A bus assigns each room's `seq`, keeps its replay window and its stored history, fans every
room event out to this server's members, and knows who is present. The service talks to
rooms only through this interface, so a bus shared by many servers (Redis) is a second
implementation, not a branch in the service. The first is `memory_bus.MemoryRoomBus`:
rooms in this process, history in SQLite.
"""

from __future__ import annotations

import abc
from typing import Any, Iterable

import msgspec

from ..protocol import Text
from .connection import Connection, Identity

Message = tuple[int, dict[str, Any]]  # (seq, Text data) of a stored message


class RoomBus(abc.ABC):
    """Rooms, their sequence numbers, replay windows, history and members."""

    # -- membership and fan-out (this server's connections) --------------------------------

    @abc.abstractmethod
    def join(self, room: str, connection: Connection) -> bool:
        """Add a member (creating the room); True when its user was not present before."""

    @abc.abstractmethod
    def leave(self, room: str, connection: Connection) -> bool:
        """Remove a member; True when that was its user's last connection in the room."""

    @abc.abstractmethod
    def is_member(self, room: str, connection: Connection) -> bool: ...

    @abc.abstractmethod
    def members(self, room: str, offset: int = 0, limit: int | None = None) -> list[Identity]:
        """Distinct users present (one user with two tabs is one member), a page of them."""

    @abc.abstractmethod
    def member_count(self, room: str) -> int:
        """How many distinct users are present."""

    @abc.abstractmethod
    def emit(self, room: str, type_: str, data: msgspec.Struct) -> int:
        """Number a room event, keep it for replay, send it to every member; returns its seq."""

    @abc.abstractmethod
    def deliver(self, room: str, frame: bytes) -> None:
        """Send a frame that is not a room event (e.g. `Reset`) to this server's members."""

    # -- sequence, replay and epochs --------------------------------------------------------

    @abc.abstractmethod
    def exists(self, room: str) -> bool:
        """True for a room that is live or has ever been used."""

    @abc.abstractmethod
    def head(self, room: str) -> tuple[int, str | None]:
        """The room's head seq and epoch (epoch None: not live in this process)."""

    @abc.abstractmethod
    def catch_up(self, room: str, since: int, epoch: str | None) -> Iterable[bytes] | None:
        """Every event after `since`, as first sent; None when they cannot all be replayed."""

    @abc.abstractmethod
    def running_answer_frames(self, room: str) -> Iterable[bytes]:
        """The tokens so far of answers still streaming, for a member joining mid-answer."""

    @abc.abstractmethod
    def answer_started(self, room: str, message_id: str) -> None: ...

    @abc.abstractmethod
    def answer_ended(self, room: str, message_id: str) -> None: ...

    @abc.abstractmethod
    def running_answers(self, room: str) -> list[str]: ...

    # -- history ----------------------------------------------------------------------------

    @abc.abstractmethod
    def store_message(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        """Keep a `Text` message (stored at `seq`; the room's head is `head_seq`).

        It comes back from `messages` and `message` as the JSON dict it was stored as. An
        answer is stored again under its message id as it streams (what a crash keeps) and
        when it ends; readers see it only once it has ended (`answer_ended`).
        """

    @abc.abstractmethod
    def save_head(self, room: str, seq: int) -> None:
        """Make `seq` durable as the room's head (events that leave no message, e.g. an empty answer)."""

    @abc.abstractmethod
    def messages(
        self, room: str, *, before_seq: int | None = None, since: int | None = None, limit: int = 50
    ) -> list[Message]:
        """Stored messages in a seq range, oldest first: the newest `limit` of them, or with
        `since` alone the oldest `limit` after it (paging forward)."""

    @abc.abstractmethod
    def message(self, room: str, *, message_id: str | None = None, seq: int | None = None) -> Message | None: ...

    @abc.abstractmethod
    def exchanges(
        self, room: str, username: str, *, before_seq: int, limit: int
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """A user's latest (question, answer) pairs in a room, newest first."""

    @abc.abstractmethod
    def clear(self, room: str) -> int:
        """Delete a room's history; nothing before now can be replayed (new epoch)."""

    @abc.abstractmethod
    def delete_older_than(self, created_before: str) -> int: ...

    @abc.abstractmethod
    def settings(self, room: str) -> dict[str, Any]:
        """A room's own stored settings ({} when it has none)."""

    @abc.abstractmethod
    def save_settings(self, room: str, settings: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def room_list(self) -> list[dict[str, Any]]:
        """Every room: [{room, members, head_seq}]."""

    @abc.abstractmethod
    def live_rooms(self) -> list[str]:
        """Rooms with members or recent activity on this server."""

    # -- lifetime ---------------------------------------------------------------------------

    @abc.abstractmethod
    def sweep(self, now: float) -> None:
        """Forget rooms that stayed empty and quiet (run every second)."""

    @abc.abstractmethod
    def close(self) -> None: ...
