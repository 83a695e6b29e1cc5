"""jupyter-llmchat: a shared local LLM and real-time chat rooms for every Jupyter server.

Five wings on a shared base (docs/architecture.md): `server/` (the Jupyter Server
extension: transport and service), its two seams `room_bus/` (the room bus) and `backends/`
(the model backend), `kernel/` (what notebook code and the CLI use), `engine/` (the
in-process llama.cpp model); `protocol/` and `runtime_secret.py` are what both sides speak.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# Public names and the kernel-wing module that defines each: imported on first use, so that
# `import jupyter_llmchat` stays cheap in a kernel (no server, no llama_cpp, no widgets).
_LAZY = {
    "ChatWidget": "kernel.widget",
    "ChatClient": "kernel.client",
    "connect": "kernel.client",
    "broadcast": "kernel.api",
    "ask": "kernel.api",
    "aask": "kernel.api",
    "generate": "kernel.api",
    "cancel": "kernel.api",
    "new_thread": "kernel.api",
    "set_room_prompt": "kernel.api",
    "clear": "kernel.api",
    "rooms": "kernel.api",
    "stats": "kernel.api",
    "history": "kernel.api",
    "Answer": "kernel.streaming",
    "AsyncAnswer": "kernel.streaming",
    "LLMChatClientError": "kernel.errors",
    "ServerNotFound": "kernel.errors",
    "ExtensionNotEnabled": "kernel.errors",
    "ExtensionNotStarted": "kernel.errors",
    "AuthenticationFailed": "kernel.errors",
    "ChatRequestError": "kernel.errors",
    "ModelUnavailable": "kernel.errors",
    "RateLimited": "kernel.errors",
    "GenerationFailed": "kernel.errors",
    "ConnectionLost": "kernel.errors",
    "ResponseTimeout": "kernel.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.extension import LLMChat

    return [{"module": "jupyter_llmchat", "app": LLMChat}]
