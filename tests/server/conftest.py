"""Fixtures of the server wing's fast tests: the chat service with fake clients (tests/support/fakes.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from support.fakes import ENGINE, LIMITS, Chat

from jupyter_llmchat.engine.types import EngineSettings
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
