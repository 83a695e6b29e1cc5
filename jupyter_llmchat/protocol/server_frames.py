"""What the server sends: the struct of each server frame's `data`, named after its type.

Field order is the order on the wire. `omit_defaults` structs leave out a field equal to its
default (an optional one); every other field is always written, `null` included. The
TypeScript types of js/src/wire.ts are generated from these (scripts/gen_wire_ts.py).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .client_frames import ContextMode

__all__ = [
    "AuthorKind", "FinishReason", "ModelState", "Person", "Me", "Author", "RoomSettings", "MuteNotice", "Deleted", "Edited", "ServerVersion", "ModelSummary",
    "MEMBERS_SHOWN", "Limits", "Welcome", "Joined", "Left", "Presence", "AttachmentSummary", "Text", "Usage", "Timings",
    "Token", "Ack", "History", "Reset", "RoomCounts", "Stats", "Pong", "Error", "Custom", "Binary",
    "KVDisk", "SERVER_TYPES", "OPEN_PARTS",
]

AuthorKind = Literal["user", "assistant", "bot", "system"]
FinishReason = Literal["stop", "length", "cancelled", "error"]


class Person(msgspec.Struct):
    """A user as Jupyter Server authenticated them (`Welcome.user`, room members)."""

    username: str
    name: str


class Me(Person):
    """`Welcome.user`: the connection's own user, and whether they moderate this server's rooms."""

    moderator: bool = False


class Author(Person):
    """Who wrote a room event: a person, the model, a script ("bot") or the server ("system")."""

    kind: AuthorKind


class RoomSettings(msgspec.Struct, frozen=True):
    """A room's own settings in force; `system_prompt` "" means the server's."""

    system_prompt: str
    context: ContextMode
    announce_only: bool = False  # only moderators post `Text`; everyone may still ask privately
    model_answers: bool = True  # false: nobody gets answers in this room (an exam)


class ServerVersion(msgspec.Struct):
    version: str


ModelState = Literal["resolving", "downloading", "loading", "loaded", "failed"]


class ModelSummary(msgspec.Struct):
    """`Welcome.model` (and the first fields of `Stats.model`): which model, and how far it is.

    `reference`: the `model` setting as resolved (e.g. hf:ORG/REPO:Q4_K_M; "" = the packaged
    model). `progress` (0-1) while downloading or loading, else null; `detail` says what is
    happening, for people ("downloading x.gguf: 43 %"); `error` is null unless `failed`.
    """

    name: str
    loaded: bool
    n_ctx: int
    parallel: int
    reference: str
    state: ModelState
    progress: float | None
    detail: str
    error: str | None


class Limits(msgspec.Struct):
    """Every limit a client may want to respect (docs/protocol.md, Limits and close codes)."""

    message_size_limit: int
    max_tokens: int
    max_connections: int
    max_connections_per_user: int
    rate_limit: float
    rate_limit_burst: int
    replay_events: int
    max_binary_bytes: int
    connection_timeout: float


class Welcome(msgspec.Struct):
    client_id: str
    user: Me
    protocol: str
    server: ServerVersion
    model: ModelSummary
    limits: Limits


MEMBERS_SHOWN = 100  # members listed in `Joined` / `Left`; `count` is the true number


class Joined(msgspec.Struct):
    """`members`: the first MEMBERS_SHOWN distinct users (REST pages through the rest)."""

    seq: int
    epoch: str | None
    count: int
    members: list[Person]
    settings: RoomSettings
    muted_until: str | None = None  # the joining user is muted in this room until then (ISO-8601 UTC)


class Left(msgspec.Struct):
    seq: int
    epoch: str | None
    count: int
    members: list[Person]


class Presence(msgspec.Struct):
    """Who arrived and who went since the last `Presence`, never the whole list: a room
    of N members joining must not cost N^3 bytes. `count`: distinct users present now."""

    joined: list[Person]
    left: list[Person]
    count: int


class AttachmentSummary(msgspec.Struct):
    """What a stored question shows of an attachment: never its text."""

    kind: str
    label: str
    chars: int


class MuteNotice(msgspec.Struct):
    """On a system `Text` saying a user was muted: who, and until when (None: unmuted)."""

    username: str
    until: str | None


class Text(msgspec.Struct, omit_defaults=True):
    """A room message; answers, questions and settings changes add their own fields."""

    message_id: str
    content: str
    author: Author
    created: str
    in_reply_to: str | None = None  # an answer: the question it answers
    finish_reason: FinishReason | None = None  # an answer: how it ended
    regenerates: str | None = None  # an answer asked again: the answer it replaces
    error: str | None = None  # an answer that ended with "error": why
    truncated: bool = False  # an answer whose prompt was cut to fit: part of the conversation left out
    thread_start: bool = False  # a question that starts a fresh thread
    reply_to: str | None = None  # a question that replies to another message
    attachments: list[AttachmentSummary] | None = None  # a question asked with kernel context
    settings: RoomSettings | None = None  # a system message: the settings now in force
    mute: MuteNotice | None = None  # a system message: who was muted, until when
    edited: str | None = None  # when its author last edited it (ISO-8601 UTC)
    deleted: bool = False  # a removed message's tombstone: its content is gone


class Deleted(msgspec.Struct):
    """A room event: the message was removed; history and replay show it as a tombstone."""

    message_id: str


class Edited(msgspec.Struct):
    """A room event: the author replaced the message's content at `edited` (ISO-8601 UTC)."""

    message_id: str
    content: str
    edited: str


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Timings(msgspec.Struct, omit_defaults=True):
    queue_ms: float | None = None
    ttft_ms: float | None = None
    tokens_per_second: float | None = None


