"""A room's own settings (its system prompt, its context mode): read, changed, announced."""

from __future__ import annotations

import msgspec

from .. import protocol
from ..protocol import Author, RoomSettings
from .connection import Identity
from .messages import post_text
from ..room_bus.bus import RoomBus

_CACHED = 4096  # rooms whose settings are kept in memory (a cache, not a registry)


class RoomSettingsBook:
    """Every room's settings, stored by the bus, cached here for the answer path."""

    def __init__(self, bus: RoomBus) -> None:
        self.bus = bus
        self._cache: dict[str, RoomSettings] = {}

    async def get(self, room: str) -> RoomSettings:
        """The room's settings in force: system prompt "" means the server's, context "own" by default."""
        settings = self._cache.get(room)
        if settings is None:
            stored = await self.bus.settings(room)
            settings = RoomSettings(stored.get("system_prompt", ""), stored.get("context", "own"))
            if len(self._cache) >= _CACHED:
                self._cache.clear()
            self._cache[room] = settings
        return settings

    async def change(self, room: str, change: protocol.RoomSettingsData, user: Identity) -> RoomSettings:
        """Store the new settings and tell the room's members with a system `Text`."""
        settings = await self.get(room)
        said: list[str] = []
        if change.system_prompt is not None:
            settings = msgspec.structs.replace(settings, system_prompt=change.system_prompt.strip())
            said.append("set this room's system prompt" if settings.system_prompt else "reset this room's system prompt")
        if change.context is not None:
            settings = msgspec.structs.replace(settings, context=change.context)
            said.append(
                "let the model see the whole room" if change.context == "shared" else "let the model see only each asker's own thread"
            )
        await self.bus.save_settings(room, msgspec.to_builtins(settings))
        self._cache[room] = settings
        if said:
            author = Author(user.username, user.name, "system")
            await post_text(self.bus, room, f"{user.name} {' and '.join(said)}.", author, settings=settings)
        return settings
