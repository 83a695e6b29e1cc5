"""The model backend: the one seam between the chat service and where answers come from.

A backend takes `GenerationRequest`s, streams `TokenEvent`s to the sink it was built with
(on the event loop thread), and reports whether its model is available. The service talks
to the model only through this interface, so an OpenAI-compatible server is a second
implementation. The first is the in-process llama.cpp engine (`..engine.Engine`, built by
`llama_backend`), which satisfies it as it is; the second streams from an OpenAI-compatible
model server (`openai_backend.OpenAIBackend`, built by `openai_backend`). The extension's
`model_backend` setting picks one. With "llama", the engine is wrapped by
`managed_model.ManagedModel`, which brings in the model a reference names and can switch it;
a backend with a `status()` (as it has) reports its own `reference`/`state`/`progress`/
`detail`/`error`, and for one without, `server/stats.model_summary` derives them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.types import EngineSettings, GenerationRequest, TokenSink

if TYPE_CHECKING:  # pragma: no cover
    from .openai_requests import OpenAISettings


class ModelBackend(Protocol):
    """What the service needs from a model: submit, cancel, stats, availability, size."""

    loaded: bool
    load_error: str | None  # why answers are refused now (the Error 503's reason), once that is known
    model_name: str
    n_ctx: int
    parallel: int

    def start(self) -> None:
        """Begin loading or connecting, without blocking the event loop."""

    def submit(self, request: GenerationRequest) -> int:
        """Queue a request; its queue position (0: starts now). Raises `QueueFull`, `EngineUnavailable`."""

    def cancel(self, message_id: str) -> bool:
        """Stop a queued or running request; its final event says "cancelled"."""

    def stats(self) -> dict[str, Any]:
        """The `Stats.model` figures this backend knows (with `backend`)."""

    def forget(self, room: str, message_id: str | None = None) -> None:
        """Drop what the backend keeps of `room` (saved KV states), or only what holds
        `message_id`: the room was cleared, or the message deleted."""

    def close(self) -> None:
        """End every request with an error event and free the model (blocks briefly)."""


def llama_backend(
    settings: EngineSettings, sink: TokenSink, loop: asyncio.AbstractEventLoop, log: logging.Logger
) -> ModelBackend:
    """The in-process llama.cpp engine: one model in this server, batched across answers."""
    from ..engine import Engine

    return Engine(settings, sink, loop, log)


def openai_backend(
    settings: OpenAISettings,
    engine: EngineSettings,
    sink: TokenSink,
    loop: asyncio.AbstractEventLoop,
    log: logging.Logger,
) -> ModelBackend:
    """An OpenAI-compatible model server: this server loads no model (`openai_backend.py`)."""
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(settings, engine, sink, loop, log)
