"""What the model sees when someone asks in a room: the context policy (docs/context.md).

A room is shared by many people and bots; an answer given everyone's chatter as anonymous
"user" turns answers nobody (measured: the system prompt echoed back, other people's
broadcasts repeated until the token cap). So by default an answer sees only:

1. the system prompt: the room's own, else the server's;
2. the asker's own recent exchanges with the model in that room (their questions and the
   answers to them), back to the start of their current thread (`new_thread`);
3. the message the question replies to (`reply_to`) and messages it mentions as `#<seq>`,
   with their speakers' names;
4. the question, with any attached descriptions of kernel objects.

A room set to `context: "shared"` shows the model every recent message instead of (2),
each with its speaker's name, as a block after the system prompt. Everything is cut by characters before any tokenizing, so a
room full of huge messages costs the model no more than a room of short ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..engine.types import ChatTurn
from ..protocol import Attachment
from .room_bus import RoomBus

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


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """At most `limit` characters of `text`, with a mark where it was cut."""
    if len(text) <= limit:
        return text
    mark = " […]"
    return mark.lstrip() + text[-(limit - len(mark)) :] if keep_end else text[: limit - len(mark)] + mark


def speaker(data: dict[str, Any]) -> str:
    author = data.get("author") or {}
    return str(author.get("name") or author.get("username") or "someone")


def question_text(question: Question) -> str:
    """The question as the model reads it: its (clipped) text and the attachments."""
    text = clip(question.prompt, QUESTION_CHARS, keep_end=True)
    for item in question.attachments:
        text += f"\n\n[{item.kind}: {item.label}]\n{item.text}" if item.label else f"\n\n[{item.kind}]\n{item.text}"
    return text


async def build_turns(
    store: RoomBus,
    question: Question,
    *,
    system_prompt: str,
    context: str,
    history_messages: int,
) -> list[ChatTurn]:
    """The chat turns for `question`, oldest first, the system prompt leading."""
    if context == "shared" and question.room is not None:
        # The room goes with the system prompt, as a block the model reads before its
        # examples: merged into the asker's turn, a small base model restarts the document
        # and echoes the system prompt (bench/answers.py, shared context: 48 of 48).
        room = await _shared_block(store, question, history_messages)
        system_prompt = f"{system_prompt}\n\nRecent messages in this room:\n{room}" if room else system_prompt
    turns: list[ChatTurn] = [ChatTurn("system", system_prompt)] if system_prompt else []
    if question.room is None:
        return turns + [ChatTurn("user", question_text(question))]
    if context == "shared":
        history = []
    elif question.new_thread:
        history = []
    else:
        history = await _own_turns(store, question, history_messages)
    quoted = await _quoted(store, question)
    text = question_text(question)
    if quoted:
        text = "\n".join(quoted) + "\n\n" + text
    return turns + history + [ChatTurn("user", text)]


async def _own_turns(store: RoomBus, question: Question, limit: int) -> list[ChatTurn]:
    """The asker's recent exchanges, back to their thread's start, within CONTEXT_CHARS."""
    turns: list[ChatTurn] = []
    budget = CONTEXT_CHARS
    pairs = await store.exchanges(question.room or "", question.username, before_seq=question.before_seq, limit=max(1, limit // 2))
    for asked, answer in pairs:  # newest first
        if asked.get("message_id") == question.exclude:
            if asked.get("thread_start"):
                break
            continue
        q = clip(str(asked.get("content", "")), MESSAGE_CHARS)
        a = clip(str(answer.get("content", "")), MESSAGE_CHARS)
        budget -= len(q) + len(a)
        if budget < 0:
            break
        turns[:0] = [ChatTurn("user", q), ChatTurn("assistant", a)]
        if asked.get("thread_start"):
            break
    return turns


async def _shared_block(store: RoomBus, question: Question, limit: int) -> str:
    """Every recent message of the room as "Name: text" lines, within CONTEXT_CHARS."""
    lines: list[str] = []
    budget = CONTEXT_CHARS
    for _, data in reversed(await store.messages(question.room or "", before_seq=question.before_seq, limit=limit)):
        kind = (data.get("author") or {}).get("kind")
        if kind == "system" or data.get("message_id") == question.exclude:
            continue
        line = f"{'model' if kind == 'assistant' else speaker(data)}: {clip(str(data.get('content', '')), MESSAGE_CHARS)}"
        budget -= len(line)
        if budget < 0:
            break
        lines.insert(0, line)
    return "\n".join(lines)


async def _quoted(store: RoomBus, question: Question) -> list[str]:
    """The messages the question replies to or mentions, as lines the model can read."""
    room = question.room or ""
    found: list[dict[str, Any]] = []
    if question.reply_to:
        hit = await store.message(room, message_id=question.reply_to)
        if hit is not None:
            found.append(hit[1])
    for match in _MENTION_RE.findall(question.prompt)[:MENTIONS]:
        hit = await store.message(room, seq=int(match))
        if hit is not None and hit[1] not in found:
            found.append(hit[1])
    return [f'{speaker(data)} wrote: "{clip(str(data.get("content", "")), MESSAGE_CHARS)}"' for data in found]
