"""`model_backend = "openai"`: answers from a real OpenAI-compatible model server.

The model server is llama-cpp-python's own (`tests/support/model_server.py`) with the packaged
model, started once for the module with an API key; each test runs a real in-process
Jupyter server pointed at it. The tests without a model server (one that is not there,
bad settings) are in the fast tier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Iterator

import pytest
from support.model_server import MODEL_ALIAS, ModelServer
from support.servers import free_port
from support.waiting import until
from traitlets import TraitError
from traitlets.config import Config

from jupyter_llmchat.server.extension import ConfigError, LLMChat
from jupyter_llmchat.backends.openai_backend import OpenAIBackend

SECRET = "sk-never-shown-4d1c9a"


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = ModelServer(tmp_path_factory.mktemp("model-server"), api_key=SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_key(model_server: ModelServer) -> str:
    """The key the Jupyter server sends (the model server's own, unless a test says otherwise)."""
    return model_server.api_key


@pytest.fixture
def more_config() -> dict[str, Any]:
    """Settings a test adds to those pointing at the model server."""
    return {}


@pytest.fixture
def llmchat_config(request: pytest.FixtureRequest, more_config: dict[str, Any]) -> dict[str, Any]:
    """Pointed at the module's model server, unless a fast test points it elsewhere."""
    if request.node.get_closest_marker("fast") is not None:
        unused = f"http://127.0.0.1:{free_port()}/v1"
        return {"model_backend": "openai", "openai_base_url": unused, "openai_retry_interval": 0.2, **more_config}
    server = request.getfixturevalue("model_server")
    if not server.answers():  # a test before this one stopped it and failed before restarting it
        server.start()
    return {
        "model_backend": "openai",
        "openai_base_url": server.base_url,
        "openai_api_key": request.getfixturevalue("openai_key"),
        "openai_retry_interval": 0.2,
        **more_config,
    }


@pytest.fixture
def logged(chat_server: Any, caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the test, the client libraries' debug lines included."""
    caplog.set_level(logging.DEBUG)
    chat_server.log.addHandler(caplog.handler)  # Jupyter's logger does not propagate
    try:
        yield caplog
    finally:
        chat_server.log.removeHandler(caplog.handler)


async def ask(client: Any, room: str, prompt: str = "Say hello.", **config: Any) -> dict[str, Any]:
    """Send a Generate; its Ack or Error frame."""
    request_id = await client.send("Generate", {"prompt": prompt, "config": {"max_tokens": 6, **config}}, room=room)
    while True:
        frame = await client.recv_type("Ack", "Error")
        if frame["id"] == request_id:
            return frame


async def test_an_answer_streams_from_the_model_server_into_the_room(chat_server, connect, api):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    assert ada.welcome["data"]["model"] == {"name": MODEL_ALIAS, "loaded": True, "n_ctx": 0, "parallel": 4, "reference": "",
                                            "state": "loaded", "progress": None, "detail": "", "error": None}
    await ada.join("class")
    await bob.join("class")
    ack = await ask(ada, "class")
    assert ack["type"] == "Ack" and ack["data"]["queue_position"] == 0
    message_id = ack["data"]["message_id"]
    seen = [await client.answer(message_id) for client in (ada, bob)]
    assert seen[0] == seen[1]
    final = seen[0][-1]["data"]
    assert final["finish_reason"] in ("stop", "length") and "".join(t["data"]["text"] for t in seen[0]).strip()
    assert final["usage"]["completion_tokens"] == len(seen[0]) - 1 and final["timings"]["ttft_ms"] > 0
    _, stats = await api("GET", "stats")
    assert stats["model"]["backend"] == "openai" and stats["model"]["name"] == MODEL_ALIAS
    assert stats["model"]["tokens_generated"] >= len(seen[0]) - 1
    assert isinstance(chat_server.backend, OpenAIBackend)  # no model in this server


@pytest.mark.parametrize("more_config", [{"parallel": 1}])
async def test_answers_beyond_parallel_wait_with_their_queue_positions(chat_server, connect, api, more_config):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("queue")
    await bob.join("queue")
    acks = [await ask(client, "queue", max_tokens=3) for client in (ada, bob, ada)]
    assert [ack["data"]["queue_position"] for ack in acks] == [0, 1, 2]
    _, stats = await api("GET", "stats")
    assert (stats["model"]["active_sequences"], stats["model"]["queue_depth"]) == (1, 2)
    await bob.send("Cancel", {"message_id": acks[1]["data"]["message_id"]})
    first, cancelled, third = (ack["data"]["message_id"] for ack in acks)
    ends = {}
    while len(ends) < 3:
        frame = await ada.recv_type("Token")
        if frame["data"]["is_final"]:
            ends[frame["data"]["message_id"]] = frame["data"]["finish_reason"]
    assert ends[cancelled] == "cancelled" and {ends[first], ends[third]} <= {"stop", "length"}
    assert list(ends).index(first) < list(ends).index(third)  # one at a time, in the order asked


async def test_cancel_closes_the_upstream_stream_within_a_second(chat_server, connect, model_server):
    ada = await connect()
    await ada.join("stop")
    ack = await ask(ada, "stop", "Tell me a long story about a dragon.", max_tokens=400, temperature=0.9, seed=3)
    message_id = ack["data"]["message_id"]
    first = await ada.recv_type("Token")
    assert not first["data"]["is_final"]
    disconnects = model_server.log_path.read_text().count("Disconnected from client")
    sent = time.monotonic()
    await ada.send("Cancel", {"message_id": message_id})
    final = (await ada.answer(message_id, timeout=5))[-1]["data"]
    assert final["finish_reason"] == "cancelled" and time.monotonic() - sent < 1.0
    # The model server saw the stream closed and is free at once for the next answer
    # (llama-cpp-python's server answers one request at a time).
    for _ in range(50):
        if model_server.log_path.read_text().count("Disconnected from client") > disconnects:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the model server's stream was not closed")
    asked = time.monotonic()
    next_id = (await ask(ada, "stop", max_tokens=2))["data"]["message_id"]
    assert (await ada.answer(next_id))[-1]["data"]["finish_reason"] in ("stop", "length")
    assert time.monotonic() - asked < 20  # the 400-token story would take minutes


async def test_a_model_server_that_goes_away_gives_503_then_answers_again_when_back(chat_server, connect, api, model_server):
    ada = await connect()
    await ada.join("outage")
    ack = await ask(ada, "outage", "Write a long essay about the history of Rome.", max_tokens=400, temperature=0.9, seed=5)
    first = await ada.recv_type("Token")
    await asyncio.to_thread(model_server.kill)  # mid-answer
    try:
        # The answer ends with the reason, and what it had said is kept with it...
        tokens = [first] + await ada.answer(ack["data"]["message_id"], timeout=10)
        final = tokens[-1]["data"]
        assert final["finish_reason"] == "error" and "lost the model server at " + model_server.base_url in final["error"]
        _, history = await api("GET", "rooms", "outage", "messages")
        stored = history["messages"][-1]["data"]
        assert stored["content"] == "".join(t["data"]["text"] for t in tokens) and stored["error"] == final["error"]
        # ...then Generate is refused with the reason, while the rest of the server works.
        refused = await ask(ada, "outage")
        assert refused["type"] == "Error" and refused["data"]["code"] == 503
        assert "model not available: " in refused["data"]["message"] and model_server.base_url in refused["data"]["message"]
        status, stats = await api("GET", "stats")
        assert status == 200 and stats["model"]["loaded"] is False and model_server.base_url in stats["model"]["load_error"]
        status, posted = await api("POST", "rooms", "outage", "messages", body={"content": "still here"})
        assert status == 201 and posted["seq"] > 0
    finally:
        await asyncio.to_thread(model_server.start)
    async def loaded() -> bool:
        return (await api("GET", "stats"))[1]["model"]["loaded"]

    await until(loaded, timeout=10, what="the server to see the model server come back")
    ack = await ask(ada, "outage")
    assert ack["type"] == "Ack"
    assert (await ada.answer(ack["data"]["message_id"]))[-1]["data"]["finish_reason"] in ("stop", "length")


@pytest.mark.fast
@pytest.mark.parametrize("more_config", [{"openai_retry_interval": 60}])
async def test_the_first_answer_after_the_model_server_left_ends_with_the_reason(chat_server, connect, more_config):
    """Nothing polls a model server that is up: the first answer finds out, later ones get 503."""
    backend = chat_server.backend  # (no retry within the test: it stays "up" until the answer fails)
    backend.loaded, backend.load_error, backend.model_name = True, None, "was-here"  # as if it had answered once
    ada = await connect()
    await ada.join("gone")
    ack = await ask(ada, "gone")
    assert ack["type"] == "Ack"
    final = (await ada.answer(ack["data"]["message_id"], timeout=10))[-1]["data"]
    assert final["finish_reason"] == "error" and final["error"].startswith("cannot reach the model server at http://127.0.0.1:")
    refused = await ask(ada, "gone")
    assert refused["type"] == "Error" and refused["data"]["code"] == 503 and "cannot reach the model server" in refused["data"]["message"]


async def test_the_api_key_is_never_shown(chat_server, connect, api, jp_fetch, logged):
    ada = await connect()
    await ada.join("key")
    ack = await ask(ada, "key")
    await ada.answer(ack["data"]["message_id"])
    await ada.send("Stats", id="s")
    shown = [json.dumps(ada.welcome), json.dumps(await ada.recv_type("Stats")), json.dumps((await api("GET", "stats"))[1])]
    shown.append((await jp_fetch("metrics", headers={"Authorization": "token tok-ada"})).body.decode())
    shown += [record.getMessage() for record in logged.records]
    assert any(record.name.startswith("openai") for record in logged.records), "the client's debug lines were not captured"
    assert not [text for text in shown if SECRET in text]


@pytest.mark.parametrize("openai_key", ["sk-wrong-9e1f"])
async def test_a_wrong_api_key_gives_503_saying_so_without_the_key(chat_server, connect, openai_key, logged):
    ada = await connect()
    model = ada.welcome["data"]["model"]
    assert model["loaded"] is False and "refused the API key (HTTP 401)" in model["error"]
    await ada.join("key")
    refused = await ask(ada, "key")
    assert refused["type"] == "Error" and refused["data"]["code"] == 503
    assert "refused the API key" in refused["data"]["message"]
    probes = lambda: [r for r in logged.records if "/models" in r.getMessage() and "401" in r.getMessage()]  # noqa: E731
    await until(lambda: len(probes()) >= 3, what="the backend to ask the model server again (every 0.2 s)")
    shown = [json.dumps(ada.welcome), json.dumps(refused)] + [record.getMessage() for record in logged.records]
    assert not [text for text in shown if openai_key in text or SECRET in text]


@pytest.mark.fast
async def test_a_model_server_that_is_not_there_gives_503_with_the_reason(chat_server, connect, api):
    ada = await connect()
    model = ada.welcome["data"]["model"]
    assert model["loaded"] is False and "cannot reach the model server at http://127.0.0.1:" in model["error"]
    await ada.join("nobody")
    refused = await ask(ada, "nobody")
    assert refused["type"] == "Error" and refused["data"]["code"] == 503
    assert "cannot reach the model server" in refused["data"]["message"]
    status, stats = await api("GET", "stats")
    assert status == 200 and stats["model"]["backend"] == "openai" and stats["model"]["loaded"] is False


@pytest.mark.fast
@pytest.mark.parametrize(
    "llmchat_config",
    [{"model_backend": "openai", "openai_api_key": SECRET, "openai_retry_interval": 0.2,
      "openai_base_url": f"http://reader:{SECRET}@127.0.0.1:{free_port()}/v1"}],
)
async def test_a_key_in_the_settings_or_the_url_is_not_shown_even_in_errors(chat_server, connect, api, llmchat_config, logged):
    ada = await connect()
    await ada.join("k")
    refused = await ask(ada, "k")
    await asyncio.sleep(0.5)  # a few retries, each logged
    shown = [json.dumps(ada.welcome), json.dumps(refused), json.dumps((await api("GET", "stats"))[1])]
    shown += [record.getMessage() for record in logged.records]
    assert refused["data"]["code"] == 503 and "http://127.0.0.1:" in refused["data"]["message"]
    assert not [text for text in shown if SECRET in text]


@pytest.mark.fast
def test_openai_settings_are_checked_by_name():
    def refusal(**settings: Any) -> str:
        app = LLMChat(config=Config({"LLMChat": settings}))
        with pytest.raises(ConfigError) as error:
            app.check_config()
        return str(error.value)

    assert "openai_base_url must be set" in refusal(model_backend="openai")
    assert "openai_base_url must be an http(s) URL" in refusal(model_backend="openai", openai_base_url="127.0.0.1:8080")
    LLMChat(config=Config({"LLMChat": {"model_backend": "openai", "openai_base_url": "http://h:1/v1"}})).check_config()
    for name, value in [("model_backend", "gpt"), ("openai_retry_interval", 0.0), ("openai_timeout", 0.5)]:
        with pytest.raises(TraitError, match=name):
            LLMChat(config=Config({"LLMChat": {name: value}}))
