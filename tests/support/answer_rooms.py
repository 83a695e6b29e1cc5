"""Asking the answer-quality questions over a real socket: clean, busy and private.

Shared by `bench/answers.py` and `tests/server/test_answer_quality.py`. A `Peer` is one
WebSocket user that keeps reading (so idle members never back up the server) and
remembers what each room showed it: the texts and the finished answers, with their `seq`,
which is what an answer must not repeat. Busy rooms get 40 bot broadcasts (REST posts, the
`broadcast` callable) and other users' messages and questions before the asker's turn,
and one more of each before every question.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import tornado.httpclient
import tornado.websocket

from .answer_quality import Item

TIMEOUT = 120.0
Broadcast = Callable[[str, str, str], Awaitable[None]]  # (room, content, author_name)

# Unrelated room traffic, as in the demo room of issue 14.
_BROADCASTS = (
    ("training", "training: epoch {i}/40 done, loss {loss:.3f}, validation accuracy {acc:.1%}"),
    ("grader", "Hint: exercise {k} needs a dictionary and a loop over its keys, not a list."),
    ("CI", "CI: build #{n} passed on main with 212 tests, coverage 87%, deploy queued."),
    ("notebook", "Reminder: the lab closes at 6 pm today, please save your notebooks before leaving."),
)
_CHATTER = (
    "Lunch plan: pizza at noon, then we do the exercise sheet together?",
    "Did anyone get exercise 3 to run? My kernel keeps dying when I load the data.",
    "The deadline for the project report moved to Friday afternoon.",
    "I think the plot in cell 12 is wrong, the axis labels are swapped.",
    "Can someone share the link to the slides from this morning's lecture?",
    "My pandas version is too old for the groupby example, upgrading now.",
)
_OTHERS_ASK = ("Summarise the rules of the lab in one sentence.", "What should I eat for lunch?")


def broadcast_text(i: int) -> tuple[str, str]:
    """The i-th broadcast: (content, author name)."""
    author, template = _BROADCASTS[i % len(_BROADCASTS)]
    return template.format(i=i % 40 + 1, loss=1.0 / (i + 2), acc=0.5 + i / 100, k=i % 9 + 1, n=1000 + i), author


@dataclass
class Answer:
    """One streamed answer as a room member (or its private asker) received it."""

    message_id: str
    done: asyncio.Future
    seq: int = 0
    text: str = ""
    finish: str = ""
    tokens: int = 0
    prompt_tokens: int = 0


@dataclass
class Seen:
    """A message a room showed: a text, or a finished answer (at its first token's seq)."""

    seq: int
    content: str
    username: str
    kind: str


@dataclass
class Peer:
    """One WebSocket user. Frames are read all the time by a background task."""

    conn: Any
    username: str
    rooms: dict[str, list[Seen]] = field(default_factory=dict)
    _answers: dict[str, Answer] = field(default_factory=dict)
    _replies: dict[str, asyncio.Future] = field(default_factory=dict)
    _echoes: dict[tuple[str, str], asyncio.Future] = field(default_factory=dict)
    _ids: Any = field(default_factory=itertools.count)

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str]) -> Peer:
        request = tornado.httpclient.HTTPRequest(url, headers=headers, connect_timeout=30)
        conn = await tornado.websocket.websocket_connect(request, subprotocols=["llmchat.v1"])
        welcome = json.loads(await conn.read_message())
        assert welcome["type"] == "Welcome", welcome
        peer = cls(conn, welcome["data"]["user"]["username"])
        peer._reader = asyncio.ensure_future(peer._read())
        return peer

    def _answer(self, message_id: str) -> Answer:
        if message_id not in self._answers:
            self._answers[message_id] = Answer(message_id, asyncio.get_running_loop().create_future())
        return self._answers[message_id]

    async def _read(self) -> None:
        while (raw := await self.conn.read_message()) is not None:
            frame = json.loads(raw)
            kind, data, room = frame["type"], frame.get("data") or {}, frame.get("room")
            if kind == "Token":
                answer = self._answer(data["message_id"])
                answer.seq = answer.seq or frame.get("seq", 0)
                answer.text += data["text"]
                if data["is_final"]:
                    answer.finish = data["finish_reason"]
                    answer.tokens = data["usage"]["completion_tokens"]
                    answer.prompt_tokens = data["usage"]["prompt_tokens"]
                    if room is not None and answer.text:
                        self.rooms.setdefault(room, []).append(Seen(answer.seq, answer.text, "model", "assistant"))
                    if not answer.done.done():
                        answer.done.set_result(answer)
            elif kind == "History" and room is not None:
                for event in data.get("messages", []):
                    self._remember(room, event)
            elif kind == "Text" and room is not None:
                author = self._remember(room, frame)
                echo = self._echoes.pop((room, data["content"]), None)
                if echo is not None and author.get("username") == self.username and not echo.done():
                    echo.set_result(frame["seq"])
            elif frame.get("id") in self._replies:
                reply = self._replies.pop(frame["id"])
                if not reply.done():
                    if kind == "Error":
                        reply.set_exception(RuntimeError(f"server error: {data}"))
                    else:
                        reply.set_result(frame)

    def _remember(self, room: str, event: dict[str, Any]) -> dict[str, Any]:
        """Note a room's Text event (live or from History); returns its author."""
        data = event.get("data") or {}
        author = data.get("author") or {}
        seen = self.rooms.setdefault(room, [])
        if all(m.seq != event["seq"] for m in seen[-64:]):
            seen.append(Seen(event["seq"], str(data.get("content", "")), author.get("username", ""), author.get("kind", "")))
        return author

    async def request(self, type_: str, data: dict[str, Any], room: str | None = None) -> dict[str, Any]:
        """Send a frame and wait for its reply (Joined, Left, Ack…); Error raises."""
        request_id = f"{type_.lower()}-{next(self._ids)}"
        reply = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        frame = {"type": type_, "id": request_id, "data": data, **({"room": room} if room else {})}
        await self.conn.write_message(json.dumps(frame))
        return await asyncio.wait_for(reply, TIMEOUT)

    async def join(self, room: str) -> None:
        self.rooms.setdefault(room, [])
        await self.request("Join", {}, room)

    async def leave(self, room: str) -> None:
        await self.request("Leave", {}, room)

    async def say(self, room: str, content: str) -> None:
        """Post a Text and wait until the room has it."""
        echo = asyncio.get_running_loop().create_future()
        self._echoes[(room, content)] = echo
        await self.conn.write_message(json.dumps({"type": "Text", "id": f"t-{next(self._ids)}", "room": room, "data": {"content": content}}))
        await asyncio.wait_for(echo, TIMEOUT)

    async def ask(self, prompt: str, config: dict[str, Any], room: str | None = None, **extra: Any) -> Answer:
        ack = await self.request("Generate", {"prompt": prompt, "config": config, **extra}, room)
        return await asyncio.wait_for(self._answer(ack["data"]["message_id"]).done, TIMEOUT)

    def others_before(self, room: str, answer: Answer, question: str) -> list[str]:
        """What the room held before `answer`, except its own question."""
        return [
            m.content
            for m in self.rooms.get(room, [])
            if m.seq < answer.seq and not (m.username == self.username and m.content == question)
        ]

    def close(self) -> None:
        self._reader.cancel()
        self.conn.close()


