"""Rooms shared by several servers through a real Redis (`room_bus = "redis://…"`).

The fast tests drive two chat services (the stand-in model, fake transports) over one
`redis-server`: what each server's members receive, frame by frame. The last one starts
two real Jupyter servers (the real model) on that Redis and kills one with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import websocket
from support.fakes import ADA, BOB, EVE, FakeClient
from support.waiting import until
from support.redis_server import RedisServer
from support.servers import ServerProcess

from jupyter_llmchat import protocol
from jupyter_llmchat.room_bus import redis_keys as keys
from jupyter_llmchat.server.connection import Identity
from jupyter_llmchat.server.messages import INTERRUPTED, post_text
from jupyter_llmchat.room_bus.redis_fanout import frame_parts


async def join(client: FakeClient, room: str, **data: Any) -> dict[str, Any]:
    request_id = await client.asend("Join", data, room=room)
    await until(lambda: any(f["type"] == "Joined" for f in client.inbox))
    joined = client.one("Joined")
    assert joined["id"] == request_id
    return joined["data"]


def events(client: FakeClient) -> list[dict[str, Any]]:
    """Room events received (frames with a seq), in order."""
    return [f for f in client.inbox if "seq" in f]


@pytest.mark.fast
def test_a_frame_built_around_the_seq_redis_assigns_is_the_frame_the_protocol_encodes() -> None:
    token = protocol.Token("m-1", 3, 'say "data": ,"data":', False)
    head, tail = frame_parts("Token", token, 'room "x"')
    assert head + b',"seq":42' + tail == protocol.encode("Token", token, room='room "x"', seq=42)


@pytest.mark.fast
async def test_a_text_on_one_server_reaches_the_other_with_the_same_seq(servers):
    a, b = servers(), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    first = await join(ada, "shared-text")
    second = await join(bob, "shared-text")
    assert second["epoch"] == first["epoch"] and second["count"] == 2
    await ada.asend("Text", {"content": "hello from A"}, room="shared-text")
    await until(lambda: any(f["type"] == "Text" for f in bob.inbox))
    await until(lambda: any(f["type"] == "Text" for f in ada.inbox))
    on_a, on_b = ada.one("Text"), bob.one("Text")
    assert on_a == on_b and on_b["data"]["content"] == "hello from A"
    assert [p["data"]["joined"][0]["username"] for p in ada.take("Presence")] == ["ada", "bob"]


@pytest.mark.fast
async def test_a_join_sees_the_members_on_every_server_and_a_second_tab_is_no_new_member(servers):
    a, b = servers(), servers()
    ada, bob, bob_tab = a.client(ADA), b.client(BOB), b.client(BOB)
    await join(ada, "shared-members")
    second = await join(bob, "shared-members")
    assert (second["count"], [m["username"] for m in second["members"]]) == (2, ["ada", "bob"])
    tab = await join(bob_tab, "shared-members")  # bob is here already: the same view, no new member
    assert (tab["count"], tab["members"], tab["epoch"]) == (2, second["members"], second["epoch"])
    await bob_tab.asend("Text", {"content": "from the tab"}, room="shared-members")  # after its Join's Presence, if any
    await until(lambda: any(f["type"] == "Text" for f in ada.inbox))
    presences = [f["data"]["joined"][0]["username"] for f in events(ada) if f["type"] == "Presence"]
    assert presences == ["ada", "bob"]  # one Presence per user, none for the second tab


@pytest.mark.fast
async def test_an_answer_asked_on_one_server_streams_identically_to_members_on_both(servers):
    a, b = servers(), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    await join(ada, "shared-answer")
    await join(bob, "shared-answer")
    await until(lambda: len([f for f in ada.inbox if f["type"] == "Presence"]) == 2)
    ada.take(), bob.take()
    await ada.asend("Generate", {"prompt": "Hi"}, room="shared-answer")
    await until(lambda: any(t["data"]["is_final"] for t in bob.tokens()))
    await until(lambda: any(t["data"]["is_final"] for t in ada.tokens()))
    ada.take("Ack")
    assert events(ada) == events(bob)
    assert [f["type"] for f in events(bob)] == ["Text"] + ["Token"] * 6
    seqs = [f["seq"] for f in events(bob)]
    assert seqs == list(range(seqs[0], seqs[0] + 7))
    assert "".join(t["data"]["text"] for t in bob.tokens()) == "Hello from the stand-in."
    on_a = await a.service.history_data("shared-answer")
    assert on_a == await b.service.history_data("shared-answer")  # REST history: the same on both
    assert [m["data"]["author"]["kind"] for m in on_a.messages] == ["user", "assistant"]
    listed = {r["room"]: r for r in await b.service.room_list()}["shared-answer"]
    assert listed == {"room": "shared-answer", "members": 2, "head_seq": seqs[-1]}  # both servers' members


@pytest.mark.fast
async def test_a_client_that_drops_from_one_server_resumes_on_the_other_with_exactly_the_missed_events(servers):
    a, b = servers(), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    await join(ada, "shared-resume")
    joined = await join(bob, "shared-resume")
    await ada.asend("Text", {"content": "one"}, room="shared-resume")
    await until(lambda: any(f["type"] == "Text" for f in bob.inbox))
    seen = events(bob)[-1]["seq"]
    await b.service.disconnect(bob.connection)  # bob's socket to B drops
    for word in ("two", "three"):
        await ada.asend("Text", {"content": word}, room="shared-resume")
    await until(lambda: [f["data"].get("content") for f in ada.inbox if f["type"] == "Text"][-1:] == ["three"])
    missed = [f for f in events(ada) if f["seq"] > seen]
    back = a.client(BOB)  # bob comes back through server A
    resumed = await join(back, "shared-resume", since=seen, epoch=joined["epoch"])
    assert resumed["seq"] == missed[-1]["seq"]
    await until(lambda: len(events(back)) >= len(missed) + 1)
    replayed = events(back)[: len(missed)]
    assert replayed == missed and [f["type"] for f in missed] == ["Presence", "Text", "Text"]
    assert events(back)[len(missed)]["type"] == "Presence"  # its own return, live
    assert not back.take("Reset", "History")


@pytest.mark.fast
async def test_concurrent_posts_on_both_servers_reach_every_member_once_in_seq_order(servers):
    a, b = servers(), servers()
    members = [a.client(ADA), a.client(BOB), b.client(EVE), b.client(Identity("dan", "Dan"))]
    for member in members:
        await join(member, "shared-order")
    await until(lambda: all(len([f for f in m.inbox if f["type"] == "Presence"]) >= 4 - i for i, m in enumerate(members)))

    async def chatter(member: FakeClient) -> None:
        for i in range(20):
            await member.asend("Text", {"content": f"{member.connection.user.username} {i}"}, room="shared-order")

    await asyncio.gather(*(chatter(member) for member in members))
    await until(lambda: all(len([f for f in m.inbox if f["type"] == "Text"]) == 80 for m in members))
    texts = [[f for f in events(m) if f["type"] == "Text"] for m in members]
    assert all(each == texts[0] for each in texts)  # the same events, in the same order, once each
    seqs = [f["seq"] for f in texts[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 80
    for i, member in enumerate(members):
        mine = [f["data"]["content"] for f in texts[0] if f["data"]["author"]["username"] == member.connection.user.username]
        assert mine == [f"{member.connection.user.username} {n}" for n in range(20)]  # each sender's order kept


@pytest.mark.fast
async def test_clearing_a_room_on_one_server_resets_its_members_on_the_other(servers):
    a, b = servers(), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    before = await join(ada, "shared-clear")
    await join(bob, "shared-clear")
    await ada.asend("Text", {"content": "draft"}, room="shared-clear")
    await until(lambda: any(f["type"] == "Text" for f in bob.inbox))
    bob.take()
    assert await a.service.clear_room("shared-clear") == 1
    await until(lambda: any(f["type"] == "History" for f in bob.inbox))
    reset, history = bob.take("Reset", "History")
    assert history["data"]["messages"] == [] and history["data"]["epoch"] != before["epoch"]
    assert (await b.bus.head("shared-clear"))[1] == history["data"]["epoch"]  # B knows the new epoch
    late = b.client(EVE)  # resuming from before the clear, on B: nothing of it is replayed
    await join(late, "shared-clear", since=before["seq"], epoch=before["epoch"])
    await until(lambda: any(f["type"] == "History" for f in late.inbox))
    assert late.take("Reset") and all("draft" not in str(f) for f in late.inbox)


@pytest.mark.fast
async def test_another_server_ends_the_answers_of_a_server_that_stopped(servers):
    a, b = servers(delay=0.05), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    await join(ada, "shared-orphan")
    await join(bob, "shared-orphan")
    await ada.asend("Generate", {"prompt": "Talk"}, room="shared-orphan")
    await until(lambda: len(bob.tokens()) >= 2)
    a.backend.sink = lambda events: None  # server A dies: no token leaves it any more
    await a.bus.redis.delete(keys.server(a.bus.server_id))  # ... and its heartbeat expires
    said = "".join(t["data"]["text"] for t in bob.tokens())
    await b.service.sweep(time.monotonic())
    await until(lambda: bob.tokens()[-1]["data"]["is_final"])
    final = bob.tokens()[-1]
    assert (final["data"]["finish_reason"], final["data"]["error"]) == ("error", INTERRUPTED)
    stored = (await b.bus.messages("shared-orphan"))[-1][1]
    assert (stored["content"], stored["finish_reason"], stored["author"]["kind"]) == (said, "error", "assistant")
    assert stored["in_reply_to"] == (await b.bus.messages("shared-orphan"))[0][1]["message_id"]


@pytest.mark.fast
async def test_the_members_of_a_server_that_stopped_are_announced_gone_once_and_a_tab_elsewhere_stays(servers):
    a, b, c = servers(), servers(), servers()
    dan = Identity("dan", "Dan")
    members = [a.client(ADA), a.client(dan), b.client(BOB), c.client(EVE), c.client(dan)]
    for member in members:
        await join(member, "shared-gone")
    bob, eve = members[2], members[3]
    await until(lambda: len([f for f in bob.inbox if f["type"] == "Presence"]) == 2)  # his own arrival, then eve's
    await a.bus.redis.delete(keys.server(a.bus.server_id))  # server A stops: its heartbeat expires
    await asyncio.gather(b.service.sweep(time.monotonic()), c.service.sweep(time.monotonic()))  # both notice
    await bob.asend("Text", {"content": "after"}, room="shared-gone")  # everything emitted before it arrives first
    await until(lambda: all(any(f["type"] == "Text" for f in m.inbox) for m in (bob, eve)))
    for member in (bob, eve):
        gone = [f["data"] for f in member.inbox if f["type"] == "Presence" and f["data"]["left"]]
        assert gone == [{"joined": [], "left": [{"username": "ada", "name": ADA.name}], "count": 3}]
    assert await b.bus.member_count("shared-gone") == 3  # ada gone; dan still on C, bob, eve


@pytest.mark.fast
async def test_redis_away_gives_a_clear_503_and_the_room_works_when_it_returns(redis, servers, tmp_path):
    a = servers()
    ada = a.client(ADA)
    await join(ada, "shared-outage")
    redis.stop()
    try:
        await ada.asend("Text", {"content": "lost?"}, room="shared-outage")
        await until(lambda: any(f["type"] == "Error" for f in ada.inbox))
        error = ada.one("Error")["data"]
        assert error["code"] == 503 and "Redis" in error["message"] and "unavailable" in error["message"]
    finally:
        redis.start()
    # Redis came back empty (no persistence here): the room starts a new epoch, and its
    # members here get Reset, then the new events.
    eve = a.client(EVE)
    await join(eve, "shared-outage")
    await eve.asend("Text", {"content": "back"}, room="shared-outage")
    await until(lambda: any(f["type"] == "Text" for f in ada.inbox))
    assert [f["type"] for f in ada.inbox if f["type"] in ("Reset", "Text")] == ["Reset", "Text"]
    assert [f["data"]["content"] for f in ada.inbox if f["type"] == "Text"] == ["back"]


@pytest.mark.fast
async def test_room_names_holding_key_parts_never_share_a_key(servers):
    a = servers()
    eve = a.client(EVE)  # joining is all it takes: a read-only user may
    for name in ("general:present", "future:events", "future:msgs", "c:msg"):
        await join(eve, name)
    ada = a.client(ADA)
    for name in ("general", "future", "c", "c:msg"):
        await join(ada, name)
        await ada.asend("Text", {"content": f"in {name}"}, room=name)
    assert [f for f in ada.inbox if f["type"] == "Error"] == []
    info = await a.service.room_info("general")
    assert info["count"] == 1 and [m["username"] for m in info["members"]] == ["ada"]
    listed = {r["room"]: r for r in await a.service.room_list()}
    assert listed["general"]["members"] == 1 and listed["general:present"]["members"] == 1
    assert await a.service.clear_room("c") == 1
    for name in ("general", "future", "c:msg"):
        assert [m["data"]["content"] for m in (await a.service.history_data(name)).messages] == [f"in {name}"]


@pytest.mark.fast
async def test_any_room_name_gets_keys_of_its_own_and_odd_presence_entries_are_skipped(servers):
    bus = servers().bus
    names = ["x", "x:msg", "x:msgs", "x:events", "x:present", "x:live", "{x}", "{x}:msg", "x}{", "*", "x*", ":", "%3A", "x%3Amsg"]
    for name in names:
        await post_text(bus, name, f"in {name}", ADA.author())
    for name in names:
        assert [data["content"] for _, data in await bus.messages(name)] == [f"in {name}"]
        assert (await bus.head(name))[0] == 1
    heads = {r["room"]: r["head_seq"] for r in await bus.room_list()}
    assert all(heads[name] == 1 for name in names)
    assert await bus.clear("x") == 1
    assert [name for name in names if len(await bus.messages(name)) != 1] == ["x"]
    # A presence hash holding what is not a presence entry (another program, an older version's
    # colliding keys) is read without an error: those entries are nobody.
    odd = {"seq": "3", "epoch": "e", "s|bob": "not json", "s|eve": f"{int(time.time() * 1000) + 60_000} [1]", "s|": "1 x"}
    await bus.redis.hset(keys.room("odd", "present"), mapping=odd)
    await bus.redis.sadd(keys.ROOMS, "odd")
    assert await bus.members("odd") == [] and {r["room"]: r["members"] for r in await bus.room_list()}["odd"] == 0


@pytest.mark.fast
async def test_a_post_during_a_redis_stall_is_in_the_history_whenever_members_saw_it(redis, servers):
    a, b = servers(timeout=0.5), servers()
    ada, bob = a.client(ADA), b.client(BOB)
    await join(ada, "stall-post")
    await join(bob, "stall-post")
    os.kill(redis.process.pid, signal.SIGSTOP)  # longer than A's timeout: its call fails, Redis runs it later
    try:
        await ada.asend("Text", {"content": "during the stall"}, room="stall-post")
        await until(lambda: any(f["type"] == "Error" for f in ada.inbox))
        assert ada.one("Error")["data"]["code"] == 503
        await asyncio.sleep(0.5)
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    # Whatever ran once Redis was back (the room's settings are read before the post, so the
    # stall may fail the post before its script): what members saw is exactly the history.
    await asyncio.sleep(1.0)  # Redis runs what it was sent during the stall; its events reach bob
    seen = [f["data"]["content"] for f in bob.inbox if f["type"] == "Text"]
    history = await b.service.history_data("stall-post")
    assert [m["data"]["content"] for m in history.messages] == seen


@pytest.mark.fast
@pytest.mark.parametrize("how", ["killed", "stalled"])
async def test_an_answer_streaming_when_redis_dies_ends_with_error_once_it_is_back(redis, servers, how):
    words = tuple(f" w{i}" for i in range(40))
    a = servers(words=words, delay=0.05, timeout=0.5)
    ada = a.client(ADA)
    room = f"redis-{how}"
    await join(ada, room)
    await ada.asend("Generate", {"prompt": "Talk", "config": {"max_tokens": 40}}, room=room)
    await until(lambda: len(ada.tokens()) >= 3)
    redis.stop() if how == "killed" else os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        await until(lambda: not a.backend.running)  # its tokens could not be emitted: the answer stopped
    finally:  # killed: it comes back empty (no persistence here); stalled: as it was
        redis.start() if how == "killed" else os.kill(redis.process.pid, signal.SIGCONT)

    async def ended() -> bool:
        await a.service.sweep(time.monotonic())  # every second in a server
        return ada.tokens()[-1]["data"]["is_final"]

    await until(ended, timeout=10, what="the answer's final Token")
    final = ada.tokens()[-1]["data"]
    assert final["finish_reason"] == "error" and "room bus" in final["error"]
    assert len([t for t in ada.tokens() if t["data"]["is_final"]]) == 1
    (stored,) = [data for _, data in await a.bus.messages(room) if data["author"]["kind"] == "assistant"]
    assert stored["finish_reason"] == "error" and stored["content"].startswith(" w0 w1 w2")
    assert stored["error"] == final["error"]


# --- two real Jupyter servers on one Redis


class Socket:
    """A browser-like client of one real server (its own login: a distinct user)."""

    def __init__(self, server: ServerProcess) -> None:
        headers = server.login()
        self.ws = websocket.create_connection(server.ws_url, header=[f"{k}: {v}" for k, v in headers.items()], timeout=60)
        self.welcome = json.loads(self.ws.recv())
        self.events: list[dict[str, Any]] = []  # room events received, in order

    def send(self, type_: str, data: dict[str, Any] | None = None, **envelope: Any) -> None:
        self.ws.send(json.dumps({"type": type_, **envelope, "data": data or {}}))

    def until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read frames (keeping room events) until one satisfies `done`; returns it."""
        while True:
            frame = json.loads(self.ws.recv())
            if "seq" in frame:
                self.events.append(frame)
            if done(frame):
                return frame

    def join(self, room: str, **data: Any) -> dict[str, Any]:
        self.send("Join", data, room=room)
        return self.until(lambda f: f["type"] == "Joined")["data"]

    def close(self) -> None:
        self.ws.close()


