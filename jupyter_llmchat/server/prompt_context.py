"""What the model sees when someone asks in a room: the context policy (docs/context.md).

A room is shared by many people and bots; an answer given everyone's chatter as anonymous
"user" turns answers nobody (measured: the system prompt echoed back, other people's
broadcasts repeated until the token cap). So by default an answer sees only:

1. the system prompt: the room's own, else the server's;
2. the asker's own recent exchanges with the model in that room (their questions and the
   answers to them), back to the start of their current thread (`new_thread`);
3. the message the question replies to (`reply_to`) and messages it mentions as `#<seq>`,
   with their speakers' names;

A deleted message (docs/moderation.md) is never any of these: its stored row is a
tombstone without content, and every part of the context skips it.
4. the question, with any attached descriptions of kernel objects.

A room set to `context: "shared"` shows the model every recent message instead of (2),
each with its speaker's name, as a block after the system prompt. Everything is cut by
characters before any tokenizing, so a room full of huge messages costs the model no more
than a room of short ones; when something was cut the answer says so (`truncated`).

A long thread loses its oldest exchanges in blocks, at the cut points the engine also cuts
at (`engine.prompt.is_cut_point`), not one per turn: consecutive questions then start the
same way, and the model reuses the previous turn's KV state instead of evaluating the whole
thread again (docs/context.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

import msgspec

from ..engine.prompt import first_cut
from ..engine.types import ChatTurn
from ..protocol import Attachment, Author, Text
from ..room_bus.bus import RoomBus

MESSAGE_CHARS = 2000  # most characters of any one context message (its beginning is kept)
QUESTION_CHARS = 8000  # most characters of the question itself (its end is kept)
CONTEXT_CHARS = 6000  # most characters of all context messages together (newest kept)
MENTIONS = 3  # `#<seq>` references followed per question
_MENTION_RE = re.compile(r"(?<![\w#])#(\d{1,15})\b")


@dataclass(frozen=True)
class Question:
    """One question asked in a room (or privately, `room=None`)."""

    room: str | None
    username: str
    prompt: str
    before_seq: int  # context comes only from messages before this seq
    new_thread: bool = False
    reply_to: str | None = None
    attachments: Sequence[Attachment] = ()
    exclude: str | None = None  # a question id left out (the one being regenerated)


@dataclass(frozen=True)
class PromptContext:
    """The chat turns for a question, and whether anything was cut to the character limits."""

    turns: list[ChatTurn]
    cut: bool = False  # a message or the question clipped, or older messages left out
    message_ids: tuple[str, ...] = ()  # the stored messages whose text is in `turns`


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """At most `limit` characters of `text`, with a mark where it was cut."""
    if len(text) <= limit:
        return text
    mark = " […]"
    return mark.lstrip() + text[-(limit - len(mark)) :] if keep_end else text[: limit - len(mark)] + mark


def speaker(author: Author) -> str:
    return author.name or author.username or "someone"


def question_text(question: Question) -> str:
    """The question as the model reads it: the attachments, then its (clipped) text.

    The question comes last, right before the answer: after a block of data the packaged
    base model often started a new conversation instead of answering (docs/context.md)."""
    parts = [f"[{item.kind}: {item.label}]\n{item.text}" if item.label else f"[{item.kind}]\n{item.text}" for item in question.attachments]
    return "\n\n".join([*parts, clip(question.prompt, QUESTION_CHARS, keep_end=True)])


async def build_context(
    store: RoomBus,
    question: Question,
    *,
    system_prompt: str,
    context: str,
    history_messages: int,
) -> PromptContext:
    """The chat turns for `question`, oldest first, the system prompt leading."""
    cut = len(question.prompt) > QUESTION_CHARS
    if context == "shared" and question.room is not None:
        # The room goes with the system prompt, as a block the model reads before its
        # examples: merged into the asker's turn, a small base model restarts the document
        # and echoes the system prompt (bench/answers.py, shared context: 48 of 48).
        room, room_cut = await _shared_block(store, question, history_messages)
        cut |= room_cut
        system_prompt = f"{system_prompt}\n\nRecent messages in this room:\n{room}" if room else system_prompt
    turns: list[ChatTurn] = [ChatTurn("system", system_prompt)] if system_prompt else []
    if question.room is None:
        return PromptContext(turns + [ChatTurn("user", question_text(question))], cut)
    history: list[ChatTurn] = []
    ids: list[str] = []
    if context != "shared" and not question.new_thread:
        history, history_cut, ids = await _own_turns(store, question, history_messages)
        cut |= history_cut
    quoted, quoted_cut, quoted_ids = await _quoted(store, question)
    text = question_text(question)
    if quoted:
        text = "\n".join(quoted) + "\n\n" + text
    return PromptContext(turns + history + [ChatTurn("user", text)], cut or quoted_cut, tuple(ids + quoted_ids))


def _clipped(text: str) -> tuple[str, bool]:
    """A context message within MESSAGE_CHARS, and whether it had to be cut."""
    return clip(text, MESSAGE_CHARS), len(text) > MESSAGE_CHARS


async def _own_turns(store: RoomBus, question: Question, limit: int) -> tuple[list[ChatTurn], bool, list[str]]:
    """The asker's recent exchanges, back to their thread's start, within CONTEXT_CHARS;
    whether any was cut or left out; and the ids of the messages kept.

    A thread longer than the characters (or `limit`) starts at its oldest cut point that
    fits, so that it starts there for the next questions too."""
    exchanges: list[tuple[ChatTurn, ChatTurn, list[str]]] = []  # newest first
    budget = CONTEXT_CHARS
    cut = over = False
    pairs = await store.exchanges(question.room or "", question.username, before_seq=question.before_seq, limit=max(1, limit // 2))
    for asked, answer in pairs:  # newest first
        if asked.get("message_id") == question.exclude or asked.get("deleted") or answer.get("deleted"):
            if asked.get("thread_start"):
                break
            continue
        q, q_cut = _clipped(str(asked.get("content", "")))
        a, a_cut = _clipped(str(answer.get("content", "")))
        budget -= len(q) + len(a)
        if budget < 0:
            over = cut = True
            break
        cut |= q_cut or a_cut
        ids = [str(m) for m in (asked.get("message_id"), answer.get("message_id")) if m]
        exchanges.append((ChatTurn("user", q), ChatTurn("assistant", a), ids))
        if asked.get("thread_start"):
            break
    else:
        over = len(pairs) >= max(1, limit // 2)  # older exchanges may be left out by the limit
    exchanges.reverse()
    if over:
        start = first_cut([q_turn.content for q_turn, _, _ in exchanges], 0)
        exchanges = exchanges[start:]
        cut |= start > 0
    turns = [turn for q_turn, a_turn, _ in exchanges for turn in (q_turn, a_turn)]
    return turns, cut, [m for _, _, ids in exchanges for m in ids]


async def _shared_block(store: RoomBus, question: Question, limit: int) -> tuple[str, bool]:
    """Every recent message of the room as "Name: text" lines, within CONTEXT_CHARS; and
    whether any was cut or left out for the characters."""
    lines: list[str] = []
    budget = CONTEXT_CHARS
    cut = False
    async for _, data in _newest_first(store, question.room or "", question.before_seq, limit):
        kind = (data.get("author") or {}).get("kind")
        if kind == "system" or data.get("deleted") or data.get("message_id") == question.exclude:
            continue
        content, content_cut = _clipped(str(data.get("content", "")))
        line = f"{'model' if kind == 'assistant' else speaker(msgspec.convert(data['author'], Author))}: {content}"
        budget -= len(line)
        if budget < 0:
            cut = True
            break
        cut |= content_cut
        lines.insert(0, line)
    return "\n".join(lines), cut


async def _newest_first(store: RoomBus, room: str, before_seq: int, limit: int) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """Up to `limit` messages before `before_seq`, newest first, read a few at a time: a
    reader that stops once CONTEXT_CHARS are full never loads the rest (64 stored messages
    of 1 MB: 4 read, not 64)."""
    page = 4
    while limit > 0:
        rows = await store.messages(room, before_seq=before_seq, limit=min(page, limit))
        for row in reversed(rows):
            yield row
        if len(rows) < min(page, limit):
            return
        limit -= len(rows)
        before_seq = rows[0][0]
        page *= 2


async def _quoted(store: RoomBus, question: Question) -> tuple[list[str], bool, list[str]]:
    """The messages the question replies to or mentions, as lines the model can read;
    whether any was cut; and their ids."""
    room = question.room or ""
    found: list[Text] = []
    if question.reply_to:
        hit = await store.message(room, message_id=question.reply_to)
        if hit is not None and not hit[1].deleted:
            found.append(hit[1])
    for match in _MENTION_RE.findall(question.prompt)[:MENTIONS]:
        hit = await store.message(room, seq=int(match))
        if hit is not None and not hit[1].deleted and hit[1] not in found:
            found.append(hit[1])
    clipped = [_clipped(text.content) for text in found]
    lines = [f'{speaker(text.author)} wrote: "{content}"' for text, (content, _) in zip(found, clipped)]
    return lines, any(was_cut for _, was_cut in clipped), [text.message_id for text in found]
