"""Room `Text` messages: their ids, timestamps, authors, and posting one into a room."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from .. import protocol
from .room_bus import RoomBus

ASSISTANT_USERNAME = "model"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_message_id() -> str:
    return "m-" + secrets.token_hex(8)


def bot_author(username: str, name: str | None) -> dict[str, str]:
    """A post from a kernel, REST or another extension: kind "bot", name as given."""
    return {"username": username, "name": name or "notebook", "kind": "bot"}


def post_text(
    bus: RoomBus, room: str, content: str, author: dict[str, str], extra: dict[str, Any] | None = None
) -> tuple[str, int]:
    """Post a `Text` into a room (creating it) and store it; returns (message_id, seq)."""
    data = {"message_id": new_message_id(), "content": content, "author": author, "created": now_iso(), **(extra or {})}
    seq = bus.emit(room, "Text", data)
    bus.store_message(room, seq, data, seq)
    return data["message_id"], seq


def question_fields(request: protocol.GenerateData) -> dict[str, Any]:
    """What a stored question says of how it was asked (never the attached data itself)."""
    fields: dict[str, Any] = {}
    if request.new_thread:
        fields["thread_start"] = True
    if request.reply_to:
        fields["reply_to"] = request.reply_to
    if request.attachments:
        fields["attachments"] = [{"kind": a.kind, "label": a.label, "chars": len(a.text)} for a in request.attachments]
    return fields
