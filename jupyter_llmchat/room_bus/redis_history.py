"""The Redis room bus's stored side: each room's history (a sorted set of ids by seq and a
hash of the messages), its deleted ids, its settings, and the list of rooms.

A mixin of `redis_bus.RedisRoomBus`, which holds the client and the rooms open here;
live delivery, replay and presence are there, the answers running now in `redis_answers`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import redis.asyncio as redis

from ..protocol import Text
from . import redis_keys as keys
from .bus import Message, StoredText
from .redis_errors import redis_errors_as_503
from .redis_fanout import LocalRoom
from .redis_presence import people
from .rooms import new_epoch
from .store import CONTEXT_SCAN


class RedisHistory:
    """Stored messages, settings and the room list, in Redis."""

    redis: redis.Redis
    replay_events: int
    local: dict[str, LocalRoom]

    @redis_errors_as_503
    async def store_message(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.room(room, "msgs"), {text.message_id: seq})
            pipe.hset(keys.room(room, "msg"), text.message_id, msgspec.json.encode(text))
            pipe.sadd(keys.ROOMS, room)
            await pipe.execute()

    async def store_in_progress(self, room: str, seq: int, text: Text, head_seq: int) -> None:
        """Nothing to write: the room's stream holds what the answer said, and if this server
        dies another one ends the answer and stores it from there (`redis_answers`)."""

    async def save_head(self, room: str, seq: int) -> None:
        """The head lives in Redis already (the emit script's HINCRBY)."""

    async def _rows(self, room: str, ids_and_seqs: list[tuple[bytes, float]]) -> list[Message]:
        if not ids_and_seqs:
            return []
        datas = await self.redis.hmget(keys.room(room, "msg"), [message_id for message_id, _ in ids_and_seqs])
        return [(int(seq), json.loads(data)) for (_, seq), data in zip(ids_and_seqs, datas) if data is not None]

    @redis_errors_as_503
    async def messages(
        self, room: str, *, before_seq: int | None = None, since: int | None = None, limit: int = 50
    ) -> list[Message]:
        low = f"({since}" if since is not None else "-inf"
        high = f"({before_seq}" if before_seq is not None else "+inf"
        if since is not None and before_seq is None:  # paging forward: the oldest after `since`
            found = await self.redis.zrangebyscore(keys.room(room, "msgs"), low, high, start=0, num=limit, withscores=True)
        else:
            found = (await self.redis.zrevrangebyscore(keys.room(room, "msgs"), high, low, start=0, num=limit, withscores=True))[::-1]
        return await self._rows(room, found)

    @redis_errors_as_503
    async def message(self, room: str, *, message_id: str | None = None, seq: int | None = None) -> StoredText | None:
        if message_id is not None:
            score = await self.redis.zscore(keys.room(room, "msgs"), message_id)
            found = [] if score is None else [(message_id.encode(), score)]
        else:
            found = await self.redis.zrangebyscore(keys.room(room, "msgs"), seq, seq, withscores=True)
        rows = await self._rows(room, found[:1])
        return (rows[0][0], msgspec.convert(rows[0][1], Text)) if rows else None

    @redis_errors_as_503
    async def exchanges(
        self, room: str, username: str, *, before_seq: int, limit: int
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """As `HistoryStore.exchanges`: the newest `CONTEXT_SCAN` messages, read page by page
        until `limit` pairs are found."""
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        seen: set[str] = set()
        scanned, upper = 0, before_seq
        while scanned < CONTEXT_SCAN and len(pairs) < limit:
            page = await self.messages(room, before_seq=upper, limit=min(200, CONTEXT_SCAN - scanned))
            if not page:
                break
            scanned, upper = scanned + len(page), page[0][0]
            answers = [data for _, data in reversed(page) if (data.get("author") or {}).get("kind") == "assistant"]
            asked = [str(data.get("in_reply_to")) for data in answers if data.get("in_reply_to")]
            questions = {}
            if asked:
                for raw in await self.redis.hmget(keys.room(room, "msg"), asked):
                    if raw is not None:
                        data = json.loads(raw)
                        questions[data["message_id"]] = data
            for answer in answers:
                question = questions.get(answer.get("in_reply_to") or "")
                if question is None or question["message_id"] in seen:
                    continue
                if (question.get("author") or {}).get("username") != username:
                    continue
                seen.add(question["message_id"])
                pairs.append((question, answer))
                if len(pairs) >= limit:
                    break
        return pairs

    @redis_errors_as_503
    async def forget_message(self, room: str, message_id: str, deleted_seq: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.room(room, "deleted"), {message_id: deleted_seq})
            # Older deletions than the replay window can hold matter to no replay: bounded.
            pipe.zremrangebyscore(keys.room(room, "deleted"), "-inf", deleted_seq - self.replay_events - 1)
            await pipe.execute()

    @redis_errors_as_503
    async def clear(self, room: str) -> int:
        epoch = new_epoch()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zcard(keys.room(room, "msgs"))
            pipe.delete(keys.room(room, "msgs"), keys.room(room, "msg"), keys.room(room, "events"), keys.room(room, "deleted"))
            pipe.hset(keys.room(room), "epoch", epoch)
            pipe.publish(keys.room(room, "live"), b"E\n" + epoch.encode())  # every server's members: a new epoch
            deleted, *_ = await pipe.execute()
        local = self.local.get(room)
        if local is not None:
            local.epoch = epoch
        return int(deleted)

    @redis_errors_as_503
    async def delete_older_than(self, created_before: str) -> int:
        deleted = 0
        for name in await self.redis.smembers(keys.ROOMS):
            room = name.decode()
            old = [
                message_id for message_id, raw in (await self.redis.hgetall(keys.room(room, "msg"))).items()
                if json.loads(raw).get("created", "") < created_before
            ]
            if old:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.zrem(keys.room(room, "msgs"), *old)
                    pipe.hdel(keys.room(room, "msg"), *old)
                    await pipe.execute()
                deleted += len(old)
        return deleted

    @redis_errors_as_503
    async def settings(self, room: str) -> dict[str, Any]:
        raw = await self.redis.hget(keys.SETTINGS, room)
        return {} if raw is None else json.loads(raw)

    @redis_errors_as_503
    async def save_settings(self, room: str, settings: dict[str, Any]) -> None:
        await self.redis.hset(keys.SETTINGS, room, json.dumps(settings, ensure_ascii=False))

    @redis_errors_as_503
    async def room_list(self) -> list[dict[str, Any]]:
        names = sorted(name.decode() for name in await self.redis.smembers(keys.ROOMS))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(keys.room(name), "seq")
                pipe.hgetall(keys.room(name, "present"))
            found = await pipe.execute()
        return [
            {"room": name, "members": len(people(present)), "head_seq": int(head or 0)}
            for name, head, present in zip(names, found[::2], found[1::2])
        ]
