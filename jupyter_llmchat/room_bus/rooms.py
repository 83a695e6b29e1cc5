"""Rooms: members, the per-room `seq`, and the replay buffer that makes resuming exact.

Every room event is encoded once, numbered, kept in the replay buffer, and written to
each member's queue in one synchronous step, so all members see the same order.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from typing import Iterable

import msgspec

from .. import protocol
from ..server.connection import Connection, Identity
from .redaction import redact_frame


# What Python holds for each kept event besides the frame's bytes: the (seq, answer, frame)
# tuple (64), the seq int (32), the bytes object's header (33) and the deque slot (8).
# Counted with the frame, so `replay_bytes` and `replay_memory` bound memory, not payload:
# 4,096 events of 100-byte Presence frames hold ~0.9 MiB, not 0.4.
EVENT_OVERHEAD = 137


def new_epoch() -> str:
    return secrets.token_hex(4)


class ReplayBudget:
    """The bytes every room's replay buffer holds together (`replay_memory` bounds them)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def over(self) -> bool:
        return self.used > self.limit


class Room:
    """A named channel; `head_seq` is the seq of its last event.

    Its replay buffer keeps the newest events within `replay_events` events and
    `replay_bytes` bytes; the server-wide `budget` may shrink it further (`trim`). A client
    resuming from before the oldest event kept gets `Reset`.
    """

    def __init__(
        self, name: str, head_seq: int, replay_events: int, replay_bytes: int | None = None, budget: ReplayBudget | None = None
    ) -> None:
        self.name = name
        self.epoch = new_epoch()  # new per process: older events cannot be replayed
        self.head_seq = head_seq
        self.replay_events = max(replay_events, 0)
        self.replay_bytes = replay_bytes
        self.replay_size = 0  # bytes `replay` holds: its frames and EVENT_OVERHEAD per event
        self.budget = budget or ReplayBudget(2**62)
        self.members: dict[str, Connection] = {}
        # Distinct users, in order of arrival, and how many connections each has here:
        # presence is O(1) per join or leave, whatever the size of the room.
        self.identities: dict[str, Identity] = {}
        self._connections_of: dict[str, int] = {}
        # (seq, message_id of the answer for Token events else None, encoded frame)
        self.replay: deque[tuple[int, str | None, bytes]] = deque()
        self.active_generations: set[str] = set()
        self.empty_since: float | None = time.monotonic()

    def emit(self, type_: str, data: msgspec.Struct) -> int:
        """Number, remember and send one room event; returns its seq."""
        self.head_seq += 1
        frame = protocol.encode(type_, data, room=self.name, seq=self.head_seq)
        if self.replay_events:
            answer = data.message_id if isinstance(data, protocol.Token) else None
            self.replay.append((self.head_seq, answer, frame))
            self.replay_size += len(frame) + EVENT_OVERHEAD
            self.budget.used += len(frame) + EVENT_OVERHEAD
            limit = self.replay_bytes if self.replay_bytes is not None else 2**62
            while self.replay and (len(self.replay) > self.replay_events or self.replay_size > limit):
                self._drop_oldest()
        for member in list(self.members.values()):
            member.send(frame)
        return self.head_seq

    def _drop_oldest(self) -> None:
        size = len(self.replay.popleft()[2]) + EVENT_OVERHEAD
        self.replay_size -= size
        self.budget.used -= size

    def redact(self, message_id: str) -> None:
        """A message was deleted: its events in the replay buffer become what replay gives
        of a deleted message (`redaction.redact_frame`), once, here."""
        deleted = {message_id}
        kept: deque[tuple[int, str | None, bytes]] = deque()
        for seq, answer, frame in self.replay:
            redacted = redact_frame(frame, deleted)
            change = len(redacted) - len(frame)
            self.replay_size += change
            self.budget.used += change
            kept.append((seq, answer, redacted))
        self.replay = kept

    def trim(self, keep_bytes: int) -> None:
        """Shrink the replay buffer to at most `keep_bytes` (the server is over its budget)."""
        while self.replay and self.replay_size > keep_bytes:
            self._drop_oldest()

    def forget_events(self) -> None:
        """After the room's history was cleared (or the room is dropped): nothing before
        now can be replayed."""
        self.epoch = new_epoch()
        self.trim(0)

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

    def users(self, offset: int = 0, limit: int | None = None) -> list[Identity]:
        """Distinct users present (one user with two tabs is one member), in order of arrival."""
        stop = None if limit is None else offset + limit
        return list(itertools.islice(self.identities.values(), offset, stop))

    def add(self, connection: Connection) -> bool:
        """Add a member; True when its user was not present before (a Presence is due)."""
        if connection.client_id in self.members:
            return False
        username = connection.user.username
        self.members[connection.client_id] = connection
        count = self._connections_of.get(username, 0)
        self._connections_of[username] = count + 1
        if count == 0:
            self.identities[username] = connection.user
        connection.rooms.add(self.name)
        self.empty_since = None
        return count == 0

    def remove(self, connection: Connection) -> bool:
        """Remove a member; True when that was its user's last connection here."""
        if self.members.pop(connection.client_id, None) is None:
            return False
        connection.rooms.discard(self.name)
        if not self.members:
            self.empty_since = time.monotonic()
        username = connection.user.username
        left = self._connections_of[username] - 1
        if left:
            self._connections_of[username] = left
            return False
        del self._connections_of[username]
        del self.identities[username]
        return True

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