def config_for(config: dict[str, Any], i: int) -> dict[str, Any]:
    """Question i's config: a `seed` is offset by i, so sampled answers do not all draw the same random numbers."""
    return {**config, "seed": config["seed"] + i} if "seed" in config else config


@dataclass
class Asked:
    """One question of one condition: the answer and what it must not repeat from the room."""

    condition: str
    item: Item
    answer: Answer
    room_messages: list[str]


async def ask_clean(asker: Peer, items: Sequence[Item], config: dict[str, Any], prefix: str) -> list[Asked]:
    """(a): each question in a fresh room of its own."""
    out = []
    for i, item in enumerate(items):
        room = f"{prefix}clean-{i}"
        await asker.join(room)
        answer = await asker.ask(item.prompt, config_for(config, i), room)
        out.append(Asked("clean", item, answer, asker.others_before(room, answer, item.prompt)))
        await asker.leave(room)
    return out


async def ask_private(asker: Peer, items: Sequence[Item], config: dict[str, Any]) -> list[Asked]:
    """(c): each question without a room."""
    return [Asked("private", item, await asker.ask(item.prompt, config_for(config, i)), []) for i, item in enumerate(items)]


async def fill_busy(room: str, others: Sequence[Peer], broadcast: Broadcast, config: dict[str, Any], n: int = 40) -> None:
    """40 broadcasts, other users' chatter between them, and other users' questions answered."""
    for peer in others:
        await peer.join(room)
    chatter = itertools.cycle(_CHATTER)
    for i in range(n):
        await broadcast(room, *broadcast_text(i))
        if i % 4 == 3:
            await others[(i // 4) % len(others)].say(room, next(chatter))
        if i % 20 == 10:
            await others[0].ask(_OTHERS_ASK[(i // 20) % len(_OTHERS_ASK)], config, room)


async def ask_busy(
    asker: Peer,
    others: Sequence[Peer],
    broadcast: Broadcast,
    items: Sequence[Item],
    config: dict[str, Any],
    room: str,
    *,
    new_thread: bool,
    shared: bool = False,
) -> list[Asked]:
    """(b): in a busy room; one more broadcast and one more message of another user before each question.

    `new_thread=True` starts each question in a fresh thread of the asker's; False asks
    them one after another in one thread, as somebody typing into the widget would.
    `shared=True` sets the room to shared context first: the model reads the whole room.
    """
    await asker.join(room)  # before the traffic: the asker sees every message of the room
    if shared:
        await asker.request("RoomSettings", {"context": "shared"}, room)
    await fill_busy(room, others, broadcast, config)
    out = []
    for i, item in enumerate(items):
        await broadcast(room, *broadcast_text(40 + i))
        await others[i % len(others)].say(room, _CHATTER[i % len(_CHATTER)])
        answer = await asker.ask(item.prompt, config_for(config, i), room, **({"new_thread": True} if new_thread else {}))
        condition = "busy-shared" if shared else "busy" if new_thread else "busy-thread"
        out.append(Asked(condition, item, answer, asker.others_before(room, answer, item.prompt)))
    return out
