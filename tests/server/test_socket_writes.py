"""What the server writes to a real socket (server/handlers.py `write_frames`): the frames of
one loop turn go out in one write, framed by the server itself; every size of frame
arrives whole and in order, with and without permessage-deflate."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.fast

SIZES = [1, 125, 126, 65_535, 65_536, 300_000]  # each length encoding of RFC 6455, both sides of it


@pytest.mark.parametrize("llmchat_config", [{}, {"enable_compression": True}], ids=["plain", "deflate"])
async def test_frames_of_every_size_arrive_whole_and_in_order(chat_server, connect, llmchat_config):
    options = {"compression_options": {}} if llmchat_config else {}
    reader, writer = await connect("tok-ada", **options), await connect("tok-bob")
    await reader.join("sizes")
    await writer.join("sizes")
    for n, size in enumerate(SIZES):
        await writer.send("Text", {"content": f"{n}:" + "z" * size}, room="sizes")
    texts = [(await reader.recv_type("Text"))["data"]["content"] for _ in SIZES]
    assert texts == [f"{n}:" + "z" * size for n, size in enumerate(SIZES)]
