"""What clients send: the structs every incoming frame's `data` is validated against.

A frame that does not match becomes one `ChatError(400, ...)` that names the bad field
(`protocol.decode_data`). The kernel side sends these structs too (`protocol.client_frame`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ROOM_PATTERN", "ROOM_RULE", "MAX_ATTACHMENTS", "MAX_ATTACHMENT_CHARS", "MAX_SYSTEM_PROMPT_CHARS",
    "RoomName", "RequestId", "NonNegative", "MessageId", "ContextMode",
    "Envelope", "GenerateConfig", "JoinData", "EmptyData", "TextData", "Attachment", "GenerateData",
    "RoomSettingsData", "CancelData", "HistoryData", "CustomData", "BinaryData", "AudioData",
    "DeleteData", "EditData", "MuteData", "MAX_MUTE_SECONDS",
    "CLIENT_TYPES", "NEEDS_ROOM",
]

# `\Z`, not `$`: `$` also matches before a trailing newline ("general\n" is not a room name).
ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z"
ROOM_RULE = "1-128 characters of A-Z a-z 0-9 _ . : -, starting with a letter or digit"  # ROOM_PATTERN in words

MAX_ATTACHMENTS = 8
MAX_ATTACHMENT_CHARS = 16 * 1024
MAX_SYSTEM_PROMPT_CHARS = 8 * 1024
MAX_MUTE_SECONDS = 30 * 24 * 3600  # a mute longer than a month is a ban: not this product's job

RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_PATTERN)]
RequestId = Annotated[str, msgspec.Meta(max_length=128)]
# A seq or count from a client: below 2**62, so it always fits SQLite's 64-bit integers.
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ContextMode = Literal["own", "shared"]


class Envelope(msgspec.Struct, omit_defaults=True):
    """The outer object of every frame; `data` is decoded later, by `type`."""

    type: str
    id: RequestId | None = None
    room: RoomName | None = None
    seq: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"{}")


class GenerateConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Sampling settings a client may set; absent fields take the server's defaults."""

    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=5)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    min_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    repeat_penalty: Annotated[float, msgspec.Meta(ge=0.01, le=5)] | None = None  # as the server setting: dividing by ~0 overflows
    seed: Annotated[int, msgspec.Meta(ge=0, lt=2**32)] | None = None
    stop: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=8)] | None = None


class JoinData(msgspec.Struct, omit_defaults=True):
    """`since` and `epoch` to resume after a drop; neither for a first join."""

    since: NonNegative | None = None
    epoch: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class EmptyData(msgspec.Struct):
    pass


class TextData(msgspec.Struct):
    content: Annotated[str, msgspec.Meta(min_length=1)]


class Attachment(msgspec.Struct, forbid_unknown_fields=True):
    """A compact description of a live kernel object sent with a question (kernel_context.py)."""

    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""
    text: Annotated[str, msgspec.Meta(max_length=MAX_ATTACHMENT_CHARS)] = ""


class GenerateData(msgspec.Struct):
    prompt: Annotated[str, msgspec.Meta(min_length=1)]
    config: GenerateConfig | None = None
    new_thread: bool = False  # this question starts a fresh thread for its asker (docs/context.md)
    reply_to: MessageId | None = None  # a room message the question answers; given to the model
    regenerate: MessageId | None = None  # an earlier answer whose question is asked again
    attachments: Annotated[list[Attachment], msgspec.Meta(max_length=MAX_ATTACHMENTS)] | None = None


class RoomSettingsData(msgspec.Struct, forbid_unknown_fields=True):
    """A room's own settings; absent fields are left as they are, "" / null resets the prompt."""

    system_prompt: Annotated[str, msgspec.Meta(max_length=MAX_SYSTEM_PROMPT_CHARS)] | None = None
    context: ContextMode | None = None
    announce_only: bool | None = None  # moderators only: only moderators post Text
    model_answers: bool | None = None  # moderators only: false turns the model off in the room


class CancelData(msgspec.Struct):
    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class HistoryData(msgspec.Struct):
    before_seq: NonNegative | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None


class CustomData(msgspec.Struct):
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    payload: Any = None


class BinaryData(msgspec.Struct):
    data: str
    mime_type: Annotated[str, msgspec.Meta(max_length=255)] | None = None


class AudioData(msgspec.Struct):
    data: str
    format: str | None = None


class DeleteData(msgspec.Struct, forbid_unknown_fields=True):
    """Remove a message: its author's own, or any for a moderator."""

    message_id: MessageId


class EditData(msgspec.Struct, forbid_unknown_fields=True):
    """Replace the content of the sender's own `Text`."""

    message_id: MessageId
    content: Annotated[str, msgspec.Meta(min_length=1)]


class MuteData(msgspec.Struct, forbid_unknown_fields=True):
    """A moderator mutes `username` in the frame's room for `seconds` (0: unmute)."""

    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_MUTE_SECONDS)]


# Client -> server types and the struct their `data` must match.
CLIENT_TYPES: dict[str, type[msgspec.Struct]] = {
    "Join": JoinData,
    "Leave": EmptyData,
    "Text": TextData,
    "Generate": GenerateData,
    "Cancel": CancelData,
    "History": HistoryData,
    "Stats": EmptyData,
    "Ping": EmptyData,
    "Custom": CustomData,
    "Binary": BinaryData,
    "Audio": AudioData,
    "RoomSettings": RoomSettingsData,
    "Delete": DeleteData,
    "Edit": EditData,
    "Mute": MuteData,
}

# Types that act on a room and are meaningless without one.
NEEDS_ROOM = frozenset({"Join", "Leave", "Text", "History", "Binary", "RoomSettings", "Delete", "Edit", "Mute"})