class Token(msgspec.Struct, omit_defaults=True):
    """One piece of an answer; the final one (`is_final`) says how it ended and what it cost."""

    message_id: str
    index: int
    text: str
    is_final: bool
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    error: str | None = None  # finish_reason "error": why
    truncated: bool = False  # the prompt was cut to fit: part of the conversation left out


class Ack(msgspec.Struct):
    """A `Generate` was queued; `queue_position` 0: decoding starts now."""

    message_id: str
    queue_position: int


class History(msgspec.Struct):
    """Stored messages as `Text` room events (`{type, room, seq, data}`), oldest first.

    The rows are passed on as stored, not decoded into `Text`: they were built as `Text`
    when they were sent, and decoding them again would cost a conversion per row on every
    Join and could only lose what another version of the server stored with them.
    """

    messages: list[dict[str, Any]]
    head_seq: int
    epoch: str | None


class Reset(msgspec.Struct):
    head_seq: int


class RoomCounts(msgspec.Struct):
    count: int
    members: dict[str, int]


class Stats(msgspec.Struct):
    """Traffic, rooms and the model; `model` is whatever the model backend reports (open)."""

    active_connections: int
    messages_received: int
    messages_sent: int
    bytes_received: int
    bytes_sent: int
    uptime_seconds: float
    rooms: RoomCounts
    model: dict[str, Any]


class Pong(msgspec.Struct):
    pass


class Error(msgspec.Struct):
    message: str
    code: int


class Custom(msgspec.Struct):
    """A `Custom` relayed to the room, with who sent it."""

    kind: str
    payload: Any
    author: Author


class Binary(msgspec.Struct):
    """A `Binary` attachment relayed to the room: its decoded `size` and who sent it."""

    data: str
    mime_type: str
    size: int
    author: Author


class KVDisk(msgspec.Struct):
    """`Stats.model.kv_disk` (the llama.cpp backend): threads' KV states saved on disk.

    `hits`: restores used; `misses`: prompts that looked on disk for a longer prefix than
    memory held and found none."""

    bytes: int
    files: int
    hits: int
    misses: int


# Parts of an open field (`Stats.model`) whose shape is still fixed: typed for the widget too.
OPEN_PARTS: tuple[type[msgspec.Struct], ...] = (KVDisk,)

# Server -> client types and the struct of their `data` (each named after its type).
SERVER_TYPES: dict[str, type[msgspec.Struct]] = {
    struct.__name__: struct
    for struct in (
        Welcome, Joined, Left, Presence, Text, Token, Ack, History, Reset, Stats, Pong, Error, RoomSettings, Custom, Binary,
        Deleted, Edited,
    )
}
