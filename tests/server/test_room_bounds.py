"""A class in one room, without a model: presence stays linear, replay buffers are bounded
in bytes per room and for the whole server, and a room of huge messages always opens."""

from __future__ import annotations

import pytest
from support.fakes import ADA, BOB

from jupyter_llmchat.server.connection import Identity

pytestmark = pytest.mark.fast

KIB = 1024
MIB = 1024 * KIB


async def test_a_big_room_costs_each_arrival_one_small_presence_per_member(make_chat):
    chat = make_chat(max_connections=500, rate_limit=0)
    people = [chat.client(Identity(f"u{i}", f"User {i}")) for i in range(300)]
    for person in people:
        await person.join("class")
    await chat.settle()
    first = people[0]
    presences = first.take("Presence")
    assert len(presences) == 300  # its own arrival, then one per newcomer
    assert all(len(p["data"]["joined"]) == 1 and p["data"]["left"] == [] for p in presences)
    assert presences[-1]["data"]["count"] == 300
    total = sum(len(str(p)) for person in people for p in person.take("Presence"))
    assert total < 300 * 300 * 200  # ~N²/2 frames of ~100 bytes, not N³ member entries
    joined = (await chat.client(Identity("late", "Late")).join("class"))["data"]
    assert joined["count"] == 301 and len(joined["members"]) == 100  # the first 100, in order of arrival
    assert joined["members"][0]["username"] == "u0"
    info = await chat.service.room_info("class", offset=250, limit=100)
    assert info["count"] == 301 and [m["username"] for m in info["members"]][:2] == ["u250", "u251"]


async def test_the_replay_window_is_bounded_in_bytes_and_past_it_a_resume_resets(make_chat):
    chat = make_chat(replay_bytes=64 * KIB, message_size_limit=MIB)
    ada, bob = chat.client(ADA), chat.client(BOB)
    joined = await ada.join("big")
    await bob.join("big")
    for _ in range(10):
        bob.send("Text", {"content": "x" * (16 * KIB)}, room="big")
    await chat.settle()
    room = chat.bus.rooms["big"]
    assert room.replay_size <= 64 * KIB and len(room.replay) < 10
    back = chat.client(ADA)
    await back.join("big", since=joined["data"]["seq"], epoch=joined["data"]["epoch"])
    assert [f["type"] for f in back.take("Reset", "History")] == ["Reset", "History"]
    recent = room.replay[0][0] - 1  # from inside the window: replayed exactly
    again = chat.client(ADA)
    await again.join("big", since=recent, epoch=joined["data"]["epoch"])
    assert again.take("Reset") == [] and [f["seq"] for f in again.take("Text")] == [seq for seq, _, _ in room.replay]


async def test_all_rooms_together_stay_within_replay_memory_the_quietest_shrinking_first(make_chat):
    chat = make_chat(replay_bytes=MIB, replay_memory=256 * KIB, message_size_limit=MIB)
    ada = chat.client(ADA)
    for name in ("old", "newer", "newest"):
        await ada.join(name)
        for _ in range(8):
            ada.send("Text", {"content": "y" * (16 * KIB)}, room=name)
        await chat.settle()
        assert chat.bus.budget.used <= 256 * KIB
    sizes = {name: chat.bus.rooms[name].replay_size for name in ("old", "newer", "newest")}
    assert sizes["old"] < sizes["newer"] <= sizes["newest"] and sizes["newest"] > 100 * KIB


async def test_a_room_of_huge_messages_is_joined_resumed_and_paged_without_a_close(make_chat):
    chat = make_chat(send_queue_bytes=2 * MIB, message_size_limit=2 * MIB, replay_bytes=64 * MIB, rate_limit=0)
    ada = chat.client(ADA)
    joined = await ada.join("huge")
    for _ in range(12):
        ada.send("Text", {"content": "z" * (700 * KIB)}, room="huge")
    await chat.settle()
    newcomer = chat.client(BOB)
    await newcomer.join("huge")
    page = newcomer.one("History")["data"]["messages"]
    assert 1 <= len(page) < 12  # fewer, newest messages: within half the send queue
    assert newcomer.closed_with is None
    resumer = chat.client(ADA)
    await resumer.join("huge", since=joined["data"]["seq"], epoch=joined["data"]["epoch"])
    assert [f["type"] for f in resumer.take("Reset", "History")] == ["Reset", "History"]  # too much to replay
    assert resumer.closed_with is None
    request = newcomer.send("History", {"before_seq": joined["data"]["seq"] + 13, "limit": 50}, room="huge")
    await chat.settle()
    (older,) = [f for f in newcomer.take("History") if f.get("id") == request]
    assert 1 <= len(older["data"]["messages"]) < 12  # scrolling back pages too, within half the queue
    assert newcomer.closed_with is None


async def test_rooms_are_capped_in_all_and_per_connection(make_chat):
    chat = make_chat(max_rooms=3, max_rooms_per_connection=2)
    ada, bob = chat.client(ADA), chat.client(BOB)
    await ada.join("a")
    await ada.join("b")
    request = ada.send("Join", room="c")
    await chat.settle()
    error = ada.one("Error")
    assert error["id"] == request and error["data"]["code"] == 429
    await bob.join("c")
    request = bob.send("Join", room="d")
    await chat.settle()
    error = bob.one("Error")
    assert error["id"] == request and error["data"]["code"] == 503 and "max_rooms" in error["data"]["message"]
