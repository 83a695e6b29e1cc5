"""Rooms a teacher can run (server/moderation.py, docs/moderation.md): delete and edit,
mute, announce-only, answers off, and every refusal, over the memory bus with the stand-in."""

from __future__ import annotations

import json

import pytest
from support.fakes import ADA, BOB, EVE

from jupyter_llmchat.server.connection import Identity
from jupyter_llmchat.server.export import transcript

pytestmark = pytest.mark.fast

TEACHER = Identity("teach", "Ms Teacher", moderator=True)


async def _room(chat, *users, room="class"):
    clients = [chat.client(user) for user in users]
    for client in clients:
        await client.join(room)
    for client in clients:
        client.take()
    return clients


async def _post(chat, client, content, room="class"):
    client.send("Text", {"content": content}, room=room)
    await chat.settle()
    return client.take("Text")[-1]


def _error(client):
    return client.one("Error")["data"]


async def test_welcome_says_who_moderates(chat):
    ada, teacher = chat.client(ADA), chat.client(TEACHER)
    await chat.settle()
    assert ada.one("Welcome")["data"]["user"] == {"username": "ada", "name": "Ada Lovelace", "moderator": False}
    assert teacher.one("Welcome")["data"]["user"]["moderator"] is True


async def test_author_deletes_own_message_for_everyone_and_it_is_a_tombstone_everywhere(chat):
    ada, bob = await _room(chat, ADA, BOB)
    first = await _room(chat, EVE)
    eve = first[0]
    joined_seq = (await chat.service.bus.head("class"))[0]
    text = await _post(chat, ada, "oops, my password is hunter2")
    bob.take(), eve.take()
    message_id = text["data"]["message_id"]
    ada.send("Delete", {"message_id": message_id}, room="class")
    await chat.settle()
    for client in (ada, bob, eve):
        deleted = client.one("Deleted")
        assert deleted["data"] == {"message_id": message_id} and deleted["seq"] == text["seq"] + 1
        assert client.take("Text") == []  # the author's own delete is no moderator action: no system line
    stored = chat.stored("class")
    assert stored[-1]["deleted"] is True and stored[-1]["content"] == "" and "hunter2" not in json.dumps(stored)
    history = (await chat.service.history_data("class")).messages
    assert history[-1]["data"]["deleted"] is True and "hunter2" not in json.dumps(history)
    late = chat.client(EVE)  # resumes from before the message: replay gives the tombstone
    await late.join("class", since=joined_seq, epoch=(await chat.service.bus.head("class"))[1])
    replayed = late.take("Text", "Deleted")
    assert [f["type"] for f in replayed] == ["Text", "Deleted"]
    assert replayed[0]["data"]["deleted"] is True and "hunter2" not in json.dumps(late.inbox + replayed)


async def test_deleting_refusals(chat):
    ada, bob = await _room(chat, ADA, BOB)
    text = await _post(chat, ada, "mine")
    bob.take()
    bob.send("Delete", {"message_id": text["data"]["message_id"]}, room="class")
    await chat.settle()
    assert _error(bob) == {"code": 403, "message": "only its author or a moderator can delete this message"}
    bob.send("Delete", {"message_id": "m-nope"}, room="class")
    await chat.settle()
    assert _error(bob)["code"] == 404
    bob.send("Delete", {}, room="class")
    await chat.settle()
    assert _error(bob)["code"] == 400
    bob.send("Delete", {"message_id": text["data"]["message_id"]})  # no room
    await chat.settle()
    assert _error(bob)["code"] == 400
    ada.send("Delete", {"message_id": text["data"]["message_id"]}, room="class")
    ada.send("Delete", {"message_id": text["data"]["message_id"]}, room="class")
    await chat.settle()
    assert _error(ada)["code"] == 409  # already deleted
    outsider = chat.client(EVE)
    outsider.send("Delete", {"message_id": text["data"]["message_id"]}, room="class")
    await chat.settle()
    assert _error(outsider)["code"] == 409  # not a member


