"""Moderation across servers sharing rooms through a real Redis (`room_bus = "redis://…"`):
a delete on one server removes the message for members of the other, replay on either
gives the tombstone, and a mute or an announce-only room set on one holds on the other at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.fakes import ADA, BOB, FakeClient
from support.waiting import until

from jupyter_llmchat.server.connection import Identity

pytestmark = pytest.mark.fast
TEACHER = Identity("teach", "Ms Teacher", moderator=True)


async def joined(client: FakeClient, room: str, **data: Any) -> dict[str, Any]:
    await client.asend("Join", data, room=room)
    await until(lambda: any(f["type"] == "Joined" for f in client.inbox))
    return client.one("Joined")["data"]


def of(client: FakeClient, type_: str) -> list[dict[str, Any]]:
    return [f for f in client.inbox if f["type"] == type_]


async def test_delete_mute_and_announce_only_hold_on_every_server(servers):
    a, b = servers(), servers()
    ada, teacher = a.client(ADA), b.client(TEACHER)
    start = await joined(ada, "mod-r")
    await joined(teacher, "mod-r")
    await ada.asend("Text", {"content": "rude words"}, room="mod-r")
    await until(lambda: of(teacher, "Text"))
    message_id = of(teacher, "Text")[0]["data"]["message_id"]

    await teacher.asend("Delete", {"message_id": message_id}, room="mod-r")  # on the other server
    await until(lambda: of(ada, "Deleted") and len(of(ada, "Text")) == 2)
    assert of(ada, "Deleted")[0]["data"] == {"message_id": message_id}
    assert of(ada, "Text")[1]["data"]["content"] == "Ms Teacher removed a message by Ada Lovelace."
    stored = await a.bus.message("mod-r", message_id=message_id)
    assert stored[1].deleted is True and stored[1].content == ""
    local = a.bus.local["mod-r"]  # a server that missed the publishes heals from the stream: tombstones too
    sent, local.room.head_seq = local.room.head_seq, start["seq"]
    _, healed = await a.bus._heal(local, None)
    local.room.head_seq = sent
    assert healed and "rude words" not in b"".join(frame for _, frame in healed).decode()
    for server in (a, b):  # a client resuming on either server is replayed the tombstone
        late = server.client(BOB)
        await joined(late, "mod-r", since=start["seq"], epoch=start["epoch"])
        await until(lambda: of(late, "Deleted"))
        assert "rude words" not in json.dumps(late.inbox) and of(late, "Text")[0]["data"]["deleted"] is True

    await teacher.asend("Mute", {"username": "ada", "seconds": 300}, room="mod-r")
    await until(lambda: any(f["data"].get("mute") for f in of(ada, "Text")))
    await ada.asend("Text", {"content": "still here"}, room="mod-r")
    await until(lambda: of(ada, "Error"))
    assert of(ada, "Error")[0]["data"]["message"].startswith("you are muted in this room until")
    await teacher.asend("Mute", {"username": "ada", "seconds": 0}, room="mod-r")
    await teacher.asend("RoomSettings", {"announce_only": True}, room="mod-r")
    await until(lambda: of(teacher, "RoomSettings"))
    ada.take("Error")
    await ada.asend("Generate", {"prompt": "hi"}, room="mod-r")
    await until(lambda: of(ada, "Error"))
    assert "announce-only" in of(ada, "Error")[0]["data"]["message"]
