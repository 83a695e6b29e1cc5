"""The text-generation engine: one llama.cpp model shared by every chat client.

`Engine` batches many generations into one llama.cpp context on a background thread and
streams `TokenEvent`s back to the event loop. Importing this package does not load the
native library; `Engine.start()` does, on its own thread.
"""

from .chat_format import DEFAULT_SYSTEM_PROMPT
from .engine import Engine
from .model import default_model_path
from .types import (
    ChatTurn,
    EngineSettings,
    EngineUnavailable,
    FinishReason,
    GenerationRequest,
    QueueFull,
    Role,
    SamplingConfig,
    TokenEvent,
    TokenSink,
)

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ChatTurn",
    "Engine",
    "EngineSettings",
    "EngineUnavailable",
    "FinishReason",
    "GenerationRequest",
    "QueueFull",
    "Role",
    "SamplingConfig",
    "TokenEvent",
    "TokenSink",
    "default_model_path",
]
