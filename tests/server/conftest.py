"""Fixtures of the server wing's fast tests: the chat service with fake clients (tests/support/fakes.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from support import redis_server
from support.fakes import ENGINE, LIMITS, Chat
from support.redis_server import RedisServer, running_redis

from jupyter_llmchat.engine.types import EngineSettings
from jupyter_llmchat.room_bus.redis_bus import RedisRoomBus
from jupyter_llmchat.server.settings import ServiceLimits


@pytest.fixture
def make_chat(tmp_path: Path, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Any:
    """`make_chat(max_tokens=3, ...)`: a chat with these ServiceLimits (and `engine=`,
    `cleanup_delay=`, `root=`, stand-in options such as `words=`, `delay=`, `load_error=`)."""
    made: list[Chat] = []

    def _make(
        *, engine: EngineSettings = ENGINE, cleanup_delay: float = 300.0, root: Path | None = None,
        standin: dict[str, Any] | None = None, **limits: Any,
    ) -> Chat:
        values = {**{name: getattr(LIMITS, name) for name in LIMITS.__dataclass_fields__}, **limits}
        chat = Chat(jp_asyncio_loop, root or tmp_path, ServiceLimits(**values), engine, cleanup_delay, standin or {})
        made.append(chat)
        return chat

    yield _make
    for chat in made:
        chat.backend.close()
        chat.bus.store.close()
        for task in chat.stuck:
            if task is not None:
                task.cancel()
    jp_asyncio_loop.run_until_complete(asyncio.sleep(0))  # let the cancelled writes end


@pytest.fixture
def chat(make_chat: Any) -> Chat:
    return make_chat()


# Rooms shared through a real redis-server (started once per module, on a free 127.0.0.1 port).
@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not redis_server.available():
        pytest.skip("redis-server is not installed: apt-get install redis-server (the README's test command does)")
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def servers(redis: RedisServer, tmp_path: Path, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., Chat]]:
    """`servers(words=…, delay=…, timeout=…)`: a chat service over the shared Redis (another
    server); `timeout`: how long it waits for Redis before a call fails (5 s by default)."""
    made: list[Chat] = []

    def _make(timeout: float = 5.0, **standin: Any) -> Chat:
        bus = RedisRoomBus(redis.url, LIMITS.replay_events, 300.0, timeout=timeout)
        chat = Chat(jp_asyncio_loop, tmp_path, LIMITS, ENGINE, 300.0, standin, bus=bus)
        made.append(chat)
        return chat

    yield _make
    for chat in made:
        chat.backend.close()
        jp_asyncio_loop.run_until_complete(chat.bus.close())
