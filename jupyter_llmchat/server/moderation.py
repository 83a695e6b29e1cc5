"""Running a room (docs/moderation.md): delete and edit messages, mute users, and the checks
that muted users, announce-only rooms and rooms with answers off impose on posting.

Who is a moderator is decided once, at authentication (`Identity.moderator`, set by
`handlers.identity_of`): never from what a client sends. Everything a moderator does to
someone else is said in the room (a `system` Text) and in the server log, with who did it.
Transport-free like the service: it talks to rooms only through the room bus.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from .. import protocol
from ..protocol import Author, ChatError, MuteNotice
from .connection import Connection, Identity
from .messages import iso_time, now_iso, post_text
from ..room_bus.redaction import tombstone
from ..room_bus.bus import RoomBus, StoredText
from .room_settings import RoomSettingsBook

if TYPE_CHECKING:  # pragma: no cover
    from .answers import Answers

ANSWERS_OFF = "answers are off in this room"


def iso(moment: float) -> str:
    """Unix time as every time on the wire is written (`messages.iso_time`)."""
    return iso_time(datetime.fromtimestamp(moment, timezone.utc))


def _until_text(until: float) -> str:
    """When a mute ends, as a person reads it: "14:05 UTC", with the date when not today."""
    moment = datetime.fromtimestamp(until, timezone.utc)
    today = datetime.now(timezone.utc).date()
    return moment.strftime("%H:%M UTC" if moment.date() == today else "%Y-%m-%d %H:%M UTC")


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class Moderation:
    """Deleting, editing and muting in rooms, and the posting rules they impose."""

    def __init__(
        self,
        bus: RoomBus,
        settings: RoomSettingsBook,
        answers: Answers,
        forget_states: Callable[[str, str | None], None],
        log: logging.Logger | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.answers = answers
        self.forget_states = forget_states  # the model's saved KV states that hold a message
        self.log = log or logging.getLogger("jupyter_llmchat")

    # -- the rules on posting -------------------------------------------------------------------

    async def muted_until(self, room: str, user: Identity) -> str | None:
        until = await self.settings.muted_until(room, user.username)
        return None if until is None else iso(until)

    async def check_post(self, user: Identity, room: str, *, asking: bool = False) -> None:
        """Error 403 unless `user` may post a `Text` in `room` (muted; announce-only), or
        with `asking`, ask the model there (answers off too)."""
        settings, until = await self.settings.rules(room, user.username)
        if until is not None:
            raise ChatError(403, f"you are muted in this room until {_until_text(until)}")
        if asking and not settings.model_answers:
            raise ChatError(403, ANSWERS_OFF)
        if settings.announce_only and not user.moderator:
            raise ChatError(403, "this room is announce-only: only moderators post here (you can still ask the model privately)")

    async def check_ask(self, user: Identity, room: str | None) -> None:
        """Error 403 unless `user` may ask the model in `room` (None: privately, always allowed)."""
        if room is not None:
            await self.check_post(user, room, asking=True)

    # -- delete and edit -------------------------------------------------------------------------

    async def _stored(self, room: str, message_id: str) -> StoredText:
        found = await self.bus.message(room, message_id=message_id)
        if found is None:
            raise ChatError(404, f"unknown message {message_id!r} in room {room!r}")
        if found[1].deleted:
            raise ChatError(409, f"message {message_id!r} was deleted")
        return found

    async def _owner_of(self, room: str, text: protocol.Text) -> str | None:
        """Whose message it is: its author's, or for an answer the asker's."""
        if text.author.kind == "assistant":
            asked = await self.bus.message(room, message_id=text.in_reply_to or "")
            return asked[1].author.username if asked else None
        return None if text.author.kind == "system" else text.author.username

    async def delete(self, user: Identity, room: str, message_id: str) -> None:
        """Remove a message (its owner's own, a moderator's any): `Deleted` to the room, the
        stored row a tombstone, replay redacted, a `system` line when a moderator removed
        someone else's."""
        running = self.answers.running.get(message_id)
        if running is not None and running.room == room:  # an answer still streaming here
            owner, author = running.owner.username, "the model"
            self._may_delete(user, owner)
            running.deleted = True
            self.answers.stop(message_id)
        else:
            if running is None and message_id in await self.bus.running_answers(room):
                raise ChatError(409, "that answer is still being written by another server; delete it once it ends")
            seq, text = await self._stored(room, message_id)
            owner = await self._owner_of(room, text)
            self._may_delete(user, owner)
            await self.bus.store_message(room, seq, tombstone(msgspec.to_builtins(text)), seq)
            author = text.author.name or "someone"
        deleted_seq = await self.bus.emit(room, "Deleted", protocol.Deleted(message_id))
        await self.bus.forget_message(room, message_id, deleted_seq)
        self.forget_states(room, message_id)  # a saved state holding it would still show it to the model
        if owner != user.username:
            self.log.info("llmchat: moderator %r deleted message %s by %r in room %r", user.username, message_id, author, room)
            await self._announce(user, room, f"{user.name} removed a message by {author}.")
        else:
            self.log.info("llmchat: %r deleted their message %s in room %r", user.username, message_id, room)

    def _may_delete(self, user: Identity, owner: str | None) -> None:
        if owner != user.username and not user.moderator:
            raise ChatError(403, "only its author or a moderator can delete this message")

    async def edit(self, user: Identity, room: str, message_id: str, content: str) -> None:
        """The author replaces the content of their own `Text`: `Edited` to the room."""
        if message_id in self.answers.running:
            raise ChatError(403, "answers cannot be edited")
        seq, text = await self._stored(room, message_id)
        if text.author.kind == "assistant":
            raise ChatError(403, "answers cannot be edited")
        if text.author.kind == "system" or text.author.username != user.username:
            raise ChatError(403, "only its author can edit this message")
        await self.check_post(user, room)
        edited = now_iso()
        await self.bus.store_message(room, seq, msgspec.structs.replace(text, content=content, edited=edited), seq)
        await self.bus.emit(room, "Edited", protocol.Edited(message_id, content, edited))
        self.forget_states(room, message_id)  # saved states hold the old words

    # -- mute --------------------------------------------------------------------------------------

    async def mute(self, user: Identity, room: str, username: str, seconds: int) -> str:
        """A moderator mutes `username` in `room` for `seconds` (0: unmute); returns the id
        of the `system` Text that tells the room."""
        if not user.moderator:
            raise ChatError(403, "only moderators can mute")
        who = next((person.name for person in await self.bus.members(room) if person.username == username), username)
        if seconds == 0:
            await self.settings.mute(room, username, None)
            said, notice = f"{user.name} unmuted {who}.", MuteNotice(username, None)
            self.log.info("llmchat: moderator %r unmuted %r in room %r", user.username, username, room)
        else:
            until = time.time() + seconds
            await self.settings.mute(room, username, until)
            said = f"{user.name} muted {who} for {_duration(seconds)} (until {_until_text(until)})."
            notice = MuteNotice(username, iso(until))
            self.log.info("llmchat: moderator %r muted %r in room %r until %s", user.username, username, room, iso(until))
        return await self._announce(user, room, said, mute=notice)

    async def exported(self, user: Identity, room: str, fmt: str) -> None:
        """A moderator took the room's transcript: the room is told, as it is of every moderator action."""
        self.log.info("llmchat: moderator %r exported room %r (%s)", user.username, room, fmt)
        await self._announce(user, room, f"{user.name} exported this room's transcript.")

    async def _announce(self, user: Identity, room: str, content: str, **fields: Any) -> str:
        message_id, _ = await post_text(self.bus, room, content, Author(user.username, user.name, "system"), **fields)
        return message_id

    # -- the frames -----------------------------------------------------------------------------

    async def receive(self, connection: Connection, envelope: protocol.Envelope, data: Any) -> None:
        """`Delete`, `Edit` and `Mute` from a member of the frame's room."""
        room = envelope.room or ""
        if not self.bus.is_member(room, connection):
            raise ChatError(409, f"not a member of room {room!r}: send Join first")
        user = connection.user
        if isinstance(data, protocol.DeleteData):
            await self.delete(user, room, data.message_id)
        elif isinstance(data, protocol.EditData):
            await self.edit(user, room, data.message_id, data.content)
        else:
            message_id = await self.mute(user, room, data.username, data.seconds)
            ack = protocol.Ack(message_id, 0)
            connection.send(protocol.encode("Ack", ack, id=envelope.id, room=room))


FRAMES = frozenset({"Delete", "Edit", "Mute"})  # the client frames `Moderation.receive` handles
