"""Answers without a model (server/answers.py, docs/context.md): what is asked of the model
backend, where its tokens go, what is stored, and who may stop or redo an answer. The
stand-in answers "Hello from the stand-in." in five tokens and records every request."""

from __future__ import annotations

import asyncio

import pytest
from support.fakes import ADA, BOB, EVE, ENGINE

from jupyter_llmchat.engine.types import ChatTurn, EngineSettings
from jupyter_llmchat.protocol import GenerateData
from jupyter_llmchat.server.connection import Identity
from jupyter_llmchat.server.prompt_context import QUESTION_CHARS

pytestmark = pytest.mark.fast

ANSWER = "Hello from the stand-in."


async def test_a_room_answer_follows_its_question_reaches_every_member_and_is_stored(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("general")
    await bob.join("general")
    ada.take(), bob.take()
    request = ada.send("Generate", {"prompt": "Hi?"}, room="general")
    await chat.settle()
    ack = ada.one("Ack")
    assert ack["id"] == request and ack["data"]["queue_position"] == 0
    message_id = ack["data"]["message_id"]
    question = bob.one("Text")
    assert question["data"]["content"] == "Hi?"
    assert question["data"]["author"] == {"username": "ada", "name": "Ada Lovelace", "kind": "user"}
    tokens = bob.answer(message_id)
    assert tokens == ada.answer(message_id)
    assert [t["seq"] for t in tokens] == list(range(question["seq"] + 1, question["seq"] + 7))
    assert [t["data"]["index"] for t in tokens] == list(range(6))
    final = tokens[-1]["data"]
    assert final["is_final"] and final["finish_reason"] == "stop" and final["usage"]["completion_tokens"] == 5
    assert "".join(t["data"]["text"] for t in tokens) == ANSWER

    stored_question, stored_answer = chat.stored("general")
    assert stored_question == question["data"]
    assert stored_answer["message_id"] == message_id and stored_answer["content"] == ANSWER
    assert stored_answer["author"] == {"username": "model", "name": "stand-in", "kind": "assistant"}
    assert stored_answer["in_reply_to"] == question["data"]["message_id"]
    assert stored_answer["finish_reason"] == "stop"
    assert (await chat.bus.message("general", message_id=message_id))[0] == tokens[0]["seq"]  # stored at its first token


async def test_a_private_answer_reaches_only_its_asker_and_is_not_stored(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await bob.join("general")
    bob.take()
    request = ada.send("Generate", {"prompt": "Just me"})
    await chat.settle()
    message_id = ada.one("Ack")["data"]["message_id"]
    tokens = ada.answer(message_id)
    assert len(tokens) == 6 and all(t["id"] == request and "seq" not in t and "room" not in t for t in tokens)
    assert bob.inbox == [] and await chat.bus.room_list() == [{"room": "general", "members": 1, "head_seq": 1}]
    (asked,) = chat.backend.requests
    assert asked.turns == [ChatTurn("system", "SYS"), ChatTurn("user", "Just me")] and asked.cache_key is None


async def test_a_retried_generate_gets_its_first_ack_and_runs_once(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("general")
    await bob.join("general")
    ada.take()
    for _ in range(2):
        ada.send("Generate", {"prompt": "Hello"}, room="general", id="same-id")
    bob.send("Generate", {"prompt": "Hello"}, room="general", id="same-id")  # another user's id is their own
    await chat.settle()
    first, second = ada.take("Ack")
    assert first == second
    assert bob.one("Ack")["data"]["message_id"] != first["data"]["message_id"]
    assert len(chat.backend.requests) == 2
    assert [m["content"] for m in chat.stored("general") if m["author"]["kind"] == "user"] == ["Hello", "Hello"]


async def ask_with_id(chat, client, request_id: str) -> list[dict]:
    """Generate (private) with this id, settle; the Ack, Error and Token frames received."""
    client.send("Generate", {"prompt": "Hello"}, id=request_id)
    await chat.settle()
    return client.take("Ack", "Error", "Token")


async def test_a_generate_id_reused_after_its_answer_ended_gets_409_not_a_silent_ack(chat):
    ada = chat.client(ADA)
    first = await ask_with_id(chat, ada, "again")
    assert first[0]["type"] == "Ack" and first[-1]["data"]["is_final"]  # answered in full
    (refused,) = await ask_with_id(chat, ada, "again")  # not an Ack that nothing follows
    assert (refused["type"], refused["id"], refused["data"]["code"]) == ("Error", "again", 409)
    assert "already answered" in refused["data"]["message"] and "new id" in refused["data"]["message"]
    assert len(chat.backend.requests) == 1


async def test_a_generate_id_is_forgotten_after_generate_id_window(make_chat):
    chat = make_chat(generate_id_window=0.3)
    ada = chat.client(ADA)
    first = await ask_with_id(chat, ada, "again")
    await asyncio.sleep(0.35)
    again = await ask_with_id(chat, ada, "again")  # asked anew
    assert again[0]["type"] == "Ack" and again[0]["data"]["message_id"] != first[0]["data"]["message_id"]
    assert "".join(f["data"]["text"] for f in again[1:]) == ANSWER and again[-1]["data"]["finish_reason"] == "stop"
    assert len(chat.backend.requests) == 2


async def test_only_the_asker_may_cancel_and_only_while_it_runs(make_chat):
    chat = make_chat(standin={"delay": 0.02})  # a token every 20 ms: the test acts between two
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("general")
    await bob.join("general")
    ada.send("Generate", {"prompt": "Tell me a long story."}, room="general")
    await chat.settle(until=lambda: len(ada.tokens()) == 2)
    message_id = ada.one("Ack")["data"]["message_id"]
    for client, cancelled, code in ((bob, message_id, 403), (ada, "m-none", 404)):
        request = client.send("Cancel", {"message_id": cancelled})
        await chat.flush()
        error = client.one("Error")
        assert error["id"] == request and error["data"]["code"] == code
    ada.send("Cancel", {"message_id": message_id})
    await chat.settle()
    final = ada.answer(message_id)[-1]["data"]
    assert final["finish_reason"] == "cancelled" and final["usage"]["completion_tokens"] == 2
    assert chat.stored("general")[-1]["content"] == "Hello from"
    assert chat.stored("general")[-1]["finish_reason"] == "cancelled"
    for client, code in ((ada, 409), (bob, 403)):  # finished: the asker hears why, others still may not
        client.send("Cancel", {"message_id": message_id})
        await chat.flush()
        assert client.one("Error")["data"]["code"] == code


async def test_max_tokens_defaults_and_is_capped_by_the_service_itself(make_chat):
    # The engine's own cap (EngineSettings.max_tokens) is far above: what the model is asked
    # for is already capped by the service (ServiceLimits.max_tokens).
    chat = make_chat(default_max_tokens=2, max_tokens=3, engine=ENGINE)
    assert chat.backend.settings.max_tokens == 1024
    ada = chat.client(ADA)
    final, text = await ada.ask(None, "Anything")
    assert chat.backend.requests[-1].config.max_tokens == 2  # the default
    assert (final["finish_reason"], final["usage"]["completion_tokens"], text) == ("length", 2, "Hello from")
    final, _ = await ada.ask(None, "Long", config={"max_tokens": 5000})
    assert chat.backend.requests[-1].config.max_tokens == 3  # the cap
    assert (final["finish_reason"], final["usage"]["completion_tokens"]) == ("length", 3)
    await ada.ask(None, "Short", config={"max_tokens": 1})
    assert chat.backend.requests[-1].config.max_tokens == 1


async def test_a_clients_sampling_settings_overlay_the_servers_defaults(chat):
    ada = chat.client(ADA)
    await ada.ask(None, "x", config={"temperature": 0.2, "seed": 7, "stop": ["\n\n"]})
    config = chat.backend.requests[-1].config
    defaults = chat.service.limits.sampling
    assert (config.temperature, config.seed, config.stop) == (0.2, 7, ("\n\n",))
    assert (config.top_k, config.top_p, config.min_p, config.repeat_penalty) == (
        defaults.top_k, defaults.top_p, defaults.min_p, defaults.repeat_penalty
    )
    request = ada.send("Generate", {"prompt": "x", "config": {"temperature": -1}})
    await chat.settle()
    error = ada.one("Error")
    assert error["id"] == request and error["data"]["code"] == 400 and "temperature" in error["data"]["message"]


@pytest.mark.parametrize(
    "standin, started, reason",
    [({"load_error": "model file not found"}, True, "model file not found"), ({}, False, "still loading")],
)
async def test_without_a_model_generate_is_refused_with_the_reason(make_chat, standin, started, reason):
    chat = make_chat(standin=standin)
    chat.backend.loaded = started and chat.backend.loaded
    ada = chat.client(ADA)
    await ada.join("general")
    ada.take()
    request = ada.send("Generate", {"prompt": "hi"}, room="general")
    await chat.settle()
    error = ada.one("Error")
    assert error["id"] == request and error["data"]["code"] == 503 and reason in error["data"]["message"]
    assert chat.stored("general") == [] and ada.inbox == []  # the question was not posted either


async def test_a_full_queue_refuses_with_429(make_chat):
    chat = make_chat(engine=EngineSettings(parallel=1, max_queue=1))
    ada = chat.client(ADA)
    for _ in range(3):
        ada.send("Generate", {"prompt": "x"})
    await chat.flush()
    acks = ada.take("Ack")
    assert [a["data"]["queue_position"] for a in acks] == [0, 1]
    assert ada.one("Error")["data"]["code"] == 429
    await chat.settle()


async def test_regenerate_answers_the_same_question_again_without_reposting_it(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("regen")
    await bob.join("regen")
    await ada.ask("regen", "Name a colour.")
    question, answer = chat.stored("regen")
    bob.take()
    for client, regenerate, code in ((bob, answer["message_id"], 403), (ada, "m-nope", 404), (ada, question["message_id"], 404)):
        request = client.send("Generate", {"prompt": "x", "regenerate": regenerate}, room="regen")
        await chat.settle()
        error = client.one("Error")
        assert error["id"] == request and error["data"]["code"] == code
    await ada.ask("regen", "ignored", regenerate=answer["message_id"])
    assert bob.take("Text") == []  # no second question
    first, again = chat.backend.requests
    assert again.turns == first.turns  # the same question, with the same context
    stored = chat.stored("regen")
    assert [m["author"]["kind"] for m in stored] == ["user", "assistant", "assistant"]
    assert stored[2]["in_reply_to"] == question["message_id"] and stored[2]["regenerates"] == answer["message_id"]


async def test_the_model_reads_the_askers_own_thread_not_the_room_chatter(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("busy")
    await bob.join("busy")
    await ada.ask("busy", "Name a planet.")
    bob.send("Text", {"content": "Lunch at noon?"}, room="busy")
    await bob.ask("busy", "Capital of Peru?")
    await ada.ask("busy", "Another one.")
    assert chat.backend.requests[-1].turns == [
        ChatTurn("system", "SYS"), ChatTurn("user", "Name a planet."), ChatTurn("assistant", ANSWER), ChatTurn("user", "Another one."),
    ]
    assert chat.backend.requests[-1].cache_key == "busy\nada"  # each asker's thread is its own KV prefix
    # its KV state may be saved to disk, labelled with every message it holds (a deleted one removes it)
    last = chat.backend.requests[-1]
    stored = chat.stored("busy")
    planet, answer, another = (next(m["message_id"] for m in stored if m["content"] == text) for text in ("Name a planet.", ANSWER, "Another one."))
    assert last.persist and last.room == "busy" and last.holds == (planet, answer, another)
    assert not chat.backend.requests[-2].holds[:-1]  # bob's thread holds only his own question
    await ada.ask("busy", "Fresh start.", new_thread=True)
    assert chat.backend.requests[-1].turns == [ChatTurn("system", "SYS"), ChatTurn("user", "Fresh start.")]
    assert chat.stored("busy")[-2]["thread_start"] is True


async def test_a_rooms_settings_decide_the_system_prompt_and_what_the_model_reads(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("team")
    await bob.join("team")
    bob.send("Text", {"content": "The deadline moved to Friday."}, room="team")
    ada.send("RoomSettings", {"system_prompt": "Be brief.", "context": "shared"}, room="team")
    await ada.ask("team", "Summarise.")
    turns = chat.backend.requests[-1].turns
    assert turns[0] == ChatTurn("system", "Be brief.\n\nRecent messages in this room:\nBob: The deadline moved to Friday.")
    assert turns[-1] == ChatTurn("user", "Summarise.")
    assert chat.backend.requests[-1].cache_key == "team"  # one shared conversation
    assert not chat.backend.requests[-1].persist  # the room's block changes with every message: nothing to save
    ada.send("RoomSettings", {"system_prompt": ""}, room="team")
    await ada.ask("team", "Again.")
    system = chat.backend.requests[-1].turns[0]
    assert system.content.startswith("SYS\n\nRecent messages in this room:\n")  # back to the server's prompt


async def test_attachments_reach_the_model_but_only_their_summary_is_stored(chat):
    ada = chat.client(ADA)
    await ada.join("kernel")
    trace = "ZeroDivisionError: division by zero"
    await ada.ask("kernel", "Why?", attachments=[{"kind": "error", "label": "ZeroDivisionError", "text": trace}])
    assert chat.backend.requests[-1].turns[-1] == ChatTurn("user", f"[error: ZeroDivisionError]\n{trace}\n\nWhy?")
    question = chat.stored("kernel")[0]
    assert question["attachments"] == [{"kind": "error", "label": "ZeroDivisionError", "chars": len(trace)}]
    assert "division" not in str(chat.stored("kernel"))


async def test_a_dropped_asker_leaves_a_room_answer_running_but_stops_a_private_one(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("general")
    await bob.join("general")
    ada.send("Generate", {"prompt": "For the room"}, room="general")
    ada.send("Generate", {"prompt": "For me"})
    room_answer, private = [request.message_id for request in chat.backend.requests]
    ada.drop()
    await chat.settle()
    assert bob.answer(room_answer)[-1]["data"]["finish_reason"] == "stop"
    assert private not in chat.backend.running and chat.backend.generated == 5  # stopped before its first token
    assert chat.stored("general")[-1]["content"] == ANSWER


@pytest.mark.parametrize("cancel_when_room_empty", [True, False])
async def test_an_emptied_room_stops_its_answers_only_when_configured(make_chat, cancel_when_room_empty):
    chat = make_chat(cancel_when_room_empty=cancel_when_room_empty)
    ada = chat.client(ADA)
    await ada.join("lonely")
    ada.send("Generate", {"prompt": "Anyone?"}, room="lonely")
    message_id = chat.backend.requests[-1].message_id
    ada.send("Leave", room="lonely")
    await chat.settle()
    stored = [m for m in chat.stored("lonely") if m["message_id"] == message_id]
    assert [m["finish_reason"] for m in stored] == ([] if cancel_when_room_empty else ["stop"])


async def test_a_shutdown_ends_running_answers_and_stores_what_they_said(make_chat, tmp_path):
    chat = make_chat()
    ada = chat.client(ADA)
    await ada.join("cut")
    ada.send("Generate", {"prompt": "Tell me a long story."}, room="cut")
    await chat.settle(until=lambda: chat.backend.generated == 2)
    chat.backend.close()  # what the extension's stop_extension does, then service.close()
    await chat.settle()
    final = ada.inbox[-1]["data"]
    assert final["finish_reason"] == "error" and final["error"] == "server shutting down"
    await chat.service.close()
    stored = make_chat().stored("cut")[-1]
    assert (stored["content"], stored["finish_reason"], stored["error"]) == ("Hello from", "error", "server shutting down")


async def test_an_empty_answer_stores_nothing_but_its_seq_is_kept(make_chat):
    chat = make_chat(standin={"words": ()})
    ada = chat.client(ADA)
    await ada.join("quiet")
    final, text = await ada.ask("quiet", "Say nothing")
    assert (final["finish_reason"], text) == ("stop", "")
    assert [m["author"]["kind"] for m in chat.stored("quiet")] == ["user"]
    head = (await chat.bus.head("quiet"))[0]
    await chat.service.close()
    assert (await make_chat().bus.head("quiet"))[0] == head  # a restart goes on after the empty answer


async def test_rest_and_extensions_ask_through_the_same_path(chat):
    bob = chat.client(BOB)
    await bob.join("class")
    bob.take()
    asked = dict(owner=EVE, request=GenerateData(prompt="Define a list."), room="class", connection=None,
                 request_id="Idempotency-Key 1", author=EVE.author())
    ack = await chat.service.generate(**asked)
    assert await chat.service.generate(**asked) == ack and len(chat.backend.requests) == 1
    await chat.settle()
    assert bob.one("Text")["data"]["author"] == {"username": "eve", "name": "Eve", "kind": "user"}
    assert "".join(t["data"]["text"] for t in bob.answer(ack["message_id"])) == ANSWER


async def test_one_user_may_have_only_max_answers_per_user_waiting_or_running(make_chat):
    chat = make_chat(max_answers_per_user=2, standin={"delay": 0.02})
    ada, bob = chat.client(ADA), chat.client(BOB)
    for _ in range(3):
        ada.send("Generate", {"prompt": "x"})
    bob.send("Generate", {"prompt": "y"})
    await chat.flush()
    assert len(ada.take("Ack")) == 2 and len(bob.take("Ack")) == 1
    error = ada.one("Error")["data"]
    assert error["code"] == 429 and "you have 2 answers waiting or running (max_answers_per_user=2)" in error["message"]
    await chat.settle()
    await ada.ask(None, "again")  # once they have finished, the user may ask again


async def test_the_owners_kernel_gets_the_reserved_queue_places_others_are_refused(make_chat):
    owner = Identity("ada", "notebook", owner=True)  # the runtime secret's identity (handlers.identity_of)
    engine = EngineSettings(parallel=1, max_queue=4, owner_queue_reserve=2)
    chat = make_chat(engine=engine, max_answers_per_user=0, standin={"delay": 0.02})
    bob, kernel = chat.client(BOB), chat.client(owner)
    for _ in range(4):
        bob.send("Generate", {"prompt": "x"})
    await chat.flush()
    assert [a["data"]["queue_position"] for a in bob.take("Ack")] == [0, 1, 2]
    error = bob.one("Error")["data"]
    assert error["code"] == 429 and "the last 2 kept for the server's owner" in error["message"]
    for _ in range(3):
        kernel.send("Generate", {"prompt": "from the notebook"})
    await chat.flush()
    assert [a["data"]["queue_position"] for a in kernel.take("Ack")] == [3, 4]
    assert kernel.one("Error")["data"]["code"] == 429  # max_queue holds for the owner too
    await chat.settle()


async def test_an_answer_whose_prompt_was_cut_says_so_live_and_in_history(make_chat):
    chat = make_chat(engine=EngineSettings(n_ctx=4096, parallel=4))  # the stand-in's budget: 1,024 characters
    ada = chat.client(ADA)
    await ada.join("general")
    cut, _ = await ada.ask("general", "x" * 2000)
    whole, _ = await ada.ask("general", "short", new_thread=True)
    assert cut["truncated"] is True and "truncated" not in whole
    answers = [m for m in chat.stored("general") if m["author"]["kind"] == "assistant"]
    assert [m.get("truncated", False) for m in answers] == [True, False]


async def test_a_question_clipped_by_characters_is_said_to_be_cut_too(make_chat):
    chat = make_chat(engine=EngineSettings(n_ctx=1_000_000, parallel=1))  # a budget the question fits
    ada = chat.client(ADA)
    final, _ = await ada.ask(None, "y" * (QUESTION_CHARS + 1))
    assert final["truncated"] is True
