"""llmchat.v1 over a real socket: welcome, rooms, text, history, errors (docs/protocol.md).
The server's model is the stand-in (fast tier)."""

from __future__ import annotations

import base64
import json

import pytest
import tornado.httpclient

pytestmark = pytest.mark.fast


async def test_welcome_names_the_authenticated_user_and_the_model(chat_server, connect):
    client = await connect("tok-ada")
    assert client.ws.selected_subprotocol == "llmchat.v1"
    data = client.welcome["data"]
    assert data["user"] == {"username": "ada", "name": "Ada Lovelace", "moderator": False}
    assert data["protocol"] == "llmchat.v1"
    # the packaged model ("" reference), brought in by the managed backend (here around the stand-in)
    assert data["model"] == {"name": "stand-in", "loaded": True, "n_ctx": 4096, "parallel": 4, "reference": "",
                             "state": "loaded", "progress": None, "detail": "", "error": None}
    assert data["limits"]["message_size_limit"] == 1024 * 1024
    assert data["client_id"]
    ping = await client.send("Ping")
    pong = await client.recv()
    assert pong == {"type": "Pong", "id": ping, "data": {}}


async def test_unauthenticated_upgrade_is_refused(chat_server, connect):
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect(None, welcome=False)
    assert refused.value.code == 403
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect("not-a-token", welcome=False)
    assert refused.value.code == 403


async def test_cross_origin_upgrade_is_refused(chat_server, connect, jp_http_port):
    # A browser authenticates with its login cookie; another site's page must not ride on it.
    login = {"Cookie": "test-login=tok-ada"}
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await connect(None, headers={**login, "Origin": "http://evil.example"}, welcome=False)
    assert refused.value.code == 403
    same_origin = await connect(None, headers={**login, "Origin": f"http://127.0.0.1:{jp_http_port}"})
    assert same_origin.welcome["data"]["user"]["username"] == "ada"


@pytest.mark.parametrize("jp_server_config_extra", [{"allow_origin": "http://friend.example"}])
async def test_an_origin_admitted_by_allow_origin_is_accepted(chat_server, connect, jp_server_config_extra):
    login = {"Cookie": "test-login=tok-ada"}
    friend = await connect(None, headers={**login, "Origin": "http://friend.example"})
    assert friend.welcome["type"] == "Welcome"
    with pytest.raises(tornado.httpclient.HTTPClientError):
        await connect(None, headers={**login, "Origin": "http://evil.example"}, welcome=False)


