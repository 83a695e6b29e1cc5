"""The chat service's rooms as the REST handlers, kernels and other extensions see them:
history pages, a room's info, the room list, clearing a room, bot posts and broadcasts,
frames sent to one connection (docs/protocol.md).

A mixin of `service.ChatService` (which holds the bus, the settings and the connections):
the methods stay on the one service object that hooks and extensions are handed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .. import protocol
from ..backends.model_backend import ModelBackend
from ..protocol import ChatError, Person
from ..room_bus.bus import RoomBus
from .connection import Connection
from .messages import bot_author, post_text
from .room_settings import RoomSettingsBook


def _within(rows: list[tuple[int, Any]], max_bytes: int, *, newest: bool) -> list[tuple[int, Any]]:
    """As many rows as fit in `max_bytes` (JSON), at least one: the newest or the oldest."""
    ordered = reversed(rows) if newest else iter(rows)
    kept, size = [], 0
    for row in ordered:
        size += len(msgspec.json.encode(row[1]))
        if kept and size > max_bytes:
            break
        kept.append(row)
    return kept[::-1] if newest else kept


class RoomApi:
    """Rooms for REST and extensions, on the `ChatService`."""

    bus: RoomBus
    backend: ModelBackend
    settings: RoomSettingsBook
    connections: dict[str, Connection]

    async def history_data(
        self,
        name: str,
        *,
        before_seq: int | None = None,
        since: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
    ) -> protocol.History:
        """`History` data: stored messages as Text room events, oldest first (rows as stored).

        With `max_bytes`, a page holds fewer messages when they are large (at least one):
        the newest ones, or from `since` on the oldest ones."""
        rows = await self.bus.messages(name, before_seq=before_seq, since=since, limit=limit)
        if max_bytes is not None:
            rows = _within(rows, max_bytes, newest=since is None or before_seq is not None)
        messages = [{"type": "Text", "room": name, "seq": seq, "data": data} for seq, data in rows]
        head_seq, epoch = await self.bus.head(name)
        return protocol.History(messages, head_seq, epoch)

    async def require_room(self, name: str) -> None:
        """ChatError 404 unless the room is live or has ever been used."""
        if not await self.bus.exists(name):
            raise ChatError(404, f"unknown room {name!r}")

    async def room_info(self, name: str, offset: int = 0, limit: int = protocol.MEMBERS_SHOWN) -> dict[str, Any]:
        """REST `GET rooms/{room}`: head seq, epoch, a page of members, the room's own settings."""
        head_seq, epoch = await self.bus.head(name)
        info = {
            "room": name,
            "head_seq": head_seq,
            "epoch": epoch,
            "count": await self.bus.member_count(name),
            "offset": offset,
            "members": await self._members(name, offset, limit),
            "settings": await self.settings.get(name),
        }
        return msgspec.to_builtins(info)

    async def room_list(self) -> list[dict[str, Any]]:
        return await self.bus.room_list()

    def forget_saved_states(self, room: str, message_id: str | None = None) -> None:
        """The model's saved KV states of the room's threads (those holding `message_id`)."""
        self.backend.forget(room, message_id)

    async def clear_room(self, name: str) -> int:
        """Delete a room's stored messages; its members reload an empty history (new epoch)."""
        await self.require_room(name)
        deleted = await self.bus.clear(name)
        self.forget_saved_states(name)
        head_seq, _ = await self.bus.head(name)
        await self.bus.deliver(name, protocol.encode("Reset", protocol.Reset(head_seq), room=name))
        await self.bus.deliver(name, protocol.encode("History", await self.history_data(name), room=name))
        return deleted

    async def broadcast_to_room(self, room: str, content: str, *, username: str, author_name: str | None = None) -> tuple[str, int]:
        """Post as a bot (REST, kernels, other extensions): docs/protocol.md."""
        return await post_text(self.bus, room, content, bot_author(username, author_name))

    async def broadcast(self, content: str, *, username: str, author_name: str | None = None) -> dict[str, tuple[str, int]]:
        """Post one bot message into every live room (e.g. "restarting in 5 minutes").

        Returns {room: (message_id, seq)}. Rooms only in the store (nobody there since the
        last restart or cleanup) are left alone: nobody would see it live.
        """
        return {
            name: await self.broadcast_to_room(name, content, username=username, author_name=author_name)
            for name in self.bus.live_rooms()
        }

    def send_to(self, client_id: str, type_: str, data: Any) -> bool:
        connection = self.connections.get(client_id)
        if connection is None:
            return False
        connection.send(protocol.encode(type_, data))
        return True

    def connection_count(self) -> int:
        return len(self.connections)

    async def _members(self, name: str, offset: int = 0, limit: int = protocol.MEMBERS_SHOWN) -> list[Person]:
        return [user.person() for user in await self.bus.members(name, offset, limit)]