async def test_moderator_deletes_anyones_message_with_a_system_line_and_a_log_line(chat, caplog):
    ada, teacher = await _room(chat, ADA, TEACHER)
    text = await _post(chat, ada, "something rude")
    teacher.take()
    with caplog.at_level("INFO", logger="jupyter_llmchat"):
        teacher.send("Delete", {"message_id": text["data"]["message_id"]}, room="class")
        await chat.settle()
    assert ada.one("Deleted")["data"]["message_id"] == text["data"]["message_id"]
    line = ada.one("Text")["data"]
    assert line["author"]["kind"] == "system" and line["content"] == "Ms Teacher removed a message by Ada Lovelace."
    assert any("moderator 'teach' deleted message" in record.getMessage() for record in caplog.records)


async def test_a_deleted_question_and_answer_leave_the_models_context(chat):
    (ada,) = await _room(chat, ADA)
    await ada.ask("class", "my secret is swordfish")
    question = next(d for d in chat.stored("class") if d["author"]["kind"] == "user")
    ada.take()
    ada.send("Delete", {"message_id": question["message_id"]}, room="class")
    await chat.settle()
    await ada.ask("class", "what was my secret?")
    turns = chat.backend.requests[-1].turns
    assert "swordfish" not in json.dumps([turn.content for turn in turns])
    assert turns[-1].content == "what was my secret?"


async def test_asker_deletes_the_answer_to_their_question_and_regenerate_keeps_working(chat):
    ada, bob = await _room(chat, ADA, BOB)
    await ada.ask("class", "hi")
    answer = next(d for d in chat.stored("class") if d["author"]["kind"] == "assistant")
    bob.send("Delete", {"message_id": answer["message_id"]}, room="class")
    await chat.settle()
    assert _error(bob)["code"] == 403
    ada.send("Delete", {"message_id": answer["message_id"]}, room="class")
    await chat.settle()
    assert bob.take("Deleted")[0]["data"]["message_id"] == answer["message_id"]
    assert next(d for d in chat.stored("class") if d["message_id"] == answer["message_id"])["deleted"] is True


async def test_deleting_an_answer_while_it_streams_stops_it_and_stores_a_tombstone(make_chat):
    chat = make_chat(standin={"delay": 0.01})
    ada, bob = await _room(chat, ADA, BOB)
    request = ada.send("Generate", {"prompt": "tell me a long story", "config": {"max_tokens": 64}}, room="class")
    await chat.settle(until=lambda: len(bob.tokens()) >= 2)
    message_id = next(f for f in ada.inbox if f["type"] == "Ack" and f["id"] == request)["data"]["message_id"]
    ada.send("Delete", {"message_id": message_id}, room="class")
    await chat.settle()
    assert bob.take("Deleted")[0]["data"]["message_id"] == message_id
    after = [f for f in bob.inbox if f["type"] == "Token" and f["seq"] > bob.tokens()[1]["seq"]]
    assert all(f["data"]["text"] == "" for f in after if f["data"]["message_id"] == message_id)
    stored = [d for d in chat.stored("class") if d["message_id"] == message_id]
    assert stored == [] or (stored[0]["deleted"] is True and stored[0]["content"] == "")


async def test_author_edits_own_text(chat):
    ada, bob = await _room(chat, ADA, BOB)
    text = await _post(chat, ada, "teh answer")
    bob.take()
    ada.send("Edit", {"message_id": text["data"]["message_id"], "content": "the answer"}, room="class")
    await chat.settle()
    edited = bob.one("Edited")
    assert edited["seq"] == text["seq"] + 1 and edited["data"]["content"] == "the answer" and edited["data"]["edited"]
    stored = chat.stored("class")[-1]
    assert stored["content"] == "the answer" and stored["edited"] == edited["data"]["edited"]


