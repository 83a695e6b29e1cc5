"""The limits and defaults the chat service enforces, built from the `LLMChat` traits.

Apart from the service so that the parts it drives (`answers`) can read them without
importing the service back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.primer import DEFAULT_SYSTEM_PROMPT
from ..engine.types import EngineSettings, SamplingConfig


@dataclass(frozen=True)
class ServiceLimits:
    """The limits and defaults the service enforces (built from the `LLMChat` traits)."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_connections: int = 100
    max_connections_per_user: int = 20
    owner_reserved_connections: int = 10
    message_size_limit: int = 1024 * 1024
    max_tokens: int = EngineSettings.max_tokens  # declared once, by the engine that enforces it
    default_max_tokens: int = 256
    rate_limit: float = 20.0
    rate_limit_burst: int = 40
    replay_events: int = 4096
    replay_bytes: int = 4 * 1024 * 1024
    replay_memory: int = 64 * 1024 * 1024
    max_rooms: int = 10_000
    max_rooms_per_connection: int = 64
    send_queue_bytes: int = 8 * 1024 * 1024
    history_messages: int = 64
    max_answers_per_user: int = 4  # answers one user may have waiting or running; more get 429
    generate_id_window: float = 600.0  # seconds a Generate id is remembered (retries, Error 409)
    connection_timeout: float = 300.0
    max_binary_bytes: int = 512 * 1024
    cancel_when_room_empty: bool = False
    history_retention_days: float = 0.0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
