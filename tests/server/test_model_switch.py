"""A moderator switches the running model: answers finish, rooms and sockets stay (fast tier).

The managed backend around the stand-in; the new model is an `ollama:` reference to a small
GGUF in a fake store. The real model's switch: test_model_switch_real.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from support.fake_hub import model_dirs, ollama_store, tiny_gguf  # noqa: F401 (fixtures)

pytestmark = pytest.mark.fast


@pytest.fixture
def standin_options() -> dict[str, Any]:
    return {"delay": 0.05}  # five tokens in a quarter of a second: an answer is running when the switch comes


@pytest.fixture
def llmchat_config(model_dirs: Path) -> dict[str, Any]:
    return {"moderators": ["ada"]}


@pytest.fixture
def blob(model_dirs: Path) -> Path:
    return ollama_store(model_dirs / "ollama", "tiny", "1b", tiny_gguf(model_dirs / "src" / "tiny.gguf"))


async def joined(connect: Any, token: str) -> Any:
    client = await connect(token)
    await client.join("general")
    return client


async def answer_and_model(client: Any, message_id: str, reference: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frames until both the answer `message_id` ended and a pushed Stats said `reference` is
    loaded (in either order: the new model may be in before the old answer's last token is out):
    the answer's tokens and that Stats.model."""
    tokens: list[dict[str, Any]] = []
    loaded: dict[str, Any] = {}
    while not (tokens and tokens[-1]["data"]["is_final"] and loaded):
        frame = await client.recv_type("Token", "Stats")
        if frame["type"] == "Token" and frame["data"]["message_id"] == message_id:
            tokens.append(frame)
        model = frame["data"].get("model") or {}
        if frame["type"] == "Stats" and model["reference"] == reference and model["state"] == "loaded":
            loaded = model
    return tokens, loaded


async def test_a_moderator_switches_the_model_while_an_answer_runs(chat_server, connect, api, blob):
    ada, bob = await joined(connect, "tok-ada"), await joined(connect, "tok-bob")
    status, refused = await api("PUT", "model", body={"model": "ollama:tiny:1b"}, token="tok-bob")
    assert status == 403 and "only a moderator may switch the model" in refused["message"]
    asked = await ada.send("Generate", {"prompt": "Tell me a story", "config": {"max_tokens": 5}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    status, begun = await api("PUT", "model", body={"model": "ollama:tiny:1b"})
    assert status == 202 and begun["reference"] == "ollama:tiny:1b" and begun["state"] in ("resolving", "loading")
    status, busy = await api("PUT", "model", body={"model": ""})
    assert status == 409 and "already changing" in busy["message"]
    for client in (ada, bob):  # the answer in progress finishes, whole; every member hears of the new model
        tokens, model = await answer_and_model(client, message_id, "ollama:tiny:1b")
        assert tokens[-1]["data"]["finish_reason"] == "stop" and len(tokens) == 6
        assert model["loaded"] and model["name"] == "stand-in" and model["error"] is None
    assert chat_server.backend.engine.settings.model_path == str(blob)
    await ada.send("Ping")
    assert (await ada.recv_type("Pong"))["type"] == "Pong"  # the same socket
    await ada.send("Generate", {"prompt": "And now?", "config": {"max_tokens": 2}}, room="general")
    assert (await ada.recv_type("Ack", "Error"))["type"] == "Ack"
    history = (await api("GET", "rooms", "general", "messages"))[1]["messages"]
    assert [m["data"]["content"] for m in history][:2] == ["Tell me a story", "Hello from the stand-in."]
    assert asked


async def test_a_switch_that_cannot_resolve_keeps_the_old_model(chat_server, connect, api, blob):
    ada = await joined(connect, "tok-ada")
    status, _ = await api("PUT", "model", body={"model": "hf:nope"})
    assert status == 400
    status, _ = await api("PUT", "model", body={"model": "ollama:absent:7b"})
    assert status == 202
    while (model := (await ada.recv_type("Stats"))["data"]["model"])["state"] != "loaded":
        pass
    assert model["reference"] == "" and model["detail"].startswith("could not switch to ollama:absent:7b: no Ollama model")
    await ada.send("Generate", {"prompt": "Still there?", "config": {"max_tokens": 2}}, room="general")
    assert (await ada.recv_type("Ack", "Error"))["type"] == "Ack"


async def test_answers_still_running_after_the_drain_end_with_an_error(chat_server, connect, api, blob):
    chat_server.backend.drain_seconds = 0.05
    ada = await joined(connect, "tok-ada")
    await ada.send("Generate", {"prompt": "A long one", "config": {"max_tokens": 5}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    assert (await api("PUT", "model", body={"model": "ollama:tiny:1b"}))[0] == 202
    tokens, _ = await answer_and_model(ada, message_id, "ollama:tiny:1b")
    assert tokens[-1]["data"]["finish_reason"] == "error" and tokens[-1]["data"]["error"] == "the model was switched"


async def test_a_question_during_the_switch_is_told_what_is_happening(chat_server, connect, api, blob):
    ada = await joined(connect, "tok-ada")
    await ada.send("Generate", {"prompt": "Slow", "config": {"max_tokens": 5}}, room="general")
    await ada.recv_type("Ack")
    assert (await api("PUT", "model", body={"model": "ollama:tiny:1b"}))[0] == 202
    await asyncio.sleep(0.05)  # resolved at once; the old model's answer still runs
    await ada.send("Generate", {"prompt": "Now?"}, room="general")
    refusal = (await ada.recv_type("Error"))["data"]
    assert refusal["code"] == 503 and "switching to tiny:1b: waiting for 1 answer(s) to finish" in refusal["message"]
