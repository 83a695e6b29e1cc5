"""A REST body over message_size_limit is refused before it is read (fast tier)."""

from __future__ import annotations

import asyncio
import json

import pytest

pytestmark = pytest.mark.fast

HUGE = 200 * 1024 * 1024


async def post_headers(port: int, path: str, headers: str) -> bytes:
    """Send a POST's headers and no body; the server's reply, as far as it comes in 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


async def test_a_declared_body_over_the_limit_is_refused_without_being_sent(chat_server, jp_http_port, jp_base_url):
    path = f"{jp_base_url}llmchat/api/rooms/general/messages"
    headers = f"Authorization: token tok-ada\r\nContent-Type: application/json\r\nContent-Length: {HUGE}\r\n"
    reply = await post_headers(jp_http_port, path, headers)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["message"].endswith("message_size_limit")


async def test_a_stranger_learns_nothing_from_the_limit(chat_server, jp_http_port, jp_base_url):
    path = f"{jp_base_url}llmchat/api/rooms/general/messages"
    reply = await post_headers(jp_http_port, path, f"Content-Type: application/json\r\nContent-Length: {HUGE}\r\n")
    assert reply.startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize("llmchat_config", [{"message_size_limit": 4096}])
async def test_a_chunked_body_over_the_limit_is_cut_off(chat_server, jp_http_port, jp_base_url, llmchat_config):
    path = f"{jp_base_url}llmchat/api/rooms/general/messages"
    chunk = json.dumps({"content": "x" * 8192}).encode()
    headers = "Authorization: token tok-ada\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")  # Tornado stops reading at the limit
    assert await chat_server.service.bus.messages("general", limit=5) == []
