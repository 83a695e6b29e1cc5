"""Streaming answers from the shared model over a real socket (docs/protocol.md)."""

from __future__ import annotations


import pytest


async def test_generate_in_a_room_streams_to_every_member_and_is_stored(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    model = ada.welcome["data"]["model"]  # the real one (the fast tier's servers have the stand-in)
    assert model["loaded"] is True and model["name"].startswith("gemma-3-270m")
    await ada.join("general")
    await bob.join("general")
    request = await ada.send("Generate", {"prompt": "What is Jupyter?", "config": {"max_tokens": 6}}, room="general")
    ack = await ada.recv_type("Ack")
    assert ack["id"] == request and ack["data"]["queue_position"] == 0
    message_id = ack["data"]["message_id"]

    prompt = await bob.recv_type("Text")
    assert prompt["data"]["content"] == "What is Jupyter?"
    assert prompt["data"]["author"] == {"username": "ada", "name": "Ada Lovelace", "kind": "user"}

    ada_tokens, bob_tokens = await ada.answer(message_id), await bob.answer(message_id)
    assert ada_tokens == bob_tokens
    seqs = [t["seq"] for t in ada_tokens]
    assert seqs == list(range(prompt["seq"] + 1, prompt["seq"] + 1 + len(seqs)))
    assert [t["data"]["index"] for t in ada_tokens] == list(range(len(ada_tokens)))
    final = ada_tokens[-1]["data"]
    assert final["is_final"] and final["finish_reason"] in ("stop", "length")
    assert 0 < final["usage"]["completion_tokens"] <= 6
    assert final["usage"]["prompt_tokens"] > 5
    assert set(final["timings"]) >= {"queue_ms", "ttft_ms", "tokens_per_second"}
    answer = "".join(t["data"]["text"] for t in ada_tokens)
    assert answer.strip()

    await bob.send("History", room="general")
    history = (await bob.recv_type("History"))["data"]["messages"]
    assert [m["data"]["author"]["kind"] for m in history] == ["user", "assistant"]
    assert history[1]["data"]["message_id"] == message_id
    assert history[1]["data"]["content"] == answer
    assert history[1]["seq"] == seqs[0]


async def test_private_completion_reaches_only_the_requester(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await bob.join("general")
    request = await ada.send("Generate", {"prompt": "Say hi", "config": {"max_tokens": 4}})
    ack = await ada.recv_type("Ack")
    tokens = await ada.answer(ack["data"]["message_id"])
    assert all(t["id"] == request and "seq" not in t and "room" not in t for t in tokens)
    await bob.send("Ping", id="p")
    assert (await bob.recv_type("Pong", "Token"))["type"] == "Pong"


async def test_greedy_answers_are_reproducible(chat_server, connect):
    client = await connect()
    texts = []
    for _ in range(2):
        await client.send("Generate", {"prompt": "Name a planet.", "config": {"max_tokens": 6, "temperature": 0}})
        ack = await client.recv_type("Ack")
        texts.append("".join(t["data"]["text"] for t in await client.answer(ack["data"]["message_id"])))
    assert texts[0] == texts[1] and texts[0]


async def test_cancel_stops_the_answer_and_only_its_owner_may(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("general")
    await bob.join("general")
    await ada.send("Generate", {"prompt": "Tell me a long story.", "config": {"max_tokens": 400}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    await ada.recv_type("Token")
    await bob.send("Cancel", {"message_id": message_id}, id="bob-cancel")
    refused = await bob.recv_type("Error")
    assert refused["id"] == "bob-cancel" and refused["data"]["code"] == 403
    await ada.send("Cancel", {"message_id": message_id})
    tokens = await ada.answer(message_id)
    final = tokens[-1]["data"]
    assert final["finish_reason"] == "cancelled"
    assert final["usage"]["completion_tokens"] < 400
    await ada.send("Cancel", {"message_id": message_id}, id="again")
    assert (await ada.recv_type("Error"))["data"]["code"] == 409


async def test_a_retried_generate_is_not_run_twice(chat_server, connect):
    client = await connect()
    await client.join("general")
    data = {"prompt": "Hello", "config": {"max_tokens": 3}}
    await client.send("Generate", data, room="general", id="same-id")
    first = await client.recv_type("Ack")
    await client.send("Generate", data, room="general", id="same-id")
    second = await client.recv_type("Ack")
    assert first == second
    await client.answer(first["data"]["message_id"])
    await client.send("History", room="general")
    history = (await client.recv_type("History"))["data"]["messages"]
    assert [m["data"]["content"] for m in history if m["data"]["author"]["kind"] == "user"] == ["Hello"]


@pytest.mark.parametrize("llmchat_config", [{"parallel": 1, "max_queue": 2, "owner_queue_reserve": 0}])
async def test_second_user_is_queued_not_refused_until_the_queue_is_full(chat_server, connect, llmchat_config):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.send("Generate", {"prompt": "Count to ten.", "config": {"max_tokens": 24}})
    first = await ada.recv_type("Ack")
    await bob.send("Generate", {"prompt": "Hi", "config": {"max_tokens": 2}})
    second = await bob.recv_type("Ack")
    assert first["data"]["queue_position"] == 0
    assert second["data"]["queue_position"] == 1
    await bob.send("Generate", {"prompt": "Hi again", "config": {"max_tokens": 2}})
    assert (await bob.recv_type("Ack"))["data"]["queue_position"] == 2
    await bob.send("Generate", {"prompt": "One too many", "config": {"max_tokens": 2}})
    assert (await bob.recv_type("Error"))["data"]["code"] == 429
    finals = await bob.answer(second["data"]["message_id"])
    assert finals[-1]["data"]["timings"]["queue_ms"] > 0
    await ada.answer(first["data"]["message_id"])


async def test_the_answer_goes_on_when_its_requester_drops(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("general")
    await bob.join("general")
    await ada.send("Generate", {"prompt": "Describe the sea.", "config": {"max_tokens": 12}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    ada.close()
    tokens = await bob.answer(message_id)
    assert tokens[-1]["data"]["finish_reason"] in ("stop", "length")


async def test_a_member_joining_mid_answer_gets_its_tokens_so_far(chat_server, connect):
    ada = await connect("tok-ada")
    await ada.join("general")
    await ada.send("Generate", {"prompt": "Write a poem.", "config": {"max_tokens": 40}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    await ada.recv_type("Token")
    await ada.recv_type("Token")
    bob = await connect("tok-bob")
    await bob.join("general")
    assert (await bob.recv())["type"] == "History"
    tokens = await bob.answer(message_id)
    assert [t["data"]["index"] for t in tokens] == list(range(len(tokens)))
    seqs = [t["seq"] for t in tokens]
    assert seqs == sorted(set(seqs))
    ada_rest = await ada.answer(message_id)
    assert tokens[-len(ada_rest):] == ada_rest


@pytest.mark.parametrize("llmchat_config", [{"model_path": "/nonexistent/model.gguf"}])
async def test_a_model_that_fails_to_load_gives_503_with_the_reason(chat_server, connect, llmchat_config):
    client = await connect()
    model = client.welcome["data"]["model"]
    assert model["loaded"] is False and "nonexistent" in model["error"]
    await client.send("Generate", {"prompt": "hi"})
    error = await client.recv_type("Error")
    assert error["data"]["code"] == 503 and "nonexistent" in error["data"]["message"]
    await client.send("Ping", id="alive")
    assert (await client.recv())["type"] == "Pong"


async def test_an_over_long_question_is_answered_and_said_to_be_cut_live_and_in_history(chat_server, connect):
    ada = await connect("tok-ada")
    await ada.join("general")
    numbers = " ".join(str(1000 + i) for i in range(1400))[:7000]  # within the 8,000 characters, ~2,800 tokens
    await ada.send("Generate", {"prompt": f"{numbers}\nWhat is the capital of Italy?", "config": {"max_tokens": 6}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    tokens = await ada.answer(message_id)
    final = tokens[-1]["data"]
    assert final["truncated"] is True and final["finish_reason"] in ("stop", "length")
    assert final["usage"]["prompt_tokens"] <= 4096 // 4  # the prompt budget: n_ctx // parallel
    assert "".join(t["data"]["text"] for t in tokens).strip()
    await ada.send("History", room="general")
    stored = (await ada.recv_type("History"))["data"]["messages"][-1]["data"]
    assert stored["message_id"] == message_id and stored["truncated"] is True
