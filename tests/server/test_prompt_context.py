"""The context policy without a model: what an answer is given to read (docs/context.md)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_llmchat.engine.prompt import cut_level
from jupyter_llmchat.engine.types import ChatTurn
from jupyter_llmchat.server.prompt_context import CONTEXT_CHARS, MESSAGE_CHARS, Question, build_context
from jupyter_llmchat.protocol import Attachment
from jupyter_llmchat.room_bus.memory_bus import MemoryRoomBus
from jupyter_llmchat.room_bus.store import HistoryStore
from support.fakes import run_now

pytestmark = pytest.mark.fast

ROOM = "class"


class Room:
    """A stored room, written message by message as the service would."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.seq = 0

    def post(self, username: str, content: str, kind: str = "user", **extra: Any) -> str:
        self.seq += 1
        message_id = f"m{self.seq}"
        author = {"username": username, "name": username.title(), "kind": kind}
        self.store.add_message(ROOM, self.seq, {"message_id": message_id, "content": content, "author": author, "created": "2026-01-05T10:00:00Z", **extra}, self.seq)
        return message_id

    def exchange(self, username: str, question: str, answer: str, **extra: Any) -> tuple[str, str]:
        asked = self.post(username, question, **extra)
        answered = self.post("model", answer, "assistant", in_reply_to=asked)
        return asked, answered

    def ask(self, username: str, prompt: str, context: str = "own", **fields: Any) -> list[ChatTurn]:
        question = Question(ROOM, username, prompt, self.seq + 1, **fields)
        return run_now(build_context(MemoryRoomBus(self.store, 0, 0), question, system_prompt="SYS", context=context, history_messages=64)).turns


@pytest.fixture
def room(tmp_path: Any) -> Room:
    store = HistoryStore(tmp_path / "h.sqlite")
    yield Room(store)
    store.close()


def test_an_answer_sees_the_askers_own_exchanges_and_not_the_room_chatter(room):
    room.exchange("ada", "What is 2 + 2?", "4.")
    room.post("bob", "Anyone up for lunch?")
    room.post("ada", "brb")  # her chat message is not a question to the model
    room.post("teacher", "Hint: exercise 5 needs a dict.", kind="bot")
    room.exchange("bob", "Capital of Peru?", "Lima.")
    assert room.ask("ada", "And 3 + 3?") == [
        ChatTurn("system", "SYS"),
        ChatTurn("user", "What is 2 + 2?"),
        ChatTurn("assistant", "4."),
        ChatTurn("user", "And 3 + 3?"),
    ]


def test_a_new_thread_forgets_earlier_exchanges_and_later_questions_stay_in_it(room):
    room.exchange("ada", "Old question", "Old answer")
    assert room.ask("ada", "Fresh start", new_thread=True) == [ChatTurn("system", "SYS"), ChatTurn("user", "Fresh start")]
    room.exchange("ada", "Fresh start", "Fresh answer", thread_start=True)
    turns = room.ask("ada", "Go on")
    assert [t.content for t in turns] == ["SYS", "Fresh start", "Fresh answer", "Go on"]


def test_a_regenerated_question_is_left_out_of_its_own_context(room):
    room.exchange("ada", "First", "One")
    asked, _ = room.exchange("ada", "Second", "Two")
    question = Question(ROOM, "ada", "Second", room.seq - 1, exclude=asked)
    turns = run_now(build_context(MemoryRoomBus(room.store, 0, 0), question, system_prompt="SYS", context="own", history_messages=64)).turns
    assert [t.content for t in turns] == ["SYS", "First", "One", "Second"]


def test_a_regenerated_answer_replaces_the_old_one_in_later_context(room):
    asked, _ = room.exchange("ada", "Q", "first try")
    room.post("model", "second try", "assistant", in_reply_to=asked, regenerates="m2")
    assert [t.content for t in room.ask("ada", "Next")] == ["SYS", "Q", "second try", "Next"]


def test_shared_context_shows_everyone_with_names_but_no_system_notes(room):
    room.post("bob", "Anyone up for lunch?")
    room.post("ada", "Ada set this room's system prompt.", kind="system")
    room.exchange("ada", "What is 2 + 2?", "4.")
    turns = room.ask("ada", "And 3 + 3?", context="shared")
    # The room is a block after the system prompt: merged into the asker's turn, the base
    # model echoed the system prompt instead of answering (bench/answers.py).
    assert turns == [
        ChatTurn("system", "SYS\n\nRecent messages in this room:\nBob: Anyone up for lunch?\nAda: What is 2 + 2?\nmodel: 4."),
        ChatTurn("user", "And 3 + 3?"),
    ]


