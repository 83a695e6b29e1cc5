"""Room `Text` messages: their ids, timestamps, authors, and posting one into a room."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from .. import protocol
from ..protocol import Author, AttachmentSummary
from ..room_bus.bus import RoomBus

ASSISTANT_USERNAME = "model"
# Why an answer ended early when its server died mid-answer (kill -9, a crash): stored with
# what it had said by the server itself (kept in progress) or by another (a shared bus).
INTERRUPTED = "interrupted: the server generating this answer stopped"


def iso_time(when: datetime) -> str:
    """The one time format of stored and sent messages: UTC, milliseconds, `Z`."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_time(datetime.now(timezone.utc))


def new_message_id() -> str:
    return "m-" + secrets.token_hex(8)


def bot_author(username: str, name: str | None) -> Author:
    """A post from a kernel, REST or another extension: kind "bot", name as given."""
    return Author(username, name or "notebook", "bot")


async def post_text(
    bus: RoomBus, room: str, content: str, author: Author, message_id: str | None = None, **fields: Any
) -> tuple[str, int]:
    """Post a `Text` into a room (creating it) and store it; returns (message_id, seq).

    `message_id`: given when it had to be known before (a question the model is asked);
    `fields`: the optional `protocol.Text` fields of this kind of message.
    """
    text = protocol.Text(message_id or new_message_id(), content, author, now_iso(), **fields)
    seq = await bus.post(room, text)
    return text.message_id, seq


def question_fields(request: protocol.GenerateData) -> dict[str, Any]:
    """What a stored question says of how it was asked (never the attached data itself)."""
    fields: dict[str, Any] = {}
    if request.new_thread:
        fields["thread_start"] = True
    if request.reply_to:
        fields["reply_to"] = request.reply_to
    if request.attachments:
        fields["attachments"] = [AttachmentSummary(a.kind, a.label, len(a.text)) for a in request.attachments]
    return fields
