"""Rooms: members, the per-room `seq`, and the replay buffer that makes resuming exact.

Every room event is encoded once, numbered, kept in the replay buffer, and written to
each member's queue in one synchronous step, so all members see the same order.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import Iterable

import msgspec

from .. import protocol
from .connection import Connection, Identity


def new_epoch() -> str:
    return secrets.token_hex(4)


class Room:
    """A named channel; `head_seq` is the seq of its last event."""

    def __init__(self, name: str, head_seq: int, replay_events: int) -> None:
        self.name = name
        self.epoch = new_epoch()  # new per process: older events cannot be replayed
        self.head_seq = head_seq
        self.members: dict[str, Connection] = {}
        # (seq, message_id of the answer for Token events else None, encoded frame)
        self.replay: deque[tuple[int, str | None, bytes]] = deque(maxlen=max(replay_events, 0))
        self.active_generations: set[str] = set()
        self.empty_since: float | None = time.monotonic()

    def emit(self, type_: str, data: msgspec.Struct) -> int:
        """Number, remember and send one room event; returns its seq."""
        self.head_seq += 1
        frame = protocol.encode(type_, data, room=self.name, seq=self.head_seq)
        if self.replay.maxlen:
            answer = data.message_id if isinstance(data, protocol.Token) else None
            self.replay.append((self.head_seq, answer, frame))
        for member in list(self.members.values()):
            member.send(frame)
        return self.head_seq

    def forget_events(self) -> None:
        """After the room's history was cleared: nothing before now can be replayed."""
        self.epoch = new_epoch()
        self.replay.clear()

    def can_resume(self, since: int, epoch: str | None) -> bool:
        """True when every event after `since` is still in the replay buffer."""
        if epoch is not None and epoch != self.epoch:
            return False
        if since > self.head_seq:
            return False
        if since == self.head_seq:
            return True
        return bool(self.replay) and self.replay[0][0] <= since + 1

    def events_after(self, since: int) -> Iterable[bytes]:
        return (frame for seq, _, frame in self.replay if seq > since)

    def running_answer_tokens(self) -> Iterable[bytes]:
        """Tokens so far of answers still streaming, for a member who joins mid-answer."""
        running = self.active_generations
        return (frame for _, answer, frame in self.replay if answer in running)

    def users(self) -> list[Identity]:
        """Distinct users present (one user with two tabs is one member)."""
        seen: dict[str, Identity] = {}
        for member in self.members.values():
            seen.setdefault(member.user.username, member.user)
        return list(seen.values())

    def has_user(self, username: str, *, besides: str | None = None) -> bool:
        return any(
            member.user.username == username and client_id != besides
            for client_id, member in self.members.items()
        )

    def add(self, connection: Connection) -> bool:
        """Add a member; True when its user was not present before (a Presence is due)."""
        first = not self.has_user(connection.user.username, besides=connection.client_id)
        self.members[connection.client_id] = connection
        connection.rooms.add(self.name)
        self.empty_since = None
        return first

    def remove(self, connection: Connection) -> bool:
        """Remove a member; True when that was its user's last connection here."""
        if self.members.pop(connection.client_id, None) is None:
            return False
        connection.rooms.discard(self.name)
        if not self.members:
            self.empty_since = time.monotonic()
        return not self.has_user(connection.user.username)

    def answer_ended(self, message_id: str) -> None:
        """An answer finished: an empty room with no answer left starts its idle clock."""
        self.active_generations.discard(message_id)
        if not self.members and not self.active_generations:
            self.empty_since = time.monotonic()

    def idle_for(self, now: float) -> float:
        """Seconds this room has had neither members nor running generations."""
        if self.members or self.active_generations or self.empty_since is None:
            return 0.0
        return now - self.empty_since