def test_replied_and_mentioned_messages_are_quoted_with_their_speakers(room):
    lunch = room.post("bob", "Lunch at noon?")
    room.post("carol", "The dataset is in /data/train.csv")
    turns = room.ask("ada", "What file does #2 mean?", reply_to=lunch)
    assert turns[-1].content == (
        'Bob wrote: "Lunch at noon?"\nCarol wrote: "The dataset is in /data/train.csv"\n\nWhat file does #2 mean?'
    )


def test_attachments_go_to_the_model_before_the_question(room):
    """The question last, right before the answer: after the data, the base model started a new
    conversation ("user\nHi! Who are you?") in 7 of 12 sampled answers; with it last, in none."""
    error = Attachment(kind="error", label="ZeroDivisionError", text="ZeroDivisionError: division by zero")
    turns = room.ask("ada", "Why?", attachments=(error,))
    assert turns[-1].content == "[error: ZeroDivisionError]\nZeroDivisionError: division by zero\n\nWhy?"


def test_context_is_cut_by_characters_before_any_tokenizing(room):
    for i in range(40):
        room.exchange("ada", f"q{i} " + "x" * 1_000_000, "a" * 100_000)
    turns = room.ask("ada", "last")
    assert sum(len(t.content) for t in turns[1:-1]) <= CONTEXT_CHARS
    assert all(len(t.content) <= MESSAGE_CHARS for t in turns[1:-1])
    assert turns[-1].content == "last"


def test_a_private_question_sees_only_the_system_prompt(room):
    room.exchange("ada", "Q", "A")
    question = Question(None, "ada", "private?", 0)
    turns = run_now(build_context(MemoryRoomBus(room.store, 0, 0), question, system_prompt="SYS", context="own", history_messages=64)).turns
    assert turns == [ChatTurn("system", "SYS"), ChatTurn("user", "private?")]


def test_a_shared_context_reads_only_the_newest_messages_it_can_hold(room):
    for i in range(64):
        room.post("bob", f"post {i} " + "x" * 100_000)
    read: list[Any] = []
    every = room.store.messages

    def counted(*args: Any, **kwargs: Any) -> list[Any]:
        rows = every(*args, **kwargs)
        read.extend(rows)
        return rows

    room.store.messages = counted
    turns = room.ask("ada", "What now?", context="shared")
    assert "post 63 " in turns[0].content and len(read) <= 8  # not all 64 huge messages


def test_a_history_file_from_before_the_author_columns_still_gives_each_asker_their_exchanges(tmp_path):
    import json
    import sqlite3

    old = sqlite3.connect(tmp_path / "old.sqlite")
    old.executescript(
        "CREATE TABLE rooms (name TEXT PRIMARY KEY, head_seq INTEGER NOT NULL);"
        "CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL UNIQUE,"
        " data TEXT NOT NULL, PRIMARY KEY (room, seq));"
    )
    rows = [
        (1, {"message_id": "q1", "content": "What is 2 + 2?", "author": {"username": "ada", "name": "Ada", "kind": "user"}}),
        (2, {"message_id": "a1", "content": "4.", "author": {"username": "model", "name": "m", "kind": "assistant"}, "in_reply_to": "q1"}),
    ]
    old.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", [(ROOM, seq, d["message_id"], json.dumps(d)) for seq, d in rows])
    old.commit()
    old.close()
    store = HistoryStore(tmp_path / "old.sqlite")
    try:
        question = Question(ROOM, "ada", "And 3 + 3?", 3)
        turns = run_now(build_context(MemoryRoomBus(store, 0, 0), question, system_prompt="SYS", context="own", history_messages=64)).turns
        assert [t.content for t in turns] == ["SYS", "What is 2 + 2?", "4.", "And 3 + 3?"]
    finally:
        store.close()


def test_a_long_thread_loses_its_oldest_exchanges_in_blocks_so_the_next_question_starts_the_same(room):
    # Dropping the oldest exchange on every question would change the start of every
    # prompt: no question could reuse the previous one's KV state (docs/context.md).
    starts = []
    for i in range(40):
        turns = room.ask("ada", f"question {i}")
        starts.append(turns[1].content if len(turns) > 2 else None)
        room.exchange("ada", f"question {i}", f"answer {i} " + "y" * 600)
    assert sum(len(t.content) for t in turns[1:-1]) <= CONTEXT_CHARS
    past_the_limit = starts[12:]
    changes = sum(1 for a, b in zip(past_the_limit, past_the_limit[1:]) if a != b)
    assert changes <= len(past_the_limit) // 2  # one exchange a question, one start in several
    assert all(cut_level(start) >= 1 for start in past_the_limit)
