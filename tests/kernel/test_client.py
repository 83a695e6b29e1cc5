"""The kernel-side client (kernel/client.py) against a real in-process Jupyter server whose
model is the stand-in (fast tier): REST posts and figures, a streamed answer over its own
WebSocket, cancelling, room settings and clearing. The client is synchronous, as in a cell,
so each call runs in a thread while the server runs on the test's event loop."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from jupyter_llmchat.kernel.client import ChatClient
from jupyter_llmchat.kernel.discovery import find_server
from jupyter_llmchat.kernel.errors import ChatRequestError

pytestmark = pytest.mark.fast


@pytest.fixture
def client(chat_server: Any, jp_http_port: int, jp_base_url: str) -> ChatClient:
    return ChatClient(find_server(f"http://127.0.0.1:{jp_http_port}{jp_base_url}", "tok-ada"), timeout=10)


async def off_loop(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call in a thread, so the in-process server can answer it."""
    return await asyncio.to_thread(call, *args, **kwargs)


async def test_broadcast_history_rooms_and_stats(client, connect):
    member = await connect("tok-bob")
    await member.join("class")
    posted = await off_loop(client.broadcast, "class", "Hint: use a dict", author_name="teacher")
    text = await member.recv_type("Text")
    assert (text["seq"], text["data"]["message_id"]) == (posted["seq"], posted["message_id"])
    assert text["data"]["author"] == {"username": "ada", "name": "teacher", "kind": "bot"}
    history = await off_loop(client.history, "class")
    assert [m["data"]["content"] for m in history] == ["Hint: use a dict"]
    assert {"room": "class", "members": 1, "head_seq": posted["seq"]} in await off_loop(client.rooms)
    stats = await off_loop(client.stats)
    assert stats["active_connections"] == 1 and stats["model"]["name"] == "stand-in"


async def test_ask_streams_the_answer_into_the_room(client, connect, chat_server):
    member = await connect("tok-bob")
    await member.join("class")
    answer = await off_loop(client.ask, "class", "Define a list.", max_tokens=4, temperature=0)
    text = await off_loop(lambda: "".join(answer))
    assert text == "Hello from the stand-in"  # four tokens of the stand-in's answer
    tokens = await member.answer(answer.message_id)
    assert "".join(t["data"]["text"] for t in tokens) == text and tokens[-1]["data"]["finish_reason"] == "length"
    (asked,) = chat_server.backend.requests
    assert (asked.config.max_tokens, asked.config.temperature) == (4, 0.0)
    assert asked.turns[-1].content == "Define a list."
    private = await off_loop(lambda: "".join(client.ask(None, "Just me")))
    assert private == "Hello from the stand-in."


async def test_an_answer_says_whether_its_prompt_was_cut_to_fit(client):
    cut = await off_loop(client.ask, None, "x" * 2000)  # over the stand-in's budget: 1,024 characters
    whole = await off_loop(client.ask, None, "Just me")
    await off_loop(cut.text)
    await off_loop(whole.text)
    assert (cut.truncated, whole.truncated) == (True, False)


@pytest.mark.parametrize("standin_options", [{"delay": 0.05}])  # an answer that runs long enough to cancel
async def test_generate_then_cancel_and_only_once(client, connect, chat_server, standin_options):
    member = await connect("tok-bob")
    await member.join("class")
    accepted = await off_loop(client.generate, "class", "Tell me a long story.", author_name="Script")
    assert accepted["queue_position"] == 0
    assert (await member.recv_type("Text"))["data"]["author"]["name"] == "Script"
    await member.recv_type("Token")
    assert await off_loop(client.cancel, accepted["message_id"]) is True
    final = (await member.answer(accepted["message_id"]))[-1]["data"]
    assert final["finish_reason"] == "cancelled"
    assert await off_loop(client.cancel, accepted["message_id"]) is False  # finished already
    with pytest.raises(ChatRequestError) as unknown:
        await off_loop(client.cancel, "m-unknown")
    assert unknown.value.code == 404


async def test_room_prompt_new_thread_and_clear(client, connect, chat_server):
    member = await connect("tok-bob")
    await member.join("prompts")
    settings = await off_loop(client.set_room_prompt, "prompts", "Be brief.", context="shared")
    assert settings == {"system_prompt": "Be brief.", "context": "shared", "announce_only": False, "model_answers": True}
    note = await member.recv_type("Text")
    assert note["data"]["author"]["kind"] == "system" and note["data"]["settings"] == settings
    await off_loop(client.new_thread, "prompts")
    await off_loop(lambda: "".join(client.ask("prompts", "Hi")))
    assert chat_server.backend.requests[-1].turns[0].content == "Be brief."
    assert (await off_loop(client.history, "prompts"))[-2]["data"]["thread_start"] is True
    cleared = await off_loop(client.clear, "prompts")
    assert cleared["deleted"] == 3  # the system note, the question, the answer
    assert (await member.recv_type("Reset"))["type"] == "Reset"
    assert await off_loop(client.history, "prompts") == []
