"""An authorizer whose `is_authorized` is a coroutine (JupyterHub's are) is awaited over the
socket too: at the upgrade and for every message type that needs "write" (fast tier)."""

from __future__ import annotations

import asyncio
import base64

import pytest
import tornado.httpclient
from jupyter_server.auth.authorizer import Authorizer

from jupyter_llmchat.server.handlers import WRITE_TYPES

pytestmark = pytest.mark.fast


class AsyncBobReadsOnly(Authorizer):
    """Bob may watch but not write; the answer comes after a suspension, as a Hub's would."""

    async def is_authorized(self, handler, user, action, resource) -> bool:
        await asyncio.sleep(0)
        return not (user.username == "bob" and action == "write")


class AsyncBobMayNotChat(Authorizer):
    """Bob has no permission on llmchat at all."""

    async def is_authorized(self, handler, user, action, resource) -> bool:
        await asyncio.sleep(0)
        return not (user.username == "bob" and resource == "llmchat")


BLOB = base64.b64encode(b"\x89PNG").decode()
WRITES = [  # (type, data, in the room): every message type that needs "write"
    ("Text", {"content": "hi"}, True),
    ("Generate", {"prompt": "answer in the room"}, True),
    ("Generate", {"prompt": "answer me alone"}, False),
    ("RoomSettings", {"system_prompt": "You are a pirate.", "context": "shared"}, True),
    ("Cancel", {"message_id": "m-0123456789abcdef"}, False),
    ("Custom", {"kind": "cursor", "payload": {"line": 3}}, True),
    ("Binary", {"data": BLOB, "mime_type": "image/png"}, True),
    ("Audio", {"data": "AAAA", "format": "wav"}, False),
    ("Delete", {"message_id": "m-0123456789abcdef"}, True),
    ("Edit", {"message_id": "m-0123456789abcdef", "content": "changed"}, True),
    ("Mute", {"username": "ada", "seconds": 60}, True),
]


@pytest.mark.parametrize("jp_server_config_extra", [{"authorizer_class": AsyncBobReadsOnly}])
async def test_a_read_only_user_is_refused_every_write_over_the_socket(chat_server, connect, api, jp_server_config_extra):
    assert {type_ for type_, _, _ in WRITES} == WRITE_TYPES  # every type that needs "write" is tried
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("general")
    await bob.join("general")
    before = await chat_server.service.settings.get("general")
    for n, (type_, data, in_room) in enumerate(WRITES):
        request_id = f"w-{n}"
        await bob.send(type_, data, id=request_id, **({"room": "general"} if in_room else {}))
        refused = await bob.recv_type("Error")
        assert (refused["id"], refused["data"]["code"]) == (request_id, 403), (type_, refused)
        assert type_ in refused["data"]["message"]
    await bob.send("Ping", id="still-reads")  # reading still works, and nothing above took effect
    assert (await bob.recv_type("Pong"))["id"] == "still-reads"
    history = await chat_server.service.history_data("general")
    assert history.messages == [] and history.head_seq == 2  # the two arrivals, nothing posted
    assert await chat_server.service.settings.get("general") == before
    assert chat_server.backend.requests == []  # the model answered nobody
    code, _ = await api("POST", "rooms", "general", "messages", body={"content": "hi"}, token="tok-bob")
    assert code == 403  # REST, as before
    await ada.send("Text", {"content": "ada may"}, room="general", id="ok")
    assert (await ada.recv_type("Text"))["data"]["content"] == "ada may"


@pytest.mark.parametrize("jp_server_config_extra", [{"authorizer_class": AsyncBobMayNotChat}])
async def test_a_user_without_llmchat_permission_is_refused_at_the_upgrade(chat_server, connect, api, jp_server_config_extra):
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect("tok-bob")
    assert refused.value.code == 403
    ada = await connect("tok-ada")
    assert ada.welcome["data"]["user"]["username"] == "ada"
    code, _ = await api("GET", "rooms", token="tok-bob")
    assert code == 403


@pytest.mark.parametrize("jp_server_config_extra", [{"authorizer_class": AsyncBobMayNotChat}])
@pytest.mark.parametrize("llmchat_config", [{"max_tokens": -5}])
async def test_a_server_whose_llmchat_did_not_start_awaits_the_authorizer_too(
    jp_serverapp, connect, api, jp_server_config_extra, llmchat_config
):
    """A bad setting leaves the routes answering why (503): still only to whom Jupyter lets in."""
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect("tok-bob", welcome=False)
    assert refused.value.code == 403
    ada = await connect("tok-ada", welcome=False)
    first = await ada.recv()
    assert first["type"] == "Error" and first["data"]["code"] == 503 and "max_tokens" in first["data"]["message"]
    code, body = await api("GET", "stats", token="tok-bob")
    assert code == 403
    code, body = await api("GET", "stats", token="tok-ada")
    assert code == 503 and "max_tokens" in body["error"]
