"""Build and tear down the chat service from the `LLMChat` settings.

One construction for both hosts: the Jupyter Server extension (`extension.py`) and the
service of its own, `jupyter llmchat serve` (`standalone.py`). Both then run the very same
handlers, rooms, history file and model, configured by the same `c.LLMChat` settings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tornado.ioloop import PeriodicCallback

from . import metrics
from .._version import __version__
from ..engine.types import EngineSettings, SamplingConfig, TokenSink
from ..runtime_secret import owner_username, remove_secret, write_secret
from .config_values import ConfigError, from_traits
from .hooks import install_hooks
from ..backends.managed_model import ManagedModel
from ..backends.model_backend import ModelBackend, llama_backend, openai_backend
from ..backends.openai_requests import OpenAISettings
from ..room_bus.bus import RoomBus
from ..room_bus.memory_bus import MemoryRoomBus
from ..room_bus.store import HistoryInUse, HistoryStore
from .model_control import push_stats
from .owner_auth import owner_user
from .service import ChatService
from .settings import ServiceLimits
from .token_steps import TokenSteps

# Called with the history path and the error when another process holds the file; returns
# True when it got the file released (the store is then opened once more).
HistoryHolder = Callable[[str, HistoryInUse], bool]


@dataclass
class RunningService:
    """The service, its model backend and what was started with them; `close()` ends it all."""

    service: ChatService
    backend: ModelBackend
    sweeper: PeriodicCallback
    secret: str
    secret_path: Path | None

    def handler_settings(self, app: Any) -> dict[str, Any]:
        """What the llmchat handlers read from the Tornado application's settings."""
        return {
            "llmchat_service": self.service,
            "llmchat_ping_interval": app.ping_interval,
            "llmchat_compression": app.enable_compression,
            "llmchat_moderators": frozenset(app.moderators),
            "llmchat_secret": self.secret,
            "llmchat_owner": owner_user(owner_username()),
        }

    async def close(self) -> None:
        """Finish every stream with an error, persist the rooms, free the model."""
        self.sweeper.stop()
        if self.secret_path is not None:
            remove_secret(self.secret_path)
        metrics.forget(self.service)
        await asyncio.get_running_loop().run_in_executor(None, self.backend.close)
        # The backend posted its final events to the loop before its close returned, so they
        # reached its sink before this resumes; the service's close waits until they are
        # emitted (`TokenSteps.drained`).
        await self.service.close()


def start_service(
    app: Any,
    loop: asyncio.AbstractEventLoop,
    runtime_dir: str,
    log: logging.Logger,
    *,
    release_history: HistoryHolder | None = None,
) -> RunningService:
    """Check the settings of `app` (an `LLMChat`), then start the service: room bus, model
    backend (loading in the background), sweeper, metrics, hooks and the runtime secret."""
    app.check_config()
    sampling = from_traits(SamplingConfig, app, max_tokens=app.default_max_tokens)
    limits = from_traits(ServiceLimits, app, sampling=sampling)
    tokens = TokenSteps()
    backend = model_backend(app, tokens, loop, log)
    service = ChatService(limits, room_bus(app, release_history), backend, tokens, log=log, version=__version__)
    if isinstance(backend, ManagedModel):
        backend.on_change = lambda: push_stats(service)
    backend.start()
    sweeper = PeriodicCallback(service.sweep, 1000)
    sweeper.start()
    metrics.expose(service)
    install_hooks(service, app.hooks, use_entry_points=app.hook_entry_points, log=log)
    secret_path, secret = write_owner_secret(runtime_dir, log)
    return RunningService(service, backend, sweeper, secret, secret_path)


def room_bus(app: Any, release_history: HistoryHolder | None = None) -> RoomBus:
    """The `room_bus` setting's bus: this process's own rooms, or rooms shared through Redis."""
    if app.room_bus == "memory":
        return MemoryRoomBus(
            _history_store(app.history_path, release_history),
            app.replay_events, app.room_cleanup_delay, app.replay_bytes, app.replay_memory, app.max_rooms,
        )
    if app.room_bus.startswith(("redis://", "rediss://", "unix://")):
        from ..room_bus.redis_bus import RedisRoomBus  # imports the redis client only when it is used

        return RedisRoomBus(app.room_bus, app.replay_events, app.room_cleanup_delay, app.max_rooms, app.log)
    raise ConfigError(
        f'llmchat is not started: invalid setting LLMChat.room_bus={app.room_bus!r}: "memory" or "redis://host:port/db"'
    )


def _history_store(path: str, release_history: HistoryHolder | None) -> HistoryStore:
    try:
        return HistoryStore(path)
    except HistoryInUse as error:
        if release_history is None or not release_history(path, error):
            raise ConfigError(f"llmchat is not started: {error}") from None
    try:
        return HistoryStore(path)
    except HistoryInUse as error:
        raise ConfigError(f"llmchat is not started: {error}") from None


def model_backend(app: Any, sink: TokenSink, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> ModelBackend:
    """The backend `model_backend` names, feeding `sink` on the loop (a switched model's engine too)."""
    engine = from_traits(EngineSettings, app, few_shot=tuple((q, a) for q, a in app.few_shot))
    if app.model_backend == "openai":
        return openai_backend(from_traits(OpenAISettings, app), engine, sink, loop, log)
    return ManagedModel(app.model or app.model_path, engine, lambda settings: llama_backend(settings, sink, loop, log), loop, log)


def write_owner_secret(runtime_dir: str, log: logging.Logger) -> tuple[Path | None, str]:
    """The secret the owner's own kernels and CLI use when there is no token to read."""
    try:
        return write_secret(runtime_dir)
    except (OSError, RuntimeError) as error:  # RuntimeError: the file system ignores 0600
        log.warning("llmchat: no runtime secret (%s); kernels will need a token", error)
        return None, ""