async def test_room_members_see_the_same_events_in_order(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    joined = await ada.join("general")
    assert joined["data"]["members"] == [{"username": "ada", "name": "Ada Lovelace"}] and joined["data"]["count"] == 1
    history = await ada.recv_type("History")
    assert history["data"]["messages"] == [] and history["data"]["head_seq"] == 0
    presence = await ada.recv_type("Presence")
    assert presence["seq"] == 1 and presence["data"] == {"joined": [{"username": "ada", "name": "Ada Lovelace"}], "left": [], "count": 1}

    await bob.join("general")
    bob_sees = await bob.recv_type("Presence")
    ada_sees = await ada.recv_type("Presence")
    assert bob_sees == ada_sees and bob_sees["seq"] == 2
    assert bob_sees["data"] == {"joined": [{"username": "bob", "name": "Bob"}], "left": [], "count": 2}  # a delta, not the list

    # The client cannot choose its author: the server stamps the authenticated user.
    await bob.send("Text", {"content": "hello **room**", "author": {"username": "ada"}}, room="general")
    for client in (ada, bob):
        text = await client.recv_type("Text")
        assert text["seq"] == 3
        assert text["data"]["content"] == "hello **room**"
        assert text["data"]["author"] == {"username": "bob", "name": "Bob", "kind": "user"}
        assert "id" not in text

    request = await ada.send("History", {"limit": 10}, room="general")
    history = await ada.recv_type("History")
    assert history["id"] == request
    assert [m["data"]["content"] for m in history["data"]["messages"]] == ["hello **room**"]
    assert history["data"]["head_seq"] == 3

    left = await bob.send("Leave", room="general")
    reply = await bob.recv_type("Left")
    assert reply["id"] == left
    gone = await ada.recv_type("Presence")
    assert gone["data"] == {"joined": [], "left": [{"username": "bob", "name": "Bob"}], "count": 1} and gone["seq"] == 4


async def test_custom_and_binary_are_relayed_to_the_room(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("lab")
    await bob.join("lab")
    await ada.send("Custom", {"kind": "cursor", "payload": {"line": 3}}, room="lab")
    custom = await bob.recv_type("Custom")
    assert custom["data"]["kind"] == "cursor" and custom["data"]["payload"] == {"line": 3}
    assert custom["data"]["author"]["username"] == "ada"
    blob = base64.b64encode(b"\x89PNG tiny").decode()
    await ada.send("Binary", {"data": blob, "mime_type": "image/png"}, room="lab")
    binary = await bob.recv_type("Binary")
    assert binary["data"]["data"] == blob and binary["data"]["mime_type"] == "image/png"
    assert binary["seq"] == custom["seq"] + 1


@pytest.mark.parametrize(
    "frame, code, words",
    [
        ("{not json", 400, "malformed JSON"),
        (json.dumps({"type": "Dance", "data": {}}), 400, "unknown message type"),
        (json.dumps({"type": "Join", "room": "bad room!", "data": {}}), 400, "room"),
        (json.dumps({"type": "Text", "room": "general", "data": {}}), 400, "content"),
        (json.dumps({"type": "Join", "data": {}}), 400, "needs a `room`"),
        (json.dumps({"type": "Generate", "room": "general", "data": {"prompt": "x", "config": {"temperature": -1}}}), 400, "temperature"),
        (json.dumps({"type": "Text", "room": "general", "data": {"content": "hi"}}), 409, "Join first"),
        (json.dumps({"type": "History", "room": "nowhere", "data": {}}), 404, "unknown room"),
        (json.dumps({"type": "Cancel", "data": {"message_id": "m-none"}}), 404, "unknown message"),
        (json.dumps({"type": "Audio", "data": {"data": "AAAA", "format": "wav"}}), 501, "not supported"),
        ('{"type": "Text", "room": "general", "data": ' + "[" * 5000 + "]" * 5000 + "}", 400, "nested too deeply"),
        (json.dumps({"type": "Join", "room": "general\n", "data": {}}), 400, "room"),
        (json.dumps({"type": "Join", "room": "r" * 129, "data": {}}), 400, "room"),
        (json.dumps({"type": "History", "room": "general", "data": {"before_seq": 2**63}}), 400, "before_seq"),
    ],
)
async def test_bad_messages_get_an_error_and_the_socket_stays_open(chat_server, connect, frame, code, words):
    client = await connect()
    await client.ws.write_message(frame)
    error = await client.recv()
    assert error["type"] == "Error"
    assert error["data"]["code"] == code
    assert words in error["data"]["message"]
    await client.send("Ping", id="still-there")
    assert (await client.recv())["id"] == "still-there"


async def test_error_echoes_the_request_id(chat_server, connect):
    client = await connect()
    await client.ws.write_message(json.dumps({"type": "Leave", "id": "x-1", "data": {}}))
    error = await client.recv()
    assert error == {"type": "Error", "id": "x-1", "data": {"message": "Leave needs a `room`", "code": 400}}
    # an envelope that does not validate still gets its id back
    await client.ws.write_message(json.dumps({"type": "Join", "id": "x-2", "room": "bad room!", "data": {}}))
    assert (await client.recv())["id"] == "x-2"


async def test_binary_limits(chat_server, connect):
    client = await connect()
    await client.join("files")
    await client.send("Binary", {"data": "%%% not base64"}, room="files")
    assert (await client.recv_type("Error"))["data"]["code"] == 400
    big = base64.b64encode(b"x" * (512 * 1024 + 1)).decode()
    await client.send("Binary", {"data": big}, room="files")
    assert (await client.recv_type("Error"))["data"]["code"] == 413


async def test_resume_after_a_drop_replays_exactly_the_missed_events(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    epoch = (await ada.join("general"))["data"]["epoch"]
    await bob.join("general")
    await bob.send("Text", {"content": "one"}, room="general")
    last_seq = (await ada.recv_type("Text"))["seq"]
    ada.close()
    await bob.recv_type("Presence")  # ada left
    for word in ("two", "three"):
        await bob.send("Text", {"content": word}, room="general")
    back = await connect("tok-ada")
    joined = await back.join("general", since=last_seq, epoch=epoch)
    assert joined["data"]["epoch"] == epoch
    replayed = [await back.recv() for _ in range(joined["data"]["seq"] - last_seq)]
    assert [frame["seq"] for frame in replayed] == list(range(last_seq + 1, joined["data"]["seq"] + 1))
    assert [f["data"]["content"] for f in replayed if f["type"] == "Text"] == ["two", "three"]
    presence = await back.recv()  # then live events: ada is back
    assert presence["type"] == "Presence" and presence["seq"] == joined["data"]["seq"] + 1


@pytest.mark.parametrize("llmchat_config", [{"replay_events": 3}])
async def test_a_since_older_than_the_replay_window_resets(chat_server, connect, llmchat_config):
    bob = await connect("tok-bob")
    joined = await bob.join("small")
    for n in range(6):
        await bob.send("Text", {"content": f"m{n}"}, room="small")
    ada = await connect("tok-ada")
    joined = await ada.join("small", since=1, epoch=joined["data"]["epoch"])
    reset = await ada.recv()
    assert reset["type"] == "Reset" and reset["data"]["head_seq"] == joined["data"]["seq"]
    history = await ada.recv()
    assert history["type"] == "History"
    assert [m["data"]["content"] for m in history["data"]["messages"]] == [f"m{n}" for n in range(6)]
    wrong_epoch = await connect("tok-ada")
    await wrong_epoch.join("small", since=joined["data"]["seq"], epoch="not-the-epoch")
    assert (await wrong_epoch.recv())["type"] == "Reset"


async def test_stats_over_the_socket(chat_server, connect):
    client = await connect()
    await client.join("general")
    request = await client.send("Stats")
    stats = await client.recv_type("Stats")
    assert stats["id"] == request
    data = stats["data"]
    assert data["active_connections"] == 1
    assert data["rooms"] == {"count": 1, "members": {"general": 1}}
    assert data["messages_received"] == 2 and data["bytes_received"] > 0
    assert data["messages_sent"] >= 3
    for key in ("name", "loaded", "n_ctx", "parallel", "active_sequences", "queue_depth",
                "tokens_generated", "tokens_per_second", "prompt_tokens_evaluated"):
        assert key in data["model"], key
    assert data["model"]["parallel"] == 4
