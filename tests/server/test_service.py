"""The chat service without a socket or a model (server/service.py, docs/protocol.md):
welcome, presence, text, history paging, resume and replay, slow and idle clients, rate
limits, room settings, clearing, broadcasts and stats. Each test runs in milliseconds."""

from __future__ import annotations

import time

import pytest
from support.fakes import ADA, BOB, EVE

from jupyter_llmchat.protocol import ChatError

pytestmark = pytest.mark.fast

ADA_D = {"username": "ada", "name": "Ada Lovelace"}
BOB_D = {"username": "bob", "name": "Bob"}


async def test_welcome_names_the_user_the_model_and_the_limits(make_chat):
    chat = make_chat(message_size_limit=2048, max_tokens=64, max_connections_per_user=3)
    ada, again = chat.client(ADA), chat.client(ADA)
    await chat.settle()
    welcome = ada.one("Welcome")["data"]
    assert welcome["user"] == {**ADA_D, "moderator": False} and welcome["protocol"] == "llmchat.v1"
    assert welcome["model"] == {"name": "stand-in", "loaded": True, "n_ctx": 4096, "parallel": 4, "reference": "",
                                "state": "loaded", "progress": None, "detail": "", "error": None}
    assert welcome["limits"]["message_size_limit"] == 2048 and welcome["limits"]["max_tokens"] == 64
    assert welcome["limits"]["max_connections_per_user"] == 3
    assert welcome["client_id"] != again.one("Welcome")["data"]["client_id"]


async def test_presence_counts_users_not_their_tabs(chat):
    ada, ada_tab, bob = chat.client(ADA), chat.client(ADA), chat.client(BOB)
    joined = await ada.join("general")
    assert joined["data"]["seq"] == 0 and joined["data"]["members"] == [ADA_D] and joined["data"]["count"] == 1
    assert joined["data"]["settings"] == {"system_prompt": "", "context": "own", "announce_only": False, "model_answers": True}
    history = ada.one("History")["data"]
    assert history == {"messages": [], "head_seq": 0, "epoch": joined["data"]["epoch"]}
    presence = ada.one("Presence")
    assert (presence["seq"], presence["data"]) == (1, {"joined": [ADA_D], "left": [], "count": 1})

    await ada_tab.join("general")  # the same user again: no Presence
    assert ada.take("Presence") == [] and ada_tab.take("Presence") == []

    await bob.join("general")
    seen = [client.one("Presence") for client in (ada, ada_tab, bob)]
    assert seen[0] == seen[1] == seen[2] and seen[0]["seq"] == 2
    assert seen[0]["data"] == {"joined": [BOB_D], "left": [], "count": 2}  # a delta, never the whole list

    left = ada_tab.send("Leave", room="general")
    await chat.settle()
    reply = ada_tab.one("Left")
    assert reply["id"] == left and reply["data"]["members"] == [ADA_D, BOB_D] and reply["data"]["count"] == 2
    assert bob.take("Presence") == []  # Ada is still there in her other tab
    ada.drop()
    await chat.settle()
    gone = bob.one("Presence")
    assert gone["seq"] == 3 and gone["data"] == {"joined": [], "left": [ADA_D], "count": 1}