async def test_editing_refusals(chat):
    ada, bob, teacher = await _room(chat, ADA, BOB, TEACHER)
    text = await _post(chat, ada, "mine")
    await ada.ask("class", "hi")
    answer = next(d for d in chat.stored("class") if d["author"]["kind"] == "assistant")
    for client in (bob, teacher):  # someone else's: a moderator cannot put words in a mouth either
        client.send("Edit", {"message_id": text["data"]["message_id"], "content": "theirs"}, room="class")
    ada.send("Edit", {"message_id": answer["message_id"], "content": "better answer"}, room="class")
    ada.send("Edit", {"message_id": "m-nope", "content": "x"}, room="class")
    ada.send("Edit", {"message_id": text["data"]["message_id"], "content": ""}, room="class")
    await chat.settle()
    assert _error(bob) == {"code": 403, "message": "only its author can edit this message"}
    assert _error(teacher)["code"] == 403
    errors = [f["data"] for f in ada.take("Error")]
    assert errors[0] == {"code": 403, "message": "answers cannot be edited"}
    assert [e["code"] for e in errors[1:]] == [404, 400]
    assert chat.stored("class")[0]["content"] == "mine"


async def test_mute_refuses_texts_and_questions_until_unmuted(chat, caplog):
    ada, bob, teacher = await _room(chat, ADA, BOB, TEACHER)
    bob.send("Mute", {"username": "ada", "seconds": 60}, room="class")
    await chat.settle()
    assert _error(bob) == {"code": 403, "message": "only moderators can mute"}
    with caplog.at_level("INFO", logger="jupyter_llmchat"):
        request = teacher.send("Mute", {"username": "ada", "seconds": 600}, room="class")
        await chat.settle()
    ack = teacher.one("Ack")
    assert ack["id"] == request
    line = bob.one("Text")["data"]
    assert line["message_id"] == ack["data"]["message_id"] and line["author"]["kind"] == "system"
    assert line["content"].startswith("Ms Teacher muted Ada Lovelace for 10 minutes (until ")
    assert line["mute"]["username"] == "ada" and line["mute"]["until"].endswith("Z")
    assert any("moderator 'teach' muted 'ada'" in record.getMessage() for record in caplog.records)
    ada.take()
    ada.send("Text", {"content": "let me talk"}, room="class")
    ada.send("Generate", {"prompt": "hi"}, room="class")
    ada.send("Edit", {"message_id": line["message_id"], "content": "x"}, room="class")  # not hers either
    await chat.settle()
    refusals = [f["data"] for f in ada.take("Error")]
    assert [e["code"] for e in refusals] == [403, 403, 403]
    refusals = refusals[:2]
    assert all(e["message"].startswith("you are muted in this room until ") for e in refusals)
    other = chat.client(ADA)  # a new tab learns it from Joined
    assert (await other.join("class"))["data"]["muted_until"] == line["mute"]["until"]
    await ada.ask(None, "privately")  # asking privately is still allowed
    teacher.send("Mute", {"username": "ada", "seconds": 0}, room="class")
    await chat.settle()
    assert bob.take("Text")[-1]["data"]["mute"] == {"username": "ada", "until": None}
    assert (await _post(chat, ada, "back"))["data"]["content"] == "back"
    for bad in ({"username": "ada", "seconds": -1}, {"username": "ada", "seconds": 31 * 86400}, {"username": "ada"},
                {"username": "", "seconds": 5}, {"username": "ada", "seconds": 5, "room": "x"}):
        teacher.send("Mute", bad, room="class")
        await chat.settle()
        assert _error(teacher)["code"] == 400, bad


