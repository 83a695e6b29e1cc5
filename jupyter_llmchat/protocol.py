"""The llmchat.v1 wire format (docs/protocol.md): parsing, validation and encoding.

Incoming frames are validated by msgspec against the structs below, so every malformed
frame becomes one `ChatError(400, ...)` with a message that names the bad field.
Outgoing frames are encoded once and the same bytes go to every member of a room.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

PROTOCOL = "llmchat.v1"
# `\Z`, not `$`: `$` also matches before a trailing newline ("general\n" is not a room name).
ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z"

MAX_ATTACHMENTS = 8
MAX_ATTACHMENT_CHARS = 16 * 1024
MAX_SYSTEM_PROMPT_CHARS = 8 * 1024

RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_PATTERN)]
RequestId = Annotated[str, msgspec.Meta(max_length=128)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class ChatError(Exception):
    """A request the server refuses; becomes an `Error {message, code}` frame (docs/protocol.md)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    repeat_penalty: Annotated[float, msgspec.Meta(gt=0, le=5)] | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, lt=2**32)] | None = None
    stop: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]], msgspec.Meta(max_length=8)] | None = None


class JoinData(msgspec.Struct):
    since: NonNegative | None = None
    epoch: str | None = None


class EmptyData(msgspec.Struct):
    pass


class TextData(msgspec.Struct):
    content: Annotated[str, msgspec.Meta(min_length=1)]


MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ContextMode = Literal["own", "shared"]


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


class CancelData(msgspec.Struct):
    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class HistoryData(msgspec.Struct):
    before_seq: Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None = None  # SQLite integers are 64-bit
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
}

# Types that act on a room and are meaningless without one.
NEEDS_ROOM = frozenset({"Join", "Leave", "Text", "History", "Binary", "RoomSettings"})

_envelope_decoder = msgspec.json.Decoder(Envelope)
_data_decoders = {name: msgspec.json.Decoder(struct) for name, struct in CLIENT_TYPES.items()}
_encoder = msgspec.json.Encoder()


def _clean(error: msgspec.ValidationError | msgspec.DecodeError) -> str:
    return str(error).replace("`$.", "`")


class _Head(msgspec.Struct):
    """Just the fields needed before the full parse: for authorization and for the reply's id."""

    type: str = ""
    id: str | None = None


_head_decoder = msgspec.json.Decoder(_Head)


def peek(raw: str | bytes) -> tuple[str, str | None]:
    """(type, id) of a frame, as far as they can be read; ("", None) when they cannot."""
    try:
        head = _head_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return "", None
    request_id = head.id if head.id is not None and len(head.id) <= 128 else None
    return head.type, request_id


def decode_envelope(raw: str | bytes) -> Envelope:
    """Parse the outer frame; raises ChatError(400) (the caller adds the id `peek` found)."""
    try:
        return _envelope_decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise ChatError(400, f"invalid message: {_clean(error)}") from None
    except msgspec.DecodeError as error:
        raise ChatError(400, f"malformed JSON: {error}") from None
    except RecursionError:
        raise ChatError(400, "malformed JSON: nested too deeply") from None


def decode_data(envelope: Envelope) -> msgspec.Struct:
    """Validate `data` for the envelope's type; raises ChatError(400) naming what is wrong."""
    decoder = _data_decoders.get(envelope.type)
    if decoder is None:
        known = ", ".join(CLIENT_TYPES)
        raise ChatError(400, f"unknown message type {envelope.type!r}; expected one of {known}")
    if envelope.type in NEEDS_ROOM and envelope.room is None:
        raise ChatError(400, f"{envelope.type} needs a `room`")
    try:
        return decoder.decode(envelope.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ChatError(400, f"invalid {envelope.type} data: {_clean(error)}") from None
    except RecursionError:
        raise ChatError(400, f"invalid {envelope.type} data: nested too deeply") from None


def encode(
    type_: str,
    data: Any,
    *,
    id: str | None = None,
    room: str | None = None,
    seq: int | None = None,
) -> bytes:
    """Encode one server frame; only the envelope fields that apply are written."""
    frame: dict[str, Any] = {"type": type_}
    if id is not None:
        frame["id"] = id
    if room is not None:
        frame["room"] = room
    if seq is not None:
        frame["seq"] = seq
    frame["data"] = data
    return _encoder.encode(frame)


def encode_json(value: Any) -> bytes:
    """JSON for REST bodies, with the same encoder as the socket."""
    return _encoder.encode(value)


def decode_json(raw: bytes | str, struct: type[msgspec.Struct]) -> Any:
    """Validate a REST body against a struct; ChatError(400) when it does not match."""
    try:
        return msgspec.json.decode(raw, type=struct)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ChatError(400, f"invalid body: {_clean(error)}") from None


def error_frame(code: int, message: str, id: str | None = None, room: str | None = None) -> bytes:
    return encode("Error", {"message": message, "code": code}, id=id, room=room)