def final_token(frame: dict[str, Any]) -> bool:
    return frame["type"] == "Token" and frame["data"]["is_final"]


def shared_server(root: Path, redis: RedisServer) -> ServerProcess:
    root.mkdir(parents=True, exist_ok=True)
    args = [f"--LLMChat.room_bus={redis.url}", f"--LLMChat.history_path={root / 'unused.sqlite'}",
            "--LLMChat.parallel=2", "--LLMChat.n_ctx=2048"]
    return ServerProcess(root, args, env={"JUPYTER_DATA_DIR": str(root / "data")})


def test_two_real_servers_share_a_room_and_one_survives_the_other_being_killed(redis, tmp_path):
    first, second = shared_server(tmp_path / "a", redis), shared_server(tmp_path / "b", redis)
    restarted = shared_server(tmp_path / "a", redis)
    try:
        first.start(), second.start()
        assert first.wait_for_model()["loaded"] and second.wait_for_model()["loaded"]
        alice, bob = Socket(first), Socket(second)
        joined = alice.join("class")
        assert bob.join("class")["epoch"] == joined["epoch"]
        alice.until(lambda f: f["type"] == "Presence" and f["data"]["count"] == 2)

        # A Text on one server reaches the other with the same seq.
        alice.send("Text", {"content": "hello from A"}, room="class")
        assert alice.until(lambda f: f["type"] == "Text") == bob.until(lambda f: f["type"] == "Text")

        # An answer asked on A streams identically to members on both.
        config = {"max_tokens": 6, "temperature": 0}
        alice.send("Generate", {"prompt": "Say hi.", "config": config}, room="class")
        alice.until(final_token), bob.until(final_token)
        asked = [f for f in alice.events if f["type"] in ("Text", "Token")][1:]
        assert asked == [f for f in bob.events if f["type"] in ("Text", "Token")][1:] and asked[-1]["type"] == "Token"

        # Bob drops from B and comes back on A: exactly the events he missed, then live ones.
        seen = bob.events[-1]["seq"]
        bob.close()
        alice.until(lambda f: f["type"] == "Presence" and f["data"]["left"])
        for word in ("two", "three"):
            alice.send("Text", {"content": word}, room="class")
        alice.until(lambda f: f["type"] == "Text" and f["data"]["content"] == "three")
        missed = [f for f in alice.events if f["seq"] > seen]
        bob = Socket(first)
        back = bob.join("class", since=seen, epoch=joined["epoch"])
        assert back["seq"] == missed[-1]["seq"]
        replayed = [bob.until(lambda f: "seq" in f or f["type"] in ("Reset", "History")) for _ in missed]
        assert replayed == missed and [f["type"] for f in missed] == ["Presence", "Text", "Text"]

        # REST history is the same on both servers.
        history = first.get("llmchat/api/rooms/class/messages")
        assert history == second.get("llmchat/api/rooms/class/messages")
        assert [m["data"]["content"] for m in history["messages"]][-2:] == ["two", "three"]

        # kill -9 of A mid-answer: the room goes on on B, which ends A's answer within 30 s.
        carol = Socket(second)
        carol.join("class")
        story = {"max_tokens": 1000, "temperature": 0.8, "seed": 7}
        alice.send("Generate", {"prompt": "Tell me a long story.", "config": story}, room="class")
        first_token = carol.until(lambda f: f["type"] == "Token")
        assert not first_token["data"]["is_final"], "the answer ended before the kill"
        first.process.kill()
        first.process.wait(timeout=10)
        killed = time.monotonic()
        carol.ws.settimeout(30)
        final = carol.until(lambda f: f["type"] == "Token" and f["data"]["is_final"])
        assert time.monotonic() - killed < 30
        assert (final["data"]["finish_reason"], final["data"]["error"]) == ("error", INTERRUPTED)
        # ... and tells Carol, once, that A's members (Alice, and Bob since he came back) left.
        # Presence names people as {username, name}; Welcome.user adds whether they moderate.
        on_a = sorted(({k: socket.welcome["data"]["user"][k] for k in ("username", "name")} for socket in (alice, bob)), key=lambda p: p["username"])

        def gone(frame: dict[str, Any]) -> bool:
            return frame["type"] == "Presence" and any(person in on_a for person in frame["data"]["left"])

        if not any(gone(f) for f in carol.events):
            carol.until(gone)
        assert time.monotonic() - killed < 30
        carol.send("Text", {"content": "still here"}, room="class")
        assert carol.until(lambda f: f["type"] == "Text")["data"]["content"] == "still here"
        departures = [f["data"] for f in carol.events if gone(f)]
        assert departures == [{"joined": [], "left": on_a, "count": 1}]
        stored = second.get("llmchat/api/rooms/class/messages")
        assert [m["data"]["author"]["kind"] for m in stored["messages"]][-2:] == ["assistant", "user"]
        assert stored["messages"][-2]["data"]["finish_reason"] == "error"
        while second.get("llmchat/api/rooms/class")["count"] != 1:  # A's members expire: Carol is left
            assert time.monotonic() - killed < 30, "the killed server's members are still counted"
            time.sleep(0.5)

        # The restarted server serves the whole history.
        restarted.start()
        assert restarted.get("llmchat/api/rooms/class/messages") == second.get("llmchat/api/rooms/class/messages")
    finally:
        for server in (first, second, restarted):
            if server.process is not None and server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=10)
