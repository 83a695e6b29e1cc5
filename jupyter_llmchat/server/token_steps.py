"""The model backend's token sink: decode steps queued as they come, emitted in order.

Built before the backend (which is handed it as its sink) and the answers (which say where
the steps go, `deliver_to`): neither needs the other to exist first. One task emits the
queued steps in the order they came; steps that queued up while one was being emitted go
out together (one round trip on a shared bus). Loop thread only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Awaitable, Callable

from ..engine.types import TokenEvent

Emit = Callable[[list[TokenEvent]], Awaitable[None]]


async def _nowhere(events: list[TokenEvent]) -> None:
    """Steps of a sink nobody receives from (nothing asked: nothing is expected)."""


class TokenSteps:
    """Call it with one decode step's events; `drained()` waits until all were emitted."""

    def __init__(self) -> None:
        self._steps: deque[list[TokenEvent]] = deque()  # steps not emitted yet, oldest first
        self._emitter: asyncio.Task[None] | None = None
        self._emit: Emit = _nowhere

    def deliver_to(self, emit: Emit) -> None:
        """Where the steps go (`answers.Answers`, once, as it is built)."""
        self._emit = emit

    def __call__(self, events: list[TokenEvent]) -> None:
        self._steps.append(events)
        if self._emitter is None:
            self._emitter = asyncio.ensure_future(self._emit_steps())

    async def _emit_steps(self) -> None:
        try:
            while self._steps:
                events = [event for step in self._steps for event in step]
                self._steps.clear()
                await self._emit(events)
        finally:
            self._emitter = None

    async def drained(self) -> None:
        """Wait until every step received so far is emitted (shutdown)."""
        while self._emitter is not None:
            await asyncio.shield(self._emitter)
