"""What a deleted message leaves behind: its tombstone, in history and in replay.

Replay gives events back byte for byte, with one exception: once a message is deleted, its
`Text` is replayed as its tombstone (`deleted: true`, no content) and the `Token`s of a
deleted answer without their text, so a client resuming later never receives what was
removed. Both room buses use these (the memory bus rewrites its buffer once, at the
delete; the Redis bus at each replay, since a stream entry cannot be rewritten).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import msgspec

from .. import protocol
from ..protocol import Text, Token

# What a tombstone keeps of the message: who wrote it, when, and where it sits in a thread.
_KEPT = ("in_reply_to", "regenerates", "thread_start", "reply_to")


def tombstone(data: dict[str, Any]) -> Text:
    """The stored row of a deleted message: who and when stay, what it said goes."""
    kept = {name: data[name] for name in _KEPT if data.get(name)}
    author = msgspec.convert(data.get("author") or {"username": "", "name": "", "kind": "user"}, protocol.Author)
    return Text(str(data["message_id"]), "", author, str(data.get("created", "")), deleted=True, **kept)


def redact_frame(frame: bytes, deleted: set[str]) -> bytes:
    """`frame` as replay gives it once the messages in `deleted` are gone (else unchanged)."""
    if not any(message_id.encode() in frame for message_id in deleted):  # cheap: most frames
        return frame
    parsed = json.loads(frame)
    data = parsed.get("data") or {}
    if data.get("message_id") not in deleted:
        return frame
    if parsed.get("type") == "Text":
        redacted: msgspec.Struct = tombstone(data)
    elif parsed.get("type") == "Token":
        redacted = msgspec.structs.replace(msgspec.convert(data, Token), text="")
    else:  # the `Deleted` event itself, an `Edited` before it: nothing to hide beyond the id
        if parsed.get("type") != "Edited":
            return frame
        redacted = protocol.Edited(data["message_id"], "", data.get("edited", ""))
    return protocol.encode(parsed["type"], redacted, room=parsed.get("room"), seq=parsed.get("seq"))


def redact_all(frames: Iterable[bytes], deleted: set[str]) -> list[bytes]:
    return [redact_frame(frame, deleted) for frame in frames] if deleted else list(frames)
