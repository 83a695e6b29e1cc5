"""Moderation through a real Jupyter server (stand-in model): who moderates by
`LLMChat.moderators`, the moderators-only room settings over REST, REST posts in an
announce-only room, the export over REST and `jupyter llmchat export` (fast tier)."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from jupyter_llmchat.kernel.cli import main as cli_main
from jupyter_llmchat.kernel.client import ChatClient
from jupyter_llmchat.kernel.discovery import find_server
from jupyter_llmchat.kernel.errors import ChatRequestError
from jupyter_llmchat.kernel.export import export

pytestmark = [pytest.mark.fast, pytest.mark.parametrize("llmchat_config", [{"moderators": ["bob"]}])]


async def test_named_moderator_runs_the_room_over_rest_and_the_socket(chat_server, connect, api, llmchat_config):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    assert ada.welcome["data"]["user"]["moderator"] is False and bob.welcome["data"]["user"]["moderator"] is True
    await ada.join("class")
    await bob.join("class")
    status, body = await api("PUT", "rooms", "class", body={"announce_only": True}, token="tok-ada")
    assert (status, body["code"]) == (403, 403) and "only moderators" in body["message"]
    status, body = await api("PUT", "rooms", "class", body={"announce_only": True}, token="tok-bob")
    assert status == 200 and body["announce_only"] is True
    status, body = await api("POST", "rooms", "class", "messages", body={"content": "hi"}, token="tok-ada")
    assert status == 403 and "announce-only" in body["message"]
    status, _ = await api("POST", "rooms", "class", "messages", body={"content": "Exam at 10"}, token="tok-bob")
    assert status == 201
    status, body = await api("PUT", "rooms", "class", body={"model_answers": False}, token="tok-bob")
    status, body = await api("POST", "rooms", "class", "generate", body={"prompt": "x"}, token="tok-bob")
    assert (status, body["message"]) == (403, "answers are off in this room")

    await bob.send("Mute", {"username": "ada", "seconds": 60}, room="class")
    ack = await bob.recv_type("Ack")
    line = await ada.recv_type("Text")
    while line["data"].get("mute") is None:
        line = await ada.recv_type("Text")
    assert line["data"]["message_id"] == ack["data"]["message_id"] and line["data"]["mute"]["username"] == "ada"


async def test_export_is_for_moderators_streams_and_leaves_deleted_out(chat_server, connect, api, jp_http_port, jp_base_url):
    ada = await connect("tok-ada")
    await ada.join("class")
    await api("POST", "rooms", "class", "messages", body={"content": "keep this"})
    _, gone = await api("POST", "rooms", "class", "messages", body={"content": "drop this"})
    await ada.send("Delete", {"message_id": gone["message_id"]}, room="class")
    await ada.recv_type("Deleted")
    status, body = await api("GET", "rooms", "class", "export", token="tok-ada")
    assert status == 403 and body["message"] == "only moderators can export a room"
    status, md = await api("GET", "rooms", "class", "export", token="tok-bob")
    assert status == 200 and "keep this" in md and "drop this" not in md and "# Room class" in md
    told = await ada.recv_type("Text")  # the room is told who took its transcript
    assert told["data"]["author"]["kind"] == "system" and told["data"]["content"] == "Bob exported this room's transcript."
    status, exported = await api("GET", "rooms", "class", "export", token="tok-bob", format="json")
    assert status == 200 and [m["content"] for m in exported["messages"] if m["author"]["kind"] != "system"] == ["keep this"]
    assert (await api("GET", "rooms", "class", "export", token="tok-bob", format="pdf"))[0] == 400
    assert (await api("GET", "rooms", "nowhere", "export", token="tok-bob"))[0] == 404

    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    out = io.BytesIO()
    written = await asyncio.to_thread(export, ChatClient(find_server(url, "tok-bob"), timeout=10), "class", "json", out)
    assert written == len(out.getvalue()) and json.loads(out.getvalue())["messages"][0]["content"] == "keep this"
    assert "drop this" not in out.getvalue().decode()
    with pytest.raises(ChatRequestError) as refused:
        await asyncio.to_thread(export, ChatClient(find_server(url, "tok-ada"), timeout=10), "class", "md", io.BytesIO())
    assert refused.value.code == 403
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(cli_main, ["--url", url, "--token", "tok-bob", "export", "class"], stdout, stderr)
    assert code == 0 and "keep this" in stdout.getvalue() and "drop this" not in stdout.getvalue()
