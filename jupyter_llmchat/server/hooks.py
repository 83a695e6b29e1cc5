"""Server-side hooks for other extensions: connect, message, disconnect and `Custom` kinds.

Each hook runs isolated: one that raises is logged and skipped, and the connection, the
room and the other hooks carry on. A hook may be a coroutine function; it is then run as
a task on the server's loop, and its failure is logged the same way.

Hooks are installed by *installers*: callables that take the `ChatService` and register
what they need (`service.on_message(fn)`, `service.on_custom("poll", fn)`, ...). They are
found in the entry point group `jupyter_llmchat.hooks` and in the `LLMChat.hooks` trait
(import strings "module:function"); an installer that fails to import or raises is logged
and skipped, so a broken plugin cannot stop the server.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

Hook = Callable[..., Any]
Installer = Callable[[Any], Any]
ENTRY_POINT_GROUP = "jupyter_llmchat.hooks"


class HookApi:
    """Hook registration for other extensions, on the `ChatService`; each method returns
    the hook, so it works as a decorator."""

    hooks: HookRegistry

    # Signatures: on_connect(service, connection), on_disconnect(service, connection),
    # on_message(service, connection, type, envelope, data) before the message is handled,
    # on_custom(kind)(service, connection, room | None, kind, payload).

    def on_connect(self, hook: Hook) -> Hook:
        self.hooks.on_connect.append(hook)
        return hook

    def on_message(self, hook: Hook) -> Hook:
        self.hooks.on_message.append(hook)
        return hook

    def on_disconnect(self, hook: Hook) -> Hook:
        self.hooks.on_disconnect.append(hook)
        return hook

    def on_custom(self, kind: str, hook: Hook | None = None) -> Any:
        """`service.on_custom("poll", fn)` or `@service.on_custom("poll")`."""
        if hook is None:
            return lambda fn: self.on_custom(kind, fn)
        self.hooks.add_custom(kind, hook)
        return hook



class HookRegistry:
    """Lists of callables per event; `custom` maps a `Custom` kind to its handlers."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.on_connect: list[Hook] = []
        self.on_message: list[Hook] = []
        self.on_disconnect: list[Hook] = []
        self.custom: dict[str, list[Hook]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def add_custom(self, kind: str, hook: Hook) -> None:
        self.custom.setdefault(kind, []).append(hook)

    def run(self, hooks: list[Hook], *args: Any) -> None:
        for hook in list(hooks):
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    self._watch(hook, result)
            except Exception:
                self.log.exception("llmchat hook %r failed; ignoring it", hook)

    async def run_awaited(self, hooks: list[Hook], *args: Any) -> None:
        """Like `run`, but an async hook is awaited: what it posts comes before what follows
        (a `Custom` is relayed after its hooks, and a hook's posts are coroutines)."""
        for hook in list(hooks):
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.log.exception("llmchat hook %r failed; ignoring it", hook)

    def _watch(self, hook: Hook, awaitable: Any) -> None:
        """Run an async hook in the background; keep a reference so it is not collected."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self.log.error("llmchat hook %r failed; ignoring it", hook, exc_info=task.exception())

        task.add_done_callback(done)


def import_object(spec: str) -> Any:
    """`"package.module:attr.sub"` -> the object (a dotted path without ":" also works)."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        module_name, _, attr = spec.rpartition(".")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def _discovered_installers() -> Iterable[tuple[str, Callable[[], Any]]]:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        yield f"entry point {entry_point.name} = {entry_point.value}", entry_point.load


def install_hooks(service: Any, specs: Iterable[str], *, use_entry_points: bool, log: logging.Logger) -> list[str]:
    """Run every installer with the service; returns the names of those that succeeded."""
    sources: list[tuple[str, Callable[[], Any]]] = []
    if use_entry_points:
        try:
            sources.extend(_discovered_installers())
        except Exception:
            log.exception("llmchat: could not list the %s entry points", ENTRY_POINT_GROUP)
    sources.extend((f"LLMChat.hooks {spec!r}", functools.partial(import_object, spec)) for spec in specs)
    installed = []
    for name, load in sources:
        try:
            installer = load()
            installer(service)
        except Exception:
            log.exception("llmchat: hook installer %s failed; skipping it", name)
            continue
        installed.append(name)
        log.info("llmchat: installed hooks from %s", name)
    return installed
