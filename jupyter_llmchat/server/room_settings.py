"""A room's own settings (its system prompt, its context mode, announce-only, answers on or
off) and who is muted in it: read, changed, announced.

Kept in the room bus's stored settings of the room (`muted` beside the `RoomSettings`
fields). A bus shared by several servers (`RoomBus.shared`) is read every time, so what a
moderator changes on one server holds on all of them at once; otherwise it is cached here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import msgspec

from .. import protocol
from ..protocol import Author, ChatError, RoomSettings
from .connection import Identity
from .messages import post_text
from ..room_bus.bus import RoomBus

_CACHED = 4096  # rooms whose settings are kept in memory (a cache, not a registry)
MODERATED = ("announce_only", "model_answers")  # the settings only moderators change


@dataclass(frozen=True)
class _Room:
    settings: RoomSettings
    muted: dict[str, float] = field(default_factory=dict)  # username -> until (Unix time)


class RoomSettingsBook:
    """Every room's settings and mutes, stored by the bus, cached here for the answer path."""

    def __init__(self, bus: RoomBus, log: logging.Logger | None = None) -> None:
        self.bus = bus
        self.log = log or logging.getLogger("jupyter_llmchat")
        self._cache: dict[str, _Room] = {}

    async def _load(self, room: str) -> _Room:
        found = self._cache.get(room)
        if found is None:
            stored = await self.bus.settings(room)
            settings = RoomSettings(
                stored.get("system_prompt", ""),
                stored.get("context", "own"),
                bool(stored.get("announce_only", False)),
                bool(stored.get("model_answers", True)),
            )
            found = _Room(settings, {str(k): float(v) for k, v in (stored.get("muted") or {}).items()})
            if not self.bus.shared:
                if len(self._cache) >= _CACHED:
                    self._cache.clear()
                self._cache[room] = found
        return found

    async def _save(self, room: str, found: _Room) -> None:
        now = time.time()
        muted = {user: until for user, until in found.muted.items() if until > now}  # expired ones go
        found = _Room(found.settings, muted)
        stored = msgspec.to_builtins(found.settings)
        if muted:
            stored["muted"] = muted
        await self.bus.save_settings(room, stored)
        if not self.bus.shared:
            self._cache[room] = found

    async def get(self, room: str) -> RoomSettings:
        """The room's settings in force: system prompt "" means the server's, context "own" by default."""
        return (await self._load(room)).settings

    async def muted_until(self, room: str, username: str) -> float | None:
        """When `username`'s mute in `room` ends (Unix time), or None when they are not muted."""
        return (await self.rules(room, username))[1]

    async def rules(self, room: str, username: str) -> tuple[RoomSettings, float | None]:
        """The room's settings and when `username`'s mute there ends (None: not muted), in
        one read (one round trip on a shared bus, for every post)."""
        found = await self._load(room)
        until = found.muted.get(username)
        return found.settings, until if until is not None and until > time.time() else None

    async def mute(self, room: str, username: str, until: float | None) -> None:
        """Mute `username` in `room` until then (None: unmute)."""
        found = await self._load(room)
        muted = dict(found.muted)
        if until is None:
            muted.pop(username, None)
        else:
            muted[username] = until
        await self._save(room, _Room(found.settings, muted))

    async def change(self, room: str, change: protocol.RoomSettingsData, user: Identity) -> RoomSettings:
        """Store the new settings and tell the room's members with a system `Text`.

        `announce_only` and `model_answers` are the moderators' (403 for anyone else)."""
        moderated = [name for name in MODERATED if getattr(change, name) is not None]
        if moderated and not user.moderator:
            raise ChatError(403, f"only moderators can change {' and '.join(moderated)}")
        found = await self._load(room)
        settings = found.settings
        said: list[str] = []
        if change.system_prompt is not None:
            settings = msgspec.structs.replace(settings, system_prompt=change.system_prompt.strip())
            said.append("set this room's system prompt" if settings.system_prompt else "reset this room's system prompt")
        if change.context is not None:
            settings = msgspec.structs.replace(settings, context=change.context)
            said.append(
                "let the model see the whole room" if change.context == "shared" else "let the model see only each asker's own thread"
            )
        if change.announce_only is not None:
            settings = msgspec.structs.replace(settings, announce_only=change.announce_only)
            said.append("made this room announce-only" if change.announce_only else "let everyone post in this room again")
        if change.model_answers is not None:
            settings = msgspec.structs.replace(settings, model_answers=change.model_answers)
            said.append("turned the model's answers on" if change.model_answers else "turned the model's answers off in this room")
        await self._save(room, _Room(settings, found.muted))
        if moderated:
            self.log.info("llmchat: moderator %r %s (room %r)", user.username, " and ".join(said[-len(moderated):]), room)
        if said:
            author = Author(user.username, user.name, "system")
            await post_text(self.bus, room, f"{user.name} {' and '.join(said)}.", author, settings=settings)
        return settings
