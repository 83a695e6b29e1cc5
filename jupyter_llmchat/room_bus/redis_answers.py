"""The Redis room bus's answers streaming now, on any server: a hash of them (`keys.ANSWERS`,
each with its server, room and stored stub), the seq of each one's first token
(`keys.ANSWER_FIRST`), and the ending of those whose server stopped (its heartbeat expired):
a final `Token` with `finish_reason: "error"` and the answer stored as far as it got.

A mixin of `redis_bus.RedisRoomBus`, which holds the client, the rooms open here and the
emit script.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Iterable

import msgspec
import redis.asyncio as redis

from .. import protocol
from ..protocol import Text
from ..server.messages import INTERRUPTED
from . import redis_keys as keys
from .redaction import redact_all
from .redis_errors import ms, redis_errors_as_503
from .redis_fanout import LocalRoom

HEARTBEAT_TTL = 15.0  # seconds a server counts as alive without a refresh


class RedisAnswers:
    """Answers running now across the servers sharing one Redis."""

    redis: redis.Redis
    server_id: str
    local: dict[str, LocalRoom]
    log: logging.Logger
    _mine: set[str]  # answers this server registered and has not ended
    _first_sent: set[str]  # answers whose first token's seq Redis has
    _local: Callable[[str], LocalRoom]
    _deleted_after: Callable[[str, int], Awaitable[set[str]]]
    _emit_and_store: Callable[..., Awaitable[list[int]]]

    async def _running(self, room: str | None = None) -> dict[str, dict[str, Any]]:
        """Answers streaming now (on any server), of one room or of all."""
        running = {
            answer.decode(): json.loads(entry) for answer, entry in (await self.redis.hgetall(keys.ANSWERS)).items()
        }
        return {answer: entry for answer, entry in running.items() if room is None or entry["room"] == room}

    @redis_errors_as_503
    async def running_answer_frames(self, room: str) -> Iterable[bytes]:
        running = await self._running(room)
        if not running:
            return []
        firsts = [int(seq) for seq in await self.redis.hmget(keys.ANSWER_FIRST, list(running)) if seq is not None]
        if not firsts:
            return []
        head = self._local(room).room.head_seq
        entries = await self.redis.xrange(keys.room(room, "events"), min=f"{min(firsts)}-0", max=f"{head}-0")
        wanted = {answer.encode() for answer in running}
        frames = [fields[b"f"] for _, fields in entries if fields.get(b"a") in wanted]
        return redact_all(frames, await self._deleted_after(room, min(firsts) - 1))

    @redis_errors_as_503
    async def answer_started(self, room: str, message_id: str, stub: Text) -> None:
        entry = {"server": self.server_id, "room": room, "stub": msgspec.to_builtins(stub)}
        self._mine.add(message_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.server(self.server_id), "1", px=ms(HEARTBEAT_TTL))
            pipe.hset(keys.ANSWERS, message_id, json.dumps(entry))
            await pipe.execute()
        local = self.local.get(room)
        if local is not None:
            local.room.active_generations.add(message_id)

    @redis_errors_as_503
    async def answer_ended(self, room: str, message_id: str) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hdel(keys.ANSWERS, message_id)
                pipe.hdel(keys.ANSWER_FIRST, message_id)
                await pipe.execute()
        finally:  # not before: an entry left in Redis (it was away) is ended by the next check
            self._mine.discard(message_id)
            self._first_sent.discard(message_id)
        local = self.local.get(room)
        if local is not None:
            local.room.answer_ended(message_id)

    @redis_errors_as_503
    async def running_answers(self, room: str) -> list[str]:
        return list(await self._running(room))

    async def _end_orphaned_answers(self) -> None:
        """Answers of a server whose heartbeat expired, or of this one that could not be ended
        while Redis was away: end them as their server would have."""
        running = await self._running()
        others = sorted({entry["server"] for entry in running.values()} - {self.server_id})
        alive = dict(zip(others, await self.redis.mget([keys.server(server) for server in others]))) if others else {}
        alive[self.server_id] = b"1"
        for answer, entry in running.items():
            mine_lost = entry["server"] == self.server_id and answer not in self._mine
            if mine_lost or alive.get(entry["server"]) is None:
                if await self.redis.hdel(keys.ANSWERS, answer):  # this server claimed it
                    await self._end_answer(answer, entry)

    async def _end_answer(self, answer: str, entry: dict[str, Any]) -> None:
        room = entry["room"]
        first = await self.redis.hget(keys.ANSWER_FIRST, answer)
        said: list[str] = []
        first_seq = int(first) if first is not None else None
        if first_seq is not None:
            for _, fields in await self.redis.xrange(keys.room(room, "events"), min=f"{first_seq}-0", max="+"):
                if fields.get(b"a") == answer.encode():
                    said.append(json.loads(fields[b"f"])["data"]["text"])
        final = protocol.Token(
            answer, len(said), "", True, finish_reason="error", usage=protocol.Usage(), timings=protocol.Timings(),
            error=INTERRUPTED,
        )
        content = "".join(said)
        stub = msgspec.convert(entry["stub"], Text)
        text = msgspec.structs.replace(stub, content=content, finish_reason="error", error=INTERRUPTED)
        # The final token and the stored answer in one script: a stall cannot leave one without the other.
        await self._emit_and_store(room, [("Token", final)], stored=text if content else None, at=first_seq)
        await self.redis.hdel(keys.ANSWER_FIRST, answer)
        self._first_sent.discard(answer)
        self.log.warning("llmchat: ended answer %s in room %r: its server %s stopped", answer, room, entry["server"])
