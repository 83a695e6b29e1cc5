"""Every limit is enforced over a real socket: size, connections, idleness, rate, slow
readers, pings, max_tokens. The server's model is the stand-in (fast tier)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import websocket  # websocket-client, a dependency of jupyter_server
from support.waiting import until

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("llmchat_config", [{"message_size_limit": 2048}])
async def test_a_frame_over_the_size_limit_closes_with_1009(chat_server, connect, llmchat_config):
    client = await connect()
    await client.send("Text", {"content": "x" * 4096}, room="general")
    code, _ = await client.closed()
    assert code == 1009
    other = await connect()
    assert other.welcome["data"]["limits"]["message_size_limit"] == 2048


@pytest.mark.parametrize("llmchat_config", [{"max_connections": 2}])
async def test_a_full_server_refuses_with_1013(chat_server, connect, llmchat_config):
    await connect("tok-ada")
    bob = await connect("tok-bob")
    third = await connect("tok-bob", welcome=False)
    code, reason = await third.closed()
    assert code == 1013 and "max_connections" in reason
    bob.close()
    await until(lambda: chat_server.service.connection_count() == 1, what="the server to notice bob's close")
    again = await connect("tok-bob")
    assert again.welcome["type"] == "Welcome"


@pytest.mark.parametrize("llmchat_config", [{"connection_timeout": 0.5}])
async def test_an_idle_socket_is_closed(chat_server, connect, llmchat_config):
    idle = await connect()
    talker = await connect("tok-bob")
    started = time.monotonic()
    closed = asyncio.ensure_future(idle.closed(timeout=10))
    while not closed.done():  # the sweep runs every second
        await asyncio.sleep(0.2)
        await talker.send("Ping")
        await talker.recv()
    code, reason = closed.result()
    assert code == 1000 and "idle" in reason
    assert 0.5 < time.monotonic() - started < 5
    await talker.send("Ping", id="alive")
    assert (await talker.recv())["id"] == "alive"


@pytest.mark.parametrize("llmchat_config", [{"rate_limit": 5.0, "rate_limit_burst": 5}])
async def test_a_user_over_the_rate_limit_gets_429(chat_server, connect, llmchat_config):
    client = await connect()
    for n in range(8):
        await client.send("Ping", id=f"p{n}")
    replies = [await client.recv() for _ in range(8)]
    codes = [r["data"].get("code") for r in replies if r["type"] == "Error"]
    assert codes and set(codes) == {429}
    assert sum(r["type"] == "Pong" for r in replies) == 5
    other_user = await connect("tok-bob")
    await other_user.send("Ping", id="bob")
    assert (await other_user.recv())["type"] == "Pong"


@pytest.mark.parametrize("llmchat_config", [{"ping_interval": 0.3}])
async def test_protocol_pings_are_sent_in_seconds(chat_server, ws_url, llmchat_config):
    ws = websocket.WebSocket()
    await asyncio.to_thread(ws.connect, ws_url, header=["Authorization: token tok-ada"], timeout=10)
    try:
        opcodes = []
        started = time.monotonic()
        while websocket.ABNF.OPCODE_PING not in opcodes and time.monotonic() - started < 5:
            opcode, _ = await asyncio.to_thread(ws.recv_data, True)
            opcodes.append(opcode)
        assert websocket.ABNF.OPCODE_PING in opcodes
        assert time.monotonic() - started < 2
    finally:
        await asyncio.to_thread(ws.close)  # off the loop: close waits for the server's reply


@pytest.mark.parametrize("llmchat_config", [{"send_queue_bytes": 256 * 1024, "rate_limit": 0}])
async def test_a_client_that_stops_reading_is_dropped_without_slowing_its_room(
    chat_server, connect, ws_url, llmchat_config
):
    # A raw socket with a tiny receive buffer that joins and then never reads.
    stalled = websocket.WebSocket(sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    await asyncio.to_thread(stalled.connect, ws_url, header=["Authorization: token tok-bob"], timeout=10)
    stalled.send(json.dumps({"type": "Join", "room": "busy", "data": {}}))
    reader = await connect("tok-ada")
    await reader.join("busy")
    chunk = "y" * 200_000
    for n in range(60):
        await reader.send("Text", {"content": f"{n} {chunk}"}, room="busy")
        text = await reader.recv_type("Text", timeout=10)  # the room keeps flowing
        assert text["data"]["content"].startswith(f"{n} ")
        if chat_server.service.connection_count() == 1:
            break
    assert chat_server.service.connection_count() == 1, "the stalled client should have been dropped"
    queued = sum(len(c._queue) for c in chat_server.service.connections.values())
    assert queued <= 2
    await asyncio.to_thread(stalled.close)


@pytest.mark.parametrize("llmchat_config", [{"max_tokens": 3}])
async def test_max_tokens_is_capped_by_the_server(chat_server, connect, llmchat_config):
    # Two caps come from the one trait: the service's (what it asks of the model) and the
    # engine's (EngineSettings.max_tokens, tested in tests/engine/test_engine.py). Each is
    # checked on its own: a request already capped at the seam, and the backend's setting.
    client = await connect()
    assert client.welcome["data"]["limits"]["max_tokens"] == 3
    assert chat_server.backend.settings.max_tokens == 3
    await client.send("Generate", {"prompt": "Tell me a long story.", "config": {"max_tokens": 5000}})
    ack = await client.recv_type("Ack")
    (asked,) = chat_server.backend.requests  # what the service handed to the model backend
    assert asked.message_id == ack["data"]["message_id"]
    assert asked.config.max_tokens == 3
    final = (await client.answer(ack["data"]["message_id"]))[-1]["data"]
    assert (final["finish_reason"], final["usage"]["completion_tokens"]) == ("length", 3)


@pytest.mark.parametrize("llmchat_config", [{"room_cleanup_delay": 0.5}])
async def test_an_empty_room_is_dropped_after_a_delay_and_comes_back_with_a_new_epoch(
    chat_server, connect, llmchat_config
):
    client = await connect()
    first = await client.join("brief")
    await client.send("Text", {"content": "still here later"}, room="brief")
    await client.recv_type("Text")
    await client.send("Leave", room="brief")
    await client.recv_type("Left")
    await until(lambda: "brief" not in chat_server.service.bus.rooms, timeout=6, what="the sweep (every second) to drop the room")
    again = await client.join("brief", since=first["data"]["seq"], epoch=first["data"]["epoch"])
    assert again["data"]["epoch"] != first["data"]["epoch"]
    assert again["data"]["seq"] >= first["data"]["seq"] + 2  # seq continues
    assert (await client.recv())["type"] == "Reset"
    history = await client.recv()
    assert [m["data"]["content"] for m in history["data"]["messages"]] == ["still here later"]
