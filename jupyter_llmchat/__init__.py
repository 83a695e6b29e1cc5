"""jupyter-llmchat: a shared local LLM and real-time chat rooms for every Jupyter server."""

from __future__ import annotations

import importlib
from typing import Any

from . import rooms, stats  # noqa: F401  imported only to be hidden: see the note under __all__
from ._version import __version__

# Public names and the submodule that defines each: imported on first use, so that
# `import jupyter_llmchat` stays cheap in a kernel (no server, no llama_cpp, no widgets).
_LAZY = {
    "ChatWidget": "widget",
    "ChatClient": "client",
    "connect": "client",
    "broadcast": "client",
    "ask": "client",
    "aask": "client",
    "generate": "client",
    "cancel": "client",
    "new_thread": "client",
    "set_room_prompt": "client",
    "clear": "client",
    "rooms": "client",
    "stats": "client",
    "history": "client",
    "Answer": "streaming",
    "AsyncAnswer": "streaming",
    "LLMChatClientError": "errors",
    "ServerNotFound": "errors",
    "ExtensionNotEnabled": "errors",
    "AuthenticationFailed": "errors",
    "ChatRequestError": "errors",
    "ModelUnavailable": "errors",
    "RateLimited": "errors",
    "GenerationFailed": "errors",
    "ConnectionLost": "errors",
    "ResponseTimeout": "errors",
}

__all__ = ["__version__", *_LAZY]

# `rooms` and `stats` are also the names of two server submodules, and importing a
# submodule sets it as a package attribute, which would hide the client functions. Both
# are imported above (small, no server code) and the attributes deleted: later imports
# find them in sys.modules and leave the package alone, so `jupyter_llmchat.rooms()` and
# `jupyter_llmchat.stats()` are always the client functions, served by __getattr__.
del rooms, stats


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
    from .extension import LLMChat

    return [{"module": "jupyter_llmchat", "app": LLMChat}]