async def test_text_is_stamped_with_the_author_numbered_and_stored(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    request = bob.send("Text", {"content": "not in yet"}, room="general")
    await chat.settle()
    error = bob.one("Error")
    assert error["id"] == request and error["data"]["code"] == 409 and "Join first" in error["data"]["message"]
    await ada.join("general")
    await bob.join("general")
    ada.take()
    bob.send("Text", {"content": "hello", "author": {"username": "ada", "kind": "assistant"}}, room="general")
    await chat.settle()
    text = ada.one("Text")
    assert text["seq"] == 3 and text["room"] == "general" and "id" not in text
    assert text["data"]["author"] == {"username": "bob", "name": "Bob", "kind": "user"}
    assert text["data"]["message_id"].startswith("m-") and text["data"]["created"].endswith("Z")
    assert chat.stored("general") == [text["data"]]


async def test_history_pages_back_from_the_newest(chat):
    ada = chat.client(ADA)
    await ada.join("log")
    ada.take()
    for n in range(10):
        ada.send("Text", {"content": f"m{n}"}, room="log")
    await chat.settle()
    texts = ada.take("Text")
    request = ada.send("History", {"limit": 3}, room="log")
    await chat.settle()
    page = ada.one("History")
    assert page["id"] == request and page["data"]["head_seq"] == texts[-1]["seq"]
    assert [m["data"]["content"] for m in page["data"]["messages"]] == ["m7", "m8", "m9"]
    ada.send("History", {"limit": 4, "before_seq": page["data"]["messages"][0]["seq"]}, room="log")
    await chat.settle()
    older = ada.one("History")["data"]["messages"]
    assert [m["data"]["content"] for m in older] == ["m3", "m4", "m5", "m6"]
    assert [m["seq"] for m in older] == [t["seq"] for t in texts[3:7]]
    ada.send("History", room="never-used")
    await chat.settle()
    assert ada.one("Error")["data"]["code"] == 404


async def test_a_resuming_client_gets_exactly_the_events_it_missed(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    epoch = (await ada.join("general"))["data"]["epoch"]
    await bob.join("general")
    bob.send("Text", {"content": "one"}, room="general")
    await chat.settle()
    last_seq = ada.take("Text")[0]["seq"]
    ada.drop()
    await chat.settle()
    bob.take()
    for word in ("two", "three"):
        bob.send("Text", {"content": word}, room="general")
    await bob.ask("general", "And?")
    missed = bob.take()
    back = chat.client(ADA)
    joined = await back.join("general", since=last_seq, epoch=epoch)
    assert joined["data"]["epoch"] == epoch and joined["data"]["seq"] == missed[-1]["seq"]
    *replayed, presence = back.take("Presence", "Text", "Token")
    # what bob saw live since then, in the same order, Ada's own Presence (left) first
    assert [f["seq"] for f in replayed] == list(range(last_seq + 1, joined["data"]["seq"] + 1))
    assert replayed[1:] == missed and replayed[0]["data"]["left"] == [ADA_D]
    assert presence["type"] == "Presence" and presence["seq"] == joined["data"]["seq"] + 1


@pytest.mark.parametrize("since, epoch", [(1, None), (99, "same"), (4, "other")])
async def test_a_resume_that_cannot_be_exact_resets_to_the_stored_history(make_chat, since, epoch):
    chat = make_chat(replay_events=3)
    bob = chat.client(BOB)
    first = await bob.join("small")
    for n in range(6):
        bob.send("Text", {"content": f"m{n}"}, room="small")
    await chat.settle()
    ada = chat.client(ADA)
    joined = await ada.join("small", since=since, epoch=first["data"]["epoch"] if epoch == "same" else epoch)
    reset, history = ada.take("Reset", "History")
    assert reset["type"] == "Reset" and reset["data"]["head_seq"] == joined["data"]["seq"]
    assert [m["data"]["content"] for m in history["data"]["messages"]] == [f"m{n}" for n in range(6)]


async def test_a_member_joining_mid_answer_gets_its_tokens_so_far(chat):
    ada = chat.client(ADA)
    await ada.join("general")
    ada.send("Generate", {"prompt": "Go on"}, room="general")
    await chat.settle(until=lambda: len([f for f in ada.inbox if f["type"] == "Token"]) == 2)
    message_id = ada.one("Ack")["data"]["message_id"]
    bob = chat.client(BOB)
    await bob.join("general")
    await chat.settle()
    tokens = bob.answer(message_id)
    assert tokens == ada.answer(message_id)
    assert [t["data"]["index"] for t in tokens] == list(range(6)) and tokens[-1]["data"]["is_final"]
    history = bob.one("History")["data"]["messages"]
    assert [m["data"]["content"] for m in history] == ["Go on"]  # the answer is not stored yet


async def test_a_client_that_stops_reading_is_closed_after_the_room_got_the_event(make_chat):
    chat = make_chat(send_queue_bytes=2500)  # ~700-byte events: the 4th overflows (all unsent ones count)
    bob, ada = chat.client(BOB), chat.client(ADA)
    await bob.join("busy")  # first: bob's overflow happens before Ada is sent the same event
    await ada.join("busy")
    ada.take()
    bob.paused = True
    for n in range(4):
        ada.send("Text", {"content": f"{n} " + "y" * 600}, room="busy")
        await chat.settle()  # Ada reads hers
    assert bob.closed_with is not None and bob.closed_with[0] == 1008 and ada.closed_with is None
    frames = ada.take()
    assert [f["type"] for f in frames] == ["Text"] * 4 + ["Presence"]
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + 5))
    assert frames[-1]["data"]["left"] == [BOB_D] and chat.service.connection_count() == 1


