"""An answer in progress is stored as far as it got, so a crash keeps it (server/answers.py);
while it streams, readers see its tokens, never that row as well."""

from __future__ import annotations

import pytest
from support.fakes import ADA, BOB

from jupyter_llmchat.server import answers
from jupyter_llmchat.server.messages import INTERRUPTED

pytestmark = pytest.mark.fast

WORDS = tuple(f" w{i}" for i in range(12))  # cut at the fast tier's max_tokens, 8


async def test_a_streaming_answer_is_stored_interrupted_and_shown_once(make_chat, monkeypatch):
    monkeypatch.setattr(answers, "PERSIST_EVERY", 0.02)
    chat = make_chat(standin={"words": WORDS, "delay": 0.01})
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("class")
    ada.send("Generate", {"prompt": "Count"}, room="class")
    await chat.settle(until=lambda: len(ada.tokens()) >= 6)
    message_id = ada.one("Ack")["data"]["message_id"]
    # What a kill -9 now would leave in the file: the answer so far, marked like a shutdown's.
    row = chat.bus.store.message("class", message_id=message_id)[1]
    streamed = "".join(t["data"]["text"] for t in ada.answer(message_id))
    assert row["finish_reason"] == "error" and row["error"] == INTERRUPTED
    assert row["content"] and streamed.startswith(row["content"])
    # A member joining now gets the question in History and the answer as its tokens: once.
    bob.send("Join", {}, room="class")
    await chat.settle(until=lambda: any(f["type"] == "History" for f in bob.inbox))
    history = bob.one("History")["data"]["messages"]
    assert [m["data"]["author"]["kind"] for m in history] == ["user"]
    assert (await chat.service.history_data("class")).messages == history  # REST pages alike
    await chat.settle()
    stored = chat.stored("class")
    assert [m["author"]["kind"] for m in stored] == ["user", "assistant"]  # replaced, not added
    assert stored[1]["finish_reason"] == "length" and stored[1].get("error") is None
    assert stored[1]["content"] == "".join(t["data"]["text"] for t in bob.answer(message_id)) == "".join(WORDS[:8])
