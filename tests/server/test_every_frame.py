"""Every frame is answered: an Error that carries the request's id wherever it can be read,
and a close frame with a code for what cannot be answered (fast tier)."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
import websocket
from jupyter_server.auth.authorizer import Authorizer

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "frame, request_id",
    [
        ('{"type": 5, "id": "a-1", "data": {}}', "a-1"),  # a field of the wrong type
        ('{"type": "Text", "id": "a-2", "room": "general", "data": ' + "[" * 5000 + "]" * 5000 + "}", "a-2"),  # too deep
        ('{"type": "Ping", "id": "a-3", "data": {', "a-3"),  # cut off
        ('{"type": "Join", "id": "a-4", "room": "general", "data": {"since": 9223372036854775808}}', "a-4"),  # 2**63
        ('{"type": "Join", "id": "a-5", "room": "general", "data": {"epoch": "' + "e" * 200 + '"}}', "a-5"),
    ],
)
async def test_an_invalid_frame_gets_its_id_back(chat_server, connect, frame, request_id):
    client = await connect()
    await client.ws.write_message(frame)
    reply = await client.recv()
    assert (reply["type"], reply["id"], reply["data"]["code"]) == ("Error", request_id, 400)


async def test_a_binary_frame_gets_its_id_back(chat_server, connect):
    client = await connect()
    await client.ws.write_message(json.dumps({"type": "Ping", "id": "b-1", "data": {}}).encode(), binary=True)
    error = await client.recv()
    assert (error["id"], error["data"]["code"]) == ("b-1", 400)


async def raw_socket(ws_url: str) -> websocket.WebSocket:
    ws = websocket.WebSocket()
    await asyncio.to_thread(ws.connect, ws_url, header=["Authorization: token tok-ada"], subprotocols=["llmchat.v1"], timeout=10)
    await asyncio.to_thread(ws.recv)  # Welcome
    return ws


async def close_frame(ws: websocket.WebSocket) -> tuple[int, str]:
    """The server's close frame: (code, reason); fails if the connection ends without one (1006)."""
    while True:
        opcode, data = await asyncio.to_thread(ws.recv_data, True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0], data[2:].decode()


async def test_a_text_frame_that_is_not_utf8_is_closed_with_1007(chat_server, ws_url):
    ws = await raw_socket(ws_url)
    await asyncio.to_thread(ws.send, b'{"type": "Ping", "data": "\xed\xa0\x80"}', websocket.ABNF.OPCODE_TEXT)
    code, reason = await close_frame(ws)
    assert code == 1007 and "UTF-8" in reason
    await asyncio.to_thread(ws.close)


@pytest.mark.parametrize("llmchat_config", [{"message_size_limit": 2048}])
async def test_a_frame_far_over_the_limit_still_gets_its_close_frame(chat_server, ws_url, llmchat_config):
    # Tornado closed the socket with the rest of the frame unread: a reset, and no 1009.
    ws = await raw_socket(ws_url)
    await asyncio.to_thread(ws.send, json.dumps({"type": "Text", "data": {"content": "y" * 2_000_000}}))
    code, _ = await close_frame(ws)
    assert code == 1009
    await asyncio.to_thread(ws.close)


class BobReadsOnly(Authorizer):
    """An authorizer that lets bob watch but not write (as a read-only role would)."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return not (user.username == "bob" and action == "write")


@pytest.mark.parametrize("jp_server_config_extra", [{"authorizer_class": BobReadsOnly}])
async def test_a_refused_write_gets_its_id_back(chat_server, connect, api, jp_server_config_extra):
    bob = await connect("tok-bob")
    await bob.join("general")
    await bob.send("Text", {"content": "hi"}, room="general", id="w-1")
    refused = await bob.recv_type("Error")
    assert (refused["id"], refused["data"]["code"]) == ("w-1", 403)
    await bob.ws.write_message('{"type": "Generate", "id": "w-2", "data": {"prompt": 5}}')
    refused = await bob.recv_type("Error")
    assert (refused["id"], refused["data"]["code"]) == ("w-2", 403)
    code, _ = await api("POST", "rooms", "general", "messages", body={"content": "hi"}, token="tok-bob")
    assert code == 403
