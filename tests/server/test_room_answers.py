"""Answers in a busy room, over a real socket and the real model (docs/context.md).

What a user notices: an answer is the same whatever the others chat about, a new thread
starts clean, a regenerated answer comes without a second question, a room's own system
prompt is shown to everyone, and clearing a room empties every member's view.
"""

from __future__ import annotations

from typing import Any


async def ask(client: Any, room: str, prompt: str, **data: Any) -> tuple[dict[str, Any], str]:
    """Ask in `room`; returns (the final Token's data, the answer's text)."""
    await client.send("Generate", {"prompt": prompt, "config": {"max_tokens": 6}, **data}, room=room)
    ack = await client.recv_type("Ack")
    tokens = await client.answer(ack["data"]["message_id"])
    return tokens[-1]["data"], "".join(t["data"]["text"] for t in tokens)


async def test_other_peoples_chatter_does_not_reach_an_answer(chat_server, connect, api):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("quiet")
    quiet, quiet_text = await ask(ada, "quiet", "Name a planet.")

    await ada.join("busy")
    await bob.join("busy")
    for i in range(5):
        await bob.send("Text", {"content": f"Lunch plan {i}: pizza, then the exercise sheet."}, room="busy")
        await api("POST", "rooms", "busy", "messages", body={"content": f"training: epoch {i}/5 done"})
    busy, busy_text = await ask(ada, "busy", "Name a planet.")
    assert busy["usage"]["prompt_tokens"] == quiet["usage"]["prompt_tokens"]
    assert busy_text == quiet_text

    # A second question carries Ada's own first exchange; a new thread does not.
    second, _ = await ask(ada, "busy", "Name another one.")
    fresh, _ = await ask(ada, "busy", "Name another one.", new_thread=True)
    assert second["usage"]["prompt_tokens"] > fresh["usage"]["prompt_tokens"]
    status, history = await api("GET", "rooms", "busy", "messages")
    questions = [m["data"] for m in history["messages"] if m["data"]["content"] == "Name another one."]
    assert [q.get("thread_start", False) for q in questions] == [False, True]