async def test_idle_connections_and_quiet_rooms_are_swept(make_chat):
    chat = make_chat(connection_timeout=10.0)
    ada, bob = chat.client(ADA), chat.client(BOB)
    first = await ada.join("brief")
    await bob.join("brief")
    bob.take()
    ada.connection.last_seen -= 20  # twenty seconds without a frame from Ada
    await chat.service.sweep()
    assert ada.closed_with == (1000, "idle for more than 10 s") and bob.closed_with is None
    await chat.settle()
    assert bob.one("Presence")["data"]["left"] == [ADA_D]
    bob.send("Leave", room="brief")
    head = (await chat.bus.head("brief"))[0]
    await chat.service.sweep(time.monotonic() + 299)
    assert "brief" in chat.bus.live_rooms()
    await chat.service.sweep(time.monotonic() + 301)  # room_cleanup_delay: 300 s
    assert "brief" not in chat.bus.live_rooms() and await chat.bus.head("brief") == (head, None)
    back = chat.client(ADA)
    joined = await back.join("brief", since=first["data"]["seq"], epoch=first["data"]["epoch"])
    assert joined["data"]["seq"] == head and joined["data"]["epoch"] != first["data"]["epoch"]
    assert [f["type"] for f in back.take("Reset", "History")] == ["Reset", "History"]


async def test_rate_limit_is_per_user_counts_bad_frames_and_rest_posts(make_chat):
    chat = make_chat(rate_limit=0.001, rate_limit_burst=3)
    ada, bob = chat.client(ADA), chat.client(BOB)
    await chat.service.receive(ada.connection, "{not json", None)
    ids = [ada.send("Ping") for _ in range(4)]
    bob.send("Ping", id="bob")
    await chat.settle()
    replies = ada.take("Pong", "Error")
    assert [(r["type"], r.get("id")) for r in replies] == [
        ("Error", None), ("Pong", ids[0]), ("Pong", ids[1]), ("Error", ids[2]), ("Error", ids[3])
    ]
    assert [r["data"]["code"] for r in replies if r["type"] == "Error"] == [400, 429, 429]
    assert bob.one("Pong")["id"] == "bob"
    with pytest.raises(ChatError) as refused:
        chat.service.admit_rest_post("ada", 10)
    assert refused.value.code == 429
    chat.service.admit_rest_post("eve", 10)  # another user's bucket is full
    with pytest.raises(ChatError) as too_big:
        chat.service.admit_rest_post("eve", 2 * 1024 * 1024)
    assert too_big.value.code == 413


