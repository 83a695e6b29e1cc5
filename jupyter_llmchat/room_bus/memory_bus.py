"""The first room bus: rooms live in this process, their history in SQLite.

Live rooms (`rooms.Room`: members, seq, replay window) are kept while they have members or
recent activity; a room that stayed empty and quiet for `cleanup_delay` seconds is dropped
and comes back from the store with its head seq and a new epoch.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable

import msgspec

from ..protocol import MEMBERS_SHOWN, ChatError, Text
from ..server.connection import Connection, Identity
from .bus import JoinedRoom, Message, RoomBus, StoredText
from .rooms import ReplayBudget, Room
from .store import HistoryStore


class MemoryRoomBus(RoomBus):
    """One server's rooms: `Room` objects in memory over a `HistoryStore`."""

    def __init__(
        self,
        store: HistoryStore,
        replay_events: int,
        cleanup_delay: float,
        replay_bytes: int | None = None,
        replay_memory: int | None = None,
        max_rooms: int | None = None,
    ) -> None:
        self.store = store
        self.replay_events = replay_events
        self.replay_bytes = replay_bytes
        self.cleanup_delay = cleanup_delay
        self.max_rooms = max_rooms
        self.budget = ReplayBudget(replay_memory if replay_memory is not None else 2**62)
        self.rooms: OrderedDict[str, Room] = OrderedDict()  # least recently active first

    def _room(self, name: str) -> Room:
        """The live room, brought back from the store (new epoch) or created."""
        room = self.rooms.get(name)
        if room is None:
            if self.max_rooms is not None and len(self.rooms) >= self.max_rooms:
                raise ChatError(503, f"this server has {len(self.rooms)} rooms open (max_rooms); try again later")
            room = Room(name, self.store.head_seq(name) or 0, self.replay_events, self.replay_bytes, self.budget)
            self.rooms[name] = room
        return room

    # -- membership and fan-out --------------------------------------------------------------

    async def join(self, room: str, connection: Connection) -> JoinedRoom:
        live = self._room(room)
        first = live.add(connection)
        return JoinedRoom(first, live.head_seq, live.epoch, len(live.identities), live.users(0, MEMBERS_SHOWN))

    async def leave(self, room: str, connection: Connection) -> bool:
        live = self.rooms.get(room)
        return live.remove(connection) if live is not None else False

    def is_member(self, room: str, connection: Connection) -> bool:
        live = self.rooms.get(room)
        return live is not None and connection.client_id in live.members

    async def members(self, room: str, offset: int = 0, limit: int | None = None) -> list[Identity]:
        live = self.rooms.get(room)
        return live.users(offset, limit) if live is not None else []

    async def member_count(self, room: str) -> int:
        return self.local_member_count(room)

    def local_member_count(self, room: str) -> int:
        live = self.rooms.get(room)
        return len(live.identities) if live is not None else 0

    async def emit(self, room: str, type_: str, data: msgspec.Struct) -> int:
        live = self._room(room)
        seq = live.emit(type_, data)
        self.rooms.move_to_end(room)
        if self.budget.over:
            self._shrink_quiet_rooms()
        return seq

    def _shrink_quiet_rooms(self) -> None:
        """Over `replay_memory`: the least recently active rooms' buffers go first (their
        resuming clients get `Reset`), each down to what still fits."""
        for live in self.rooms.values():
            if not self.budget.over:
                return
            live.trim(max(0, live.replay_size - (self.budget.used - self.budget.limit)))

    async def deliver(self, room: str, frame: bytes) -> None:
        live = self.rooms.get(room)
        for member in list(live.members.values()) if live is not None else []:
            member.send(frame)

    # -- sequence, replay and epochs -----------------------------------------------------------

    async def exists(self, room: str) -> bool:
        return room in self.rooms or self.store.head_seq(room) is not None

    async def head(self, room: str) -> tuple[int, str | None]:
        live = self.rooms.get(room)
        if live is not None:
            return live.head_seq, live.epoch
        return self.store.head_seq(room) or 0, None

    async def catch_up(self, room: str, since: int, epoch: str | None) -> Iterable[bytes] | None:
        live = self._room(room)
        return live.events_after(since) if live.can_resume(since, epoch) else None

    async def running_answer_frames(self, room: str) -> Iterable[bytes]:
        return self._room(room).running_answer_tokens()

    async def answer_started(self, room: str, message_id: str, stub: Text) -> None:
        self._room(room).active_generations.add(message_id)

    async def answer_ended(self, room: str, message_id: str) -> None:
        live = self.rooms.get(room)
        if live is not None:
            live.answer_ended(message_id)

    async def running_answers(self, room: str) -> list[str]:
        live = self.rooms.get(room)
        return list(live.active_generations) if live is not None else []

    # -- history -------------------------------------------------------------------------------

    async def store_message(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        self.store.add_message(room, seq, msgspec.to_builtins(text), head_seq)

    async def store_in_progress(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        """Written to the history file as it is: hidden from readers by `_streaming`."""
        self.store.add_message(room, seq, msgspec.to_builtins(text), head_seq)

    async def save_head(self, room: str, seq: int) -> None:
        self.store.save_head(room, seq)

    def _streaming(self, room: str) -> set[str]:
        """Answers of the room still streaming: their rows stored in progress (what a crash
        would keep) are not shown, their tokens are."""
        live = self.rooms.get(room)
        return live.active_generations if live is not None else set()

    async def messages(
        self, room: str, *, before_seq: int | None = None, since: int | None = None, limit: int = 50
    ) -> list[Message]:
        rows = self.store.messages(room, before_seq=before_seq, since=since, limit=limit)
        streaming = self._streaming(room)
        return [row for row in rows if row[1].get("message_id") not in streaming] if streaming else rows

    async def message(self, room: str, *, message_id: str | None = None, seq: int | None = None) -> StoredText | None:
        found = self.store.message(room, message_id=message_id, seq=seq)
        if found is None or found[1].get("message_id") in self._streaming(room):
            return None
        return found[0], msgspec.convert(found[1], Text)

    async def exchanges(
        self, room: str, username: str, *, before_seq: int, limit: int
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        pairs = self.store.exchanges(room, username, before_seq=before_seq, limit=limit)
        streaming = self._streaming(room)
        return [pair for pair in pairs if pair[1].get("message_id") not in streaming] if streaming else pairs

    async def forget_message(self, room: str, message_id: str, deleted_seq: int) -> None:
        live = self.rooms.get(room)
        if live is not None:
            live.redact(message_id)

    async def clear(self, room: str) -> int:
        deleted = self.store.delete_messages(room)
        live = self.rooms.get(room)
        if live is not None:
            live.forget_events()
        return deleted

    async def delete_older_than(self, created_before: str) -> int:
        return self.store.delete_older_than(created_before)

    async def settings(self, room: str) -> dict[str, Any]:
        return self.store.room_settings(room)

    async def save_settings(self, room: str, settings: dict[str, Any]) -> None:
        self.store.save_room_settings(room, settings)

    async def room_list(self) -> list[dict[str, Any]]:
        heads = self.store.rooms()
        for name, live in self.rooms.items():
            heads[name] = live.head_seq
        return [
            {"room": name, "members": self.local_member_count(name), "head_seq": head}
            for name, head in sorted(heads.items())
        ]

    def live_rooms(self) -> list[str]:
        return list(self.rooms)

    # -- lifetime ------------------------------------------------------------------------------

    async def sweep(self, now: float) -> None:
        for name, live in list(self.rooms.items()):
            if live.idle_for(now) > self.cleanup_delay:
                self.store.save_head(name, live.head_seq)
                live.forget_events()  # its bytes leave the server-wide budget
                del self.rooms[name]

    async def close(self) -> None:
        """Persist every live room's head seq, then close the store."""
        for name, live in self.rooms.items():
            self.store.save_head(name, live.head_seq)
        self.store.close()
