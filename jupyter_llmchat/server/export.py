"""A room's transcript, for a moderator to keep or grade: Markdown or JSON, streamed.

The history is read a page at a time (`PAGE` messages, oldest first) and each page is
written out before the next is read, so a room of 100,000 messages exports in the memory
of one page. Deleted messages are left out; answers name the model that wrote them; edited
messages say when.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, AsyncIterator, Literal

from .messages import now_iso
from ..room_bus.bus import RoomBus

PAGE = 200  # messages read and written at a time
Format = Literal["md", "json"]
FORMATS: tuple[Format, ...] = ("md", "json")


async def _pages(bus: RoomBus, room: str) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    since = 0
    while True:
        rows = await bus.messages(room, since=since, limit=PAGE)
        if not rows:
            return
        yield [(seq, data) for seq, data in rows if not data.get("deleted")]
        if len(rows) < PAGE:
            return
        since = rows[-1][0]


def entry(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    """One message of a JSON transcript."""
    author = data.get("author") or {}
    item: dict[str, Any] = {
        "seq": seq,
        "message_id": data.get("message_id"),
        "created": data.get("created"),
        "author": {"username": author.get("username"), "name": author.get("name"), "kind": author.get("kind")},
        "content": data.get("content", ""),
    }
    if author.get("kind") == "assistant":
        item["model"] = author.get("name")
    for name in ("in_reply_to", "edited", "finish_reason"):
        if data.get(name):
            item[name] = data[name]
    return item


def _when(iso: str | None) -> str:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(iso or "")


def markdown(seq: int, data: dict[str, Any]) -> str:
    """One message of a Markdown transcript: who (and their username), when, what."""
    author = data.get("author") or {}
    kind, when = author.get("kind"), _when(data.get("created"))
    content = str(data.get("content", ""))
    if kind == "system":
        return f"*{when} · {content}*\n\n"
    if kind == "assistant":
        who = f"**Answer from the model {author.get('name')}**"
    else:
        who = f"**{author.get('name')}** ({author.get('username')}{', bot' if kind == 'bot' else ''})"
    edited = f" · edited {_when(data['edited'])}" if data.get("edited") else ""
    return f"{who} · {when}{edited} · #{seq}\n\n{content}\n\n"


async def transcript(bus: RoomBus, room: str, fmt: Format) -> AsyncIterator[str]:
    """The room's transcript in `fmt`, in pieces to write as they come."""
    exported = now_iso()
    if fmt == "json":
        yield json.dumps({"room": room, "exported": exported})[:-1] + ', "messages": ['
        first = True
        async for page in _pages(bus, room):
            if page:
                yield ("" if first else ",") + "\n" + ",\n".join(json.dumps(entry(*row), ensure_ascii=False) for row in page)
                first = False
        yield "\n]}\n"
        return
    yield f"# Room {room}\n\nTranscript exported {_when(exported)}; deleted messages are left out.\n\n---\n\n"
    async for page in _pages(bus, room):
        yield "".join(markdown(*row) for row in page)