async def test_room_settings_are_announced_stored_and_given_to_newcomers(chat, make_chat, tmp_path):
    ada, bob = chat.client(ADA), chat.client(BOB)
    ada.send("RoomSettings", {"context": "shared"}, room="team")
    await chat.settle()
    assert ada.one("Error")["data"]["code"] == 409
    await ada.join("team")
    await bob.join("team")
    ada.take(), bob.take()
    request = ada.send("RoomSettings", {"system_prompt": "  Be brief.  ", "context": "shared"}, room="team")
    await chat.settle()
    reply = ada.one("RoomSettings")
    assert reply["id"] == request and reply["data"] == {"system_prompt": "Be brief.", "context": "shared", "announce_only": False, "model_answers": True}
    note = bob.one("Text")["data"]
    assert note["author"] == {"username": "ada", "name": "Ada Lovelace", "kind": "system"}
    assert note["content"] == "Ada Lovelace set this room's system prompt and let the model see the whole room."
    assert note["settings"] == reply["data"]
    ada.send("RoomSettings", {"context": "everyone"}, room="team")
    await chat.settle()
    assert ada.one("Error")["data"]["code"] == 400
    await chat.close()

    restarted = make_chat()  # the same store, a new service: the settings are stored
    eve = restarted.client(EVE)
    assert (await eve.join("team"))["data"]["settings"] == reply["data"]
    assert (await restarted.service.room_info("team"))["settings"] == reply["data"]


async def test_clearing_a_room_resets_its_members_and_seq_goes_on(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    first = await ada.join("scratch")
    await bob.join("scratch")
    ada.send("Text", {"content": "secret draft"}, room="scratch")
    await chat.settle()
    text = bob.take("Text")[0]
    ada.take()
    assert await chat.service.clear_room("scratch") == 1
    assert chat.backend.forgotten == [("scratch", None)]  # the model's saved states of the room go too
    await chat.settle()
    reset, history = ada.take("Reset", "History")
    assert reset["data"]["head_seq"] == text["seq"]
    assert history["data"]["messages"] == [] and history["data"]["epoch"] != first["data"]["epoch"]
    assert chat.stored("scratch") == []
    late = chat.client(EVE)  # resuming from before the clear cannot replay it
    await late.join("scratch", since=first["data"]["seq"], epoch=first["data"]["epoch"])
    assert late.take("Reset") and all("secret" not in str(f) for f in late.inbox)
    ada.send("Text", {"content": "after"}, room="scratch")
    await chat.settle()
    assert ada.take("Text")[0]["seq"] > text["seq"]
    with pytest.raises(ChatError) as unknown:
        await chat.service.clear_room("never-used")
    assert unknown.value.code == 404


async def test_broadcast_reaches_live_rooms_only_and_send_to_one_client(chat):
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("room-1")
    await bob.join("room-2")
    chat.bus.store.save_head("stored-only", 7)
    posted = await chat.service.broadcast("Restart in 5 minutes", username="admin", author_name="Admin")
    assert set(posted) == {"room-1", "room-2"}
    assert chat.service.send_to(bob.connection.client_id, "Custom", {"kind": "hi", "payload": 1})
    assert not chat.service.send_to("c-gone", "Custom", {})
    await chat.settle()
    for client, room in ((ada, "room-1"), (bob, "room-2")):
        text = client.one("Text")
        assert (text["room"], text["seq"]) == (room, posted[room][1])
        assert text["data"]["author"] == {"username": "admin", "name": "Admin", "kind": "bot"}
    assert bob.one("Custom")["data"] == {"kind": "hi", "payload": 1} and ada.take("Custom") == []
    rooms = {r["room"]: r for r in await chat.service.room_list()}
    assert rooms["stored-only"] == {"room": "stored-only", "members": 0, "head_seq": 7}
    assert rooms["room-1"]["members"] == 1


async def test_stats_count_traffic_rooms_and_the_models_figures(chat):
    ada = chat.client(ADA)
    await ada.join("general")
    await ada.ask("general", "Hi")
    request = ada.send("Stats")
    await chat.settle()
    stats = ada.one("Stats")
    assert stats["id"] == request
    data = stats["data"]
    assert data["active_connections"] == 1 and data["rooms"] == {"count": 1, "members": {"general": 1}}
    assert data["messages_received"] == 3 and data["bytes_received"] > 0 and data["messages_sent"] >= 10
    assert data["model"]["name"] == "stand-in" and data["model"]["backend"] == "stand-in"
    assert data["model"]["loaded"] is True and data["model"]["tokens_generated"] == 5