async def test_announce_only_and_answers_off_are_moderators_settings(chat):
    ada, teacher = await _room(chat, ADA, TEACHER)
    ada.send("RoomSettings", {"announce_only": True}, room="class")
    await chat.settle()
    assert _error(ada) == {"code": 403, "message": "only moderators can change announce_only"}
    teacher.send("RoomSettings", {"announce_only": True}, room="class")
    await chat.settle()
    assert teacher.one("RoomSettings")["data"]["announce_only"] is True
    assert ada.take("Text")[-1]["data"]["content"] == "Ms Teacher made this room announce-only."
    ada.send("Text", {"content": "can I?"}, room="class")
    ada.send("Generate", {"prompt": "can I?"}, room="class")
    await chat.settle()
    assert [e["data"]["code"] for e in ada.take("Error")] == [403, 403]
    await ada.ask(None, "privately, yes")
    assert (await _post(chat, teacher, "Exam starts now"))["data"]["content"] == "Exam starts now"

    teacher.send("RoomSettings", {"announce_only": False, "model_answers": False}, room="class")
    await chat.settle()
    assert teacher.one("RoomSettings")["data"] == {
        "system_prompt": "", "context": "own", "announce_only": False, "model_answers": False,
    }
    for client in (ada, teacher):
        client.send("Generate", {"prompt": "answer for the exam?"}, room="class")
    await chat.settle()
    for client in (ada, teacher):
        assert _error(client) == {"code": 403, "message": "answers are off in this room"}
    assert (await _post(chat, ada, "texts are fine"))["data"]["content"] == "texts are fine"
    joined = await chat.client(EVE).join("class")
    assert joined["data"]["settings"]["model_answers"] is False


async def test_export_leaves_deleted_messages_out_and_names_the_model(chat):
    ada, teacher = await _room(chat, ADA, TEACHER)
    await _post(chat, ada, "keep me")
    gone = await _post(chat, ada, "remove me")
    await ada.ask("class", "hi")
    teacher.send("Delete", {"message_id": gone["data"]["message_id"]}, room="class")
    await chat.settle()
    md = "".join([piece async for piece in transcript(chat.bus, "class", "md")])
    assert "keep me" in md and "remove me" not in md and "**Ada Lovelace** (ada)" in md
    assert "Answer from the model stand-in" in md and "removed a message by Ada Lovelace" in md
    exported = json.loads("".join([piece async for piece in transcript(chat.bus, "class", "json")]))
    assert exported["room"] == "class"
    contents = [m["content"] for m in exported["messages"]]
    assert "keep me" in contents and "remove me" not in contents
    answer = next(m for m in exported["messages"] if m["author"]["kind"] == "assistant")
    assert answer["model"] == "stand-in" and answer["in_reply_to"]


async def test_export_pages_through_a_long_room(chat, monkeypatch):
    import jupyter_llmchat.server.export as export

    monkeypatch.setattr(export, "PAGE", 7)
    for i in range(30):
        await chat.service.broadcast_to_room("big", f"message {i}", username="ada")
    reads = []
    original = chat.bus.messages

    async def counted(*args, **kwargs):
        rows = await original(*args, **kwargs)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(chat.bus, "messages", counted)
    exported = json.loads("".join([piece async for piece in transcript(chat.bus, "big", "json")]))
    assert [m["content"] for m in exported["messages"]] == [f"message {i}" for i in range(30)]
    assert max(reads) == 7 and len(reads) == 5


async def test_a_jupyterhub_admin_is_told_they_moderate(chat):
    """The identity JupyterHub's single-user extension gives Jupyter Server (`JupyterHubUser`,
    its `hub_user` being the Hub's model of the user, `admin` included), through `identity_of`."""
    from types import SimpleNamespace

    from jupyterhub.singleuser.extension import JupyterHubUser

    from jupyter_llmchat.server.handlers import identity_of

    def handler(hub_user):
        fake = SimpleNamespace(current_user=JupyterHubUser(hub_user), settings={"llmchat_moderators": frozenset()})
        fake._secret_owner = lambda: None
        return fake

    admin = identity_of(handler({"kind": "user", "name": "grace", "admin": True, "user_info": {"name": "Grace Hopper"}}))
    student = identity_of(handler({"kind": "user", "name": "alan", "admin": False}))
    assert (admin.username, admin.name, admin.moderator) == ("grace", "Grace Hopper", True)
    assert student.moderator is False
    grace, alan = chat.client(admin), chat.client(student)
    await chat.settle()
    assert grace.one("Welcome")["data"]["user"]["moderator"] is True
    assert alan.one("Welcome")["data"]["user"]["moderator"] is False
