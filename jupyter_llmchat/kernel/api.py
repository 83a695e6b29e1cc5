"""The module-level API (`jupyter_llmchat.ask`, `broadcast`, …) over one cached `ChatClient`.

    import jupyter_llmchat as chat
    chat.broadcast("general", "Hint: look at exercise 3 again", author_name="Teacher")
    for piece in chat.ask("general", "What is a closure?", max_tokens=64):
        print(piece, end="")

The client is found once per process (`client.connect`) and kept; a call that finds its
server gone drops it and looks again, so a kernel outlives a server restart. The widget and
the kernel relay reach the server through the same client.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from .client import ChatClient, connect
from .errors import AuthenticationFailed, ExtensionNotEnabled, ExtensionNotStarted, ServerNotFound
from .streaming import Answer, AsyncAnswer

__all__ = [
    "default_client", "with_default_client", "broadcast", "ask", "aask", "generate", "cancel", "new_thread",
    "set_room_prompt", "clear", "rooms", "stats", "history",
]

T = TypeVar("T")
# The server cannot be used at all (nothing was done): callers may rediscover or fall back.
UNREACHABLE = (ServerNotFound, ExtensionNotEnabled, ExtensionNotStarted, AuthenticationFailed)

_default: ChatClient | None = None
_default_lock = threading.Lock()


def default_client(on_start: Callable[[], None] | None = None) -> ChatClient:
    """The client the module-level functions use, discovered once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = connect(on_start=on_start)
        return _default


def with_default_client(call: Callable[[ChatClient], T], on_start: Callable[[], None] | None = None) -> T:
    """Run `call` on the default client.

    A cached client whose server went away or restarted (new token or secret) fails with
    one of the "unreachable" errors: it is dropped and discovery runs once more, so a
    kernel outlives a server restart. (Those errors mean nothing was done, so a retry is safe.)
    """
    global _default
    cached = _default is not None
    client = default_client(on_start)
    try:
        return call(client)
    except UNREACHABLE:
        with _default_lock:
            if _default is client:
                _default = None
        if not cached:
            raise
    fresh = default_client(on_start)
    fresh._new_threads |= client._new_threads  # a pending new_thread() outlives the server restart
    return call(fresh)


def broadcast(room: str, content: str, author_name: str | None = None) -> dict[str, Any]:
    """`ChatClient.broadcast` on the server that started this kernel."""
    return with_default_client(lambda client: client.broadcast(room, content, author_name))


def ask(
    room: str | None, prompt: str, *, context: Any = None, new_thread: bool = False, reply_to: str | None = None, **config: Any
) -> Answer:
    """`ChatClient.ask` on the server that started this kernel."""
    options = {"context": context, "new_thread": new_thread, "reply_to": reply_to}
    return with_default_client(lambda client: client.ask(room, prompt, **options, **config))


def aask(
    room: str | None, prompt: str, *, context: Any = None, new_thread: bool = False, reply_to: str | None = None, **config: Any
) -> AsyncAnswer:
    """`ChatClient.aask` on the server that started this kernel."""
    options = {"context": context, "new_thread": new_thread, "reply_to": reply_to}
    return with_default_client(lambda client: client.aask(room, prompt, **options, **config))


def generate(
    room: str,
    prompt: str,
    *,
    author_name: str | None = None,
    context: Any = None,
    new_thread: bool = False,
    reply_to: str | None = None,
    **config: Any,
) -> dict[str, Any]:
    """`ChatClient.generate` on the server that started this kernel."""
    options = {"author_name": author_name, "context": context, "new_thread": new_thread, "reply_to": reply_to}
    return with_default_client(lambda client: client.generate(room, prompt, **options, **config))


def new_thread(room: str) -> None:
    """`ChatClient.new_thread`: the next question of this kernel into `room` starts a new thread."""
    with_default_client(lambda client: client.new_thread(room))


def set_room_prompt(room: str, prompt: str | None, context: str | None = None) -> dict[str, Any]:
    """`ChatClient.set_room_prompt` on the server that started this kernel."""
    return with_default_client(lambda client: client.set_room_prompt(room, prompt, context))


def clear(room: str) -> dict[str, Any]:
    """`ChatClient.clear` on the server that started this kernel."""
    return with_default_client(lambda client: client.clear(room))


def cancel(message_id: str) -> bool:
    """`ChatClient.cancel` on the server that started this kernel."""
    return with_default_client(lambda client: client.cancel(message_id))


def rooms() -> list[dict[str, Any]]:
    return with_default_client(lambda client: client.rooms())


def stats() -> dict[str, Any]:
    return with_default_client(lambda client: client.stats())


def history(room: str, since: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    return with_default_client(lambda client: client.history(room, since, limit))
