"""REST API and Prometheus metrics (docs/protocol.md) on a real server, whose
model is the stand-in (fast tier)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.fast


async def test_rest_broadcast_reaches_socket_members_as_a_bot(chat_server, connect, api):
    member = await connect("tok-bob")
    await member.join("class")
    status, body = await api("POST", "rooms", "class", "messages", body={"content": "Hint: use a dict", "author_name": "teacher"})
    assert status == 201 and body["seq"] >= 1 and body["message_id"].startswith("m-")
    text = await member.recv_type("Text")
    assert text["seq"] == body["seq"]
    assert text["data"]["author"] == {"username": "ada", "name": "teacher", "kind": "bot"}
    status, body = await api("POST", "rooms", "class", "messages", body={"content": "default name"})
    assert (await member.recv_type("Text"))["data"]["author"]["name"] == "notebook"

    status, history = await api("GET", "rooms", "class", "messages", since=text["seq"])
    assert status == 200
    assert [m["data"]["content"] for m in history["messages"]] == ["default name"]
    assert history["head_seq"] == body["seq"]

    status, rooms = await api("GET", "rooms")
    assert {"room": "class", "members": 1, "head_seq": body["seq"]} in rooms["rooms"]


async def test_rest_generate_streams_into_the_room(chat_server, connect, api):
    member = await connect("tok-bob")
    await member.join("class")
    status, ack = await api("POST", "rooms", "class", "generate", body={"prompt": "Define a list.", "config": {"max_tokens": 5}})
    assert status == 202 and ack["queue_position"] == 0
    prompt = await member.recv_type("Text")
    assert prompt["data"]["author"]["kind"] == "bot"
    tokens = await member.answer(ack["message_id"])
    assert tokens[-1]["data"]["is_final"]


@pytest.mark.parametrize("standin_options", [{"delay": 0.5}])
@pytest.mark.parametrize("llmchat_config", [{"parallel": 1, "max_queue": 2, "owner_queue_reserve": 1}])
async def test_a_rest_bot_post_does_not_get_the_owners_queue_place(chat_server, api, jp_fetch, llmchat_config):
    """`author_name` makes a post a bot's, not the owner's: only the runtime secret does."""
    ask = {"prompt": "x", "author_name": "grader"}
    codes = [(await api("POST", "rooms", "class", "generate", body=ask))[0] for _ in range(3)]
    assert codes == [202, 202, 429]
    owner = {"Authorization": f"llmchat-secret {chat_server.settings['llmchat_secret']}"}
    reserved = await jp_fetch("llmchat", "api", "rooms", "class", "generate", method="POST", headers=owner, body=json.dumps(ask))
    assert json.loads(reserved.body)["queue_position"] == 2


@pytest.mark.parametrize(
    "method, path, body, code",
    [
        ("POST", ("rooms", "class", "messages"), {"content": ""}, 400),
        ("POST", ("rooms", "class", "messages"), "{oops", 400),
        ("POST", ("rooms", "bad room", "messages"), {"content": "x"}, 400),
        ("POST", ("rooms", "class", "generate"), {"prompt": "x", "config": {"top_p": 7}}, 400),
        ("POST", ("rooms", "class", "messages"), {"content": "x", "author_name": "n" * 129}, 400),
        ("GET", ("rooms", "never-used", "messages"), None, 404),
        ("GET", ("rooms", "class", "messages"), None, 400),
    ],
)
async def test_rest_bad_requests_get_clear_errors(chat_server, api, method, path, body, code):
    params = {"limit": "lots"} if path[-1] == "messages" and method == "GET" and path[1] == "class" else {}
    if params:
        await api("POST", "rooms", "class", "messages", body={"content": "exists"})
    status, error = await api(method, *path, body=body, **params)
    assert status == code, error
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize("llmchat_config", [{"message_size_limit": 2048, "rate_limit": 1.0, "rate_limit_burst": 3}])
async def test_rest_posts_obey_the_size_and_rate_limits(chat_server, connect, api, llmchat_config):
    member = await connect("tok-bob")
    await member.join("class")
    status, error = await api("POST", "rooms", "class", "messages", body={"content": "x" * 3000})
    assert status == 413 and "message_size_limit" in error["message"]
    status, _ = await api("POST", "rooms", "class", "generate", body={"prompt": "Hi", "config": {"max_tokens": 1}})
    codes = [status]
    for n in range(1, 6):
        status, _ = await api("POST", "rooms", "class", "messages", body={"content": f"spam {n}"})
        codes.append(status)
    assert codes[0] == 202 and 429 in codes  # the burst passes, the flood does not
    # nothing refused reached the room: the member sees exactly what was accepted
    accepted = codes.count(201)
    texts = [await member.recv_type("Text") for _ in range(1 + accepted)]  # the prompt + the posts
    assert [t["data"]["content"] for t in texts[1:]] == [f"spam {n}" for n in range(1, 6) if codes[n] == 201]


async def test_rest_needs_authentication(chat_server, api):
    status, _ = await api("GET", "stats", token="wrong")
    assert status == 403


async def test_stats_and_metrics_report_the_same_figures(chat_server, connect, api, jp_fetch):
    client = await connect()
    await client.join("general")
    await client.send("Generate", {"prompt": "Hi", "config": {"max_tokens": 3}}, room="general")
    ack = await client.recv_type("Ack")
    await client.answer(ack["data"]["message_id"])
    status, stats = await api("GET", "stats")
    assert status == 200
    assert stats["active_connections"] == 1
    assert stats["model"]["loaded"] and stats["model"]["tokens_generated"] >= 1
    response = await jp_fetch("metrics", headers={"Authorization": "token tok-ada"})
    text = response.body.decode()
    assert "llmchat_active_connections 1.0" in text
    assert 'llmchat_room_members{room="general"} 1.0' in text
    generated = [line for line in text.splitlines() if line.startswith("llmchat_model_tokens_generated_total")]
    assert generated and float(generated[0].split()[-1]) >= 1
    per_sequence = [line for line in text.splitlines() if line.startswith("llmchat_model_tokens_per_second_per_sequence ")]
    assert per_sequence, "each stream's speed is exported too"
    assert set(stats["model"]["kv_disk"]) == {"bytes", "files", "hits", "misses"}
    for line in ("llmchat_model_kv_disk_bytes 0.0", "llmchat_model_kv_disk_files 0.0", "llmchat_model_kv_disk_hits_total 0.0"):
        assert line in text, line


async def test_a_cookie_authenticated_post_needs_the_xsrf_token(chat_server, jp_fetch):
    # A browser's login cookie alone must not let another site post into a room.
    response = await jp_fetch(
        "llmchat", "api", "rooms", "class", "messages", method="POST", body='{"content": "x"}',
        headers={"Cookie": "test-login=tok-ada", "Authorization": ""}, raise_error=False,
    )
    assert response.code == 403


async def test_rest_history_pages_forward_from_since_through_the_whole_room(chat_server, api):
    for i in range(12):
        status, _ = await api("POST", "rooms", "paged", "messages", body={"content": f"m{i}"})
        assert status == 201
    seen, since = [], 0
    while True:
        status, page = await api("GET", "rooms", "paged", "messages", since=str(since), limit="5")
        if not page["messages"]:
            break
        seen += [m["data"]["content"] for m in page["messages"]]
        since = page["messages"][-1]["seq"]
    assert seen == [f"m{i}" for i in range(12)]  # in order, none skipped, none twice
