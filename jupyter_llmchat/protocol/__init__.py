"""The llmchat.v1 wire format (docs/protocol.md): parsing, validation and encoding.

Both directions are msgspec structs: what clients send in `client_frames` (validated, so a
malformed frame becomes one `ChatError(400, ...)` that names the bad field), what the server
sends in `server_frames` (encoded from the structs, once; the same bytes go to every member
of a room). The kernel side builds its frames here too (`client_frame`), and js/src/wire.ts
is generated from these structs (scripts/gen_wire_ts.py): no side keeps its own copy.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from .client_frames import *  # noqa: F403  (the structs are `protocol.X` to every caller)
from .client_frames import CLIENT_TYPES, NEEDS_ROOM, Envelope
from .server_frames import *  # noqa: F403
from .server_frames import Error

PROTOCOL = "llmchat.v1"
# Sent by the kernel relay on the socket it opens for a widget (with the runtime secret):
# the frames it carries are the user's own (author kind "user"), not a "bot" post of the kernel.
RELAY_HEADER = "X-LLMChat-Relay"


class ChatError(Exception):
    """A request the server refuses; becomes an `Error {message, code}` frame (docs/protocol.md)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Frame(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A frame as written, either way: the envelope fields that apply, then `data`."""

    type: str
    id: str | None = None
    room: str | None = None
    seq: int | None = None
    data: Any


_envelope_decoder = msgspec.json.Decoder(Envelope)
_data_decoders = {name: msgspec.json.Decoder(struct) for name, struct in CLIENT_TYPES.items()}
_encoder = msgspec.json.Encoder()


def _clean(error: msgspec.ValidationError | msgspec.DecodeError) -> str:
    return str(error).replace("`$.", "`")


class _Head(msgspec.Struct):
    """Just the fields needed before the full parse: for authorization and for the reply's id.

    Both are raw, so that a frame whose other fields are wrong still gives its id back (a
    frame the full parse accepts always passes here too)."""

    type: msgspec.Raw = msgspec.Raw(b'""')
    id: msgspec.Raw = msgspec.Raw(b"null")


_head_decoder = msgspec.json.Decoder(_Head)
_MAX_ID = 128
_PEEK_BYTES = 4096
# An id among the first members of an object whose earlier members are plain values
# (`{"type": "Text", "id": "r-1", "data": ...`): read from a frame that does not parse.
_LEADING_ID = re.compile(
    rb'\s*\{(?:\s*"(?:[^"\\]|\\.)*"\s*:\s*(?:"(?:[^"\\]|\\.)*"|[-+.\w]+)\s*,)*?'
    rb'\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")'
)


def _as_text(raw: bytes | msgspec.Raw) -> str | None:
    try:
        return msgspec.json.decode(raw, type=str)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def peek(raw: str | bytes) -> tuple[str, str | None]:
    """(type, id) of a frame, as far as they can be read; "" and None where they cannot.

    The id is read even from a frame that is not valid JSON or is nested too deeply for the
    parser, when it comes before the frame's first nested value (as clients write it)."""
    try:
        head = _head_decoder.decode(raw)
        kind, request_id = _as_text(head.type) or "", _as_text(head.id)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        prefix = raw[:_PEEK_BYTES].encode() if isinstance(raw, str) else raw[:_PEEK_BYTES]
        found = _LEADING_ID.match(prefix)
        kind, request_id = "", _as_text(found.group(1)) if found else None
    if request_id is not None and len(request_id) > _MAX_ID:
        request_id = None
    return kind, request_id


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
    """Encode one server frame (`data`: the struct `SERVER_TYPES` names for `type_`)."""
    return _encoder.encode(Frame(type=type_, id=id, room=room, seq=seq, data=data))


def client_frame(type_: str, data: Any, id: str | None = None, room: str | None = None) -> bytes:
    """Encode one client frame, for the kernel side (`data`: a `CLIENT_TYPES` struct, or the
    dict a user gave, which the server then validates and names the bad field of)."""
    return _encoder.encode(Frame(type=type_, id=id, room=room, data=data))


def encode_json(value: Any) -> bytes:
    """JSON for REST bodies and relayed frames, with the same encoder as the socket."""
    return _encoder.encode(value)


def decode_json(raw: bytes | str, struct: type[msgspec.Struct]) -> Any:
    """Validate a REST body against a struct; ChatError(400) when it does not match."""
    try:
        return msgspec.json.decode(raw, type=struct)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ChatError(400, f"invalid body: {_clean(error)}") from None


def error_frame(code: int, message: str, id: str | None = None, room: str | None = None) -> bytes:
    return encode("Error", Error(message=message, code=code), id=id, room=room)
