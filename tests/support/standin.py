"""A model backend without a model, for the fast tier (backends/model_backend.ModelBackend).

Each answer is `words`, one token per loop turn (`call_soon`, or `call_later(delay)`),
cut at the request's `max_tokens` (itself capped by `settings.max_tokens`, as the engine
does) and ended early by `cancel` or `close`. Queue positions and `QueueFull` are counted
as the engine counts them (with the owner's reserved places), though every answer streams
at once; `prompt_tokens` counts the characters of the turns, and a prompt of more
characters than the engine's prompt budget (in tokens) ends `truncated`, as the engine
would cut it. Every request is kept in `requests`: a test sees exactly what the model was
asked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_llmchat.engine.fair_queue import queue_full
from jupyter_llmchat.engine.types import EngineSettings, EngineUnavailable, GenerationRequest, QueueFull, TokenEvent

WORDS = ("Hello", " from", " the", " stand-in", ".")


class StandIn:
    model_name = "stand-in"

    def __init__(self, settings: EngineSettings, sink: Any, loop: asyncio.AbstractEventLoop, log: Any = None, *,
                 words: tuple[str, ...] = WORDS, delay: float = 0.0, load_error: str | None = None) -> None:
        self.settings, self.sink, self.loop, self.words, self.delay = settings, sink, loop, words, delay
        self.n_ctx, self.parallel, self.load_error, self.loaded = settings.n_ctx, settings.parallel, load_error, False
        self.requests: list[GenerationRequest] = []
        self.running: dict[str, str | None] = {}  # message_id -> why to stop it early (None: go on)
        self.generated = 0
        self.forgotten: list[tuple[str, str | None]] = []  # forget(room, message_id) calls

    def start(self) -> None:
        self.loaded = self.load_error is None

    async def wait_loaded(self, timeout: float | None = None) -> bool:
        return self.loaded

    def submit(self, request: GenerationRequest) -> int:
        if not self.loaded:
            raise EngineUnavailable(self.load_error or "model is loading")
        position = max(0, len(self.running) - self.parallel + 1)
        refused = queue_full(self.settings, position, max(0, len(self.running) - self.parallel), request.owner)
        if refused:
            raise QueueFull(refused)
        self.requests.append(request)
        self.running[request.message_id] = None
        limit = min(request.config.max_tokens, self.settings.max_tokens)
        self.loop.call_soon(self._step, request.message_id, 0, limit, sum(len(t.content) for t in request.turns))
        return position

    def _step(self, message_id: str, index: int, limit: int, prompt_tokens: int) -> None:
        stop = self.running.get(message_id)
        reason = stop or ("stop" if index == len(self.words) else "length" if index == limit else None)
        if reason is None:
            self.generated += 1
            self.sink([TokenEvent(message_id, index, self.words[index])])
            self.loop.call_later(self.delay, self._step, message_id, index + 1, limit, prompt_tokens)
            return
        del self.running[message_id]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": index}
        timings = {"queue_ms": 0.0, "ttft_ms": 0.0, "tokens_per_second": 0.0}
        error = getattr(self, "close_reason", "server shutting down") if reason == "error" else None
        budget = self.settings.prompt_budget or self.n_ctx // self.parallel
        self.sink([TokenEvent(message_id, index, "", True, reason, error, usage, timings, prompt_tokens > budget)])

    def cancel(self, message_id: str) -> bool:
        if self.running.get(message_id, "gone") is not None:
            return False
        self.running[message_id] = "cancelled"
        return True

    def stats(self) -> dict[str, Any]:
        return {"name": self.model_name, "backend": "stand-in", "loaded": self.loaded, "load_error": self.load_error,
                "n_ctx": self.n_ctx, "parallel": self.parallel, "active_sequences": len(self.running),
                "queue_depth": max(0, len(self.running) - self.parallel), "tokens_generated": self.generated,
                "tokens_per_second": 0.0, "tokens_per_second_per_sequence": 0.0, "prompt_tokens_evaluated": 0,
                "prompt_tokens_cached": 0, "kv_disk": {"bytes": 0, "files": 0, "hits": 0, "misses": 0}}

    def forget(self, room: str, message_id: str | None = None) -> None:
        self.forgotten.append((room, message_id))

    def pending(self) -> int:
        return len(self.running)

    def close(self, reason: str = "server shutting down") -> None:  # from another thread: each answer's next step ends it
        self.loaded = False
        self.close_reason = reason
        for message_id in list(self.running):
            self.running[message_id] = "error"