async def test_shared_context_lets_the_model_read_the_room(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("team")
    await bob.join("team")
    own, _ = await ask(ada, "team", "Summarise.")
    await bob.send("Text", {"content": "The deadline moved to Friday."}, room="team")
    await ada.send("RoomSettings", {"context": "shared"}, room="team")
    reply = await ada.recv_type("RoomSettings")
    assert reply["data"]["context"] == "shared"
    note = await bob.recv_type("Text")
    while note["data"]["author"]["kind"] != "system":
        note = await bob.recv_type("Text")
    assert note["data"]["author"]["username"] == "ada" and note["data"]["settings"]["context"] == "shared"
    shared, _ = await ask(ada, "team", "Summarise.")
    assert shared["usage"]["prompt_tokens"] > own["usage"]["prompt_tokens"] + 5


PIRATE = (
    "You are a pirate captain on the seven seas. Answer every question like a pirate would, "
    "with plenty of arr and matey, and mention the sea, your ship and your parrot whenever you can."
)


async def test_a_rooms_own_system_prompt_is_used_and_shown_to_newcomers(chat_server, connect, api):
    ada = await connect("tok-ada")
    await ada.join("pirates")
    plain, _ = await ask(ada, "pirates", "Hello?", new_thread=True)
    status, settings = await api("PUT", "rooms", "pirates", body={"system_prompt": PIRATE})
    assert status == 200 and settings["system_prompt"].startswith("You are a pirate")
    pirate, _ = await ask(ada, "pirates", "Hello?", new_thread=True)
    assert pirate["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]

    bob = await connect("tok-bob")
    joined = await bob.join("pirates")
    assert joined["data"]["settings"] == {
        "system_prompt": settings["system_prompt"], "context": "own", "announce_only": False, "model_answers": True,
    }
    status, info = await api("GET", "rooms", "pirates")
    assert info["settings"] == joined["data"]["settings"]
    status, bad = await api("PUT", "rooms", "pirates", body={"context": "everyone"})
    assert status == 400


async def test_regenerate_answers_the_same_question_again_without_reposting_it(chat_server, connect, api):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("regen")
    first, _ = await ask(ada, "regen", "Name a colour.")
    status, history = await api("GET", "rooms", "regen", "messages")
    question, answer = [m["data"] for m in history["messages"]]
    again, _ = await ask(ada, "regen", "ignored", regenerate=answer["message_id"])
    assert again["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"]  # same question, same context
    status, history = await api("GET", "rooms", "regen", "messages")
    stored = [m["data"] for m in history["messages"]]
    assert [m["author"]["kind"] for m in stored] == ["user", "assistant", "assistant"]
    assert stored[2]["in_reply_to"] == question["message_id"]
    assert stored[2]["regenerates"] == answer["message_id"]

    await bob.join("regen")
    request = await bob.send("Generate", {"prompt": "x", "regenerate": answer["message_id"]}, room="regen")
    error = await bob.recv_type("Error")
    assert error["id"] == request and error["data"]["code"] == 403
    request = await ada.send("Generate", {"prompt": "x", "regenerate": "m-nope"}, room="regen")
    error = await ada.recv_type("Error")
    assert error["id"] == request and error["data"]["code"] == 404


async def test_attachments_reach_the_model_but_only_their_summary_is_stored(chat_server, connect, api):
    ada = await connect("tok-ada")
    await ada.join("kernel")
    trace = "Traceback (most recent call last):\n  File \"<cell>\", line 1\nZeroDivisionError: division by zero"
    bare, _ = await ask(ada, "kernel", "Why did this fail?", new_thread=True)
    attached, _ = await ask(
        ada, "kernel", "Why did this fail?", new_thread=True,
        attachments=[{"kind": "error", "label": "ZeroDivisionError", "text": trace}],
    )
    assert attached["usage"]["prompt_tokens"] > bare["usage"]["prompt_tokens"] + 10
    status, history = await api("GET", "rooms", "kernel", "messages")
    stored = history["messages"][-2]["data"]
    assert stored["attachments"] == [{"kind": "error", "label": "ZeroDivisionError", "chars": len(trace)}]
    assert "division by zero" not in str(history)


async def test_clearing_a_room_empties_every_members_view(chat_server, connect, api):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("scratch")
    await bob.join("scratch")
    await ada.send("Text", {"content": "secret draft"}, room="scratch")
    text = await bob.recv_type("Text")
    status, body = await api("DELETE", "rooms", "scratch", "messages", token="tok-bob")
    assert status == 200 and body["deleted"] == 1
    reset = await ada.recv_type("Reset")
    assert reset["data"]["head_seq"] >= text["seq"]
    history = await ada.recv_type("History")
    assert history["data"]["messages"] == []
    status, page = await api("GET", "rooms", "scratch", "messages")
    assert page["messages"] == []
    # seq goes on: nothing is ever numbered twice
    await ada.send("Text", {"content": "after"}, room="scratch")
    after = await bob.recv_type("Text")
    assert after["seq"] > text["seq"]
    status, _ = await api("DELETE", "rooms", "never-used", "messages")
    assert status == 404


async def test_a_long_conversation_ends_every_answer_at_the_models_turn(chat_server, connect):
    # Multi-turn in one room used to run every answer from the third on to the token cap,
    # through the model's own turn markers and junk ("mendatanguser").
    ada = await connect("tok-ada")
    await ada.join("long")
    markers = [text for text in chat_server.backend._sched._stop_texts if text.startswith("<")]
    assert "<end_of_turn>" in markers and "<start_of_turn>" in markers
    questions = ["What is 2 + 3?", "What is the capital of France?", "What color is the sky?", "Name a fruit.",
                 "What is Python?", "Who wrote Hamlet?", "What is the opposite of hot?", "Name a planet."]
    for question in questions:
        await ada.send("Generate", {"prompt": question, "config": {"max_tokens": 64}}, room="long")
        ack = await ada.recv_type("Ack")
        tokens = await ada.answer(ack["data"]["message_id"])
        text = "".join(t["data"]["text"] for t in tokens)
        assert tokens[-1]["data"]["finish_reason"] == "stop", (question, text)
        assert text.strip() and not any(m in text for m in markers) and "\nuser" not in text, (question, text)
