"""The in-process model behind a reference: found or downloaded, loaded, and switched while serving.

`ManagedModel` is the `llama` model backend. It resolves `c.LLMChat.model` (a path, `hf:`,
`ollama:`, or the packaged model: `..models`) on a daemon thread of its own, then builds the
engine on the file and starts it. Until the engine is loaded, `Stats.model` and
`Welcome.model` say what is happening (`reference`, `state`, `progress`, `detail`, `error`)
and `submit` refuses with that sentence (Error 503). A switch (`switch`, moderators only,
checked by the caller) downloads the new model while the old one still answers, then lets
the answers in progress finish (at most `drain_seconds`; what is left ends with an error),
frees the old model and loads the new. Every change of what it says is handed to
`on_change` (on the loop thread, progress at most twice a second), so members hear of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Literal, TypeVar

from ..engine.types import EngineSettings, EngineUnavailable, GenerationRequest
from ..models import ModelError, parse_reference, resolve
from ..models.resolve import PACKAGED, Resolved

State = Literal["resolving", "downloading", "loading", "loaded", "failed"]
T = TypeVar("T")
SWITCHED = "the model was switched"
_PUSH_EVERY = 0.5  # seconds between two progress-only pushes


class SwitchBusy(RuntimeError):
    """A switch was asked for while another is under way."""


class ManagedModel:
    """A `ModelBackend` that brings in the model a reference names, and can replace it."""

    def __init__(
        self,
        reference: str,
        settings: EngineSettings,
        build: Callable[[EngineSettings], Any],  # the engine: a ModelBackend with pending() and close(reason)
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
        *,
        drain_seconds: float = 120.0,
    ) -> None:
        self.settings = settings
        self._build = build
        self._loop = loop
        self.log = log
        self.drain_seconds = drain_seconds
        self.on_change: Callable[[], None] = lambda: None
        self.reference = reference.strip()
        self.state: State = "resolving"
        self.progress: float | None = None
        self.detail = f"resolving {self.reference or PACKAGED}"
        self.error: str | None = None
        self._inner: Any = None  # the engine serving now (None while none is)
        self._forget_later: list[tuple[str, str | None]] = []  # clears asked while no engine served
        self._name = ""
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._pushed = 0.0

    # -- what the service reads (ModelBackend) ------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._inner is not None and self._inner.loaded and not self._draining

    @property
    def load_error(self) -> str | None:
        """Why answers are refused now (the 503's reason), None while they are not."""
        if self.loaded:
            return None
        return self.error or self.detail or "the model is loading"

    @property
    def model_name(self) -> str:
        return (self._inner.model_name if self._inner is not None else "") or self._name or self.reference or PACKAGED

    @property
    def n_ctx(self) -> int:
        return self._inner.n_ctx if self._inner is not None else int(self.settings.n_ctx)

    @property
    def parallel(self) -> int:
        return self._inner.parallel if self._inner is not None else int(self.settings.parallel)

    @property
    def engine(self) -> Any:
        """The engine serving now, or None (while resolving, downloading, or after a failure)."""
        return self._inner

    def __getattr__(self, name: str) -> Any:
        """What only the engine knows (its figures, `formatter_kind`, a stand-in's `requests`)."""
        inner = self.__dict__.get("_inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def status(self) -> dict[str, Any]:
        """`reference`, `state`, `progress`, `detail`, `error`: the fields of `Stats.model`."""
        return {"reference": self.reference, "state": self.state, "progress": self.progress, "detail": self.detail, "error": self.error}

    def start(self) -> None:
        self._task = self._loop.create_task(self._bring_in(self.reference, first=True))

    async def wait_loaded(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state not in ("loaded", "failed") or self._task is None or not self._task.done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return self.loaded

    def submit(self, request: GenerationRequest) -> int:
        inner = self._inner
        if inner is None or not self.loaded:
            raise EngineUnavailable(self.load_error or "the model is loading")
        return inner.submit(request)

    def cancel(self, message_id: str) -> bool:
        return self._inner.cancel(message_id) if self._inner is not None else False

    def forget(self, room: str, message_id: str | None = None) -> None:
        """The saved KV states of `room` go, every model's (they share `kv_cache_dir`): the
        serving engine deletes them; asked while none serves, the next one does."""
        if self._inner is not None:
            self._inner.forget(room, message_id)
        else:
            self._forget_later.append((room, message_id))

    def stats(self) -> dict[str, Any]:
        figures = self._inner.stats() if self._inner is not None else {"backend": "llama"}
        return {**figures, "name": self.model_name, "loaded": self.loaded, "load_error": self.load_error, **self.status()}

    def close(self) -> None:
        """Free the model; a download under way stops at its next chunk (it resumes next time)."""
        self._closed = True
        if self._inner is not None:
            self._inner.close()

    # -- switching ----------------------------------------------------------------------------

    def switch(self, reference: str) -> None:
        """Begin replacing the model with the one `reference` names; `BadReference` (its form)
        and `SwitchBusy` (another switch is under way) are raised at once, the rest is told
        through the status."""
        parse_reference(reference)
        if self._task is not None and not self._task.done():
            raise SwitchBusy(f"the model is already changing ({self.detail}); try again when it is done")
        previous, text = self.reference, reference.strip()
        self._set(reference=text, state="resolving", progress=None, detail=f"resolving {text or PACKAGED}", error=None)
        self._task = self._loop.create_task(self._bring_in(text, first=False, previous=previous))

    async def _bring_in(self, text: str, *, first: bool, previous: str = "") -> None:
        old = self._inner
        self._set(reference=text, state="resolving", progress=None, detail=f"resolving {text or PACKAGED}", error=None)
        try:
            found = await self._in_thread(lambda: resolve(text, self._downloading))
        except Exception as error:  # ModelError says why; anything else is a bug, still told
            if not isinstance(error, ModelError):
                error = ModelError(f"{type(error).__name__}: {error}")
            if first or old is None or not old.loaded:
                self._set(state="failed", progress=None, detail=f"cannot use {text or PACKAGED}", error=str(error))
            else:  # the old model never stopped answering: it stays
                self._set(reference=previous, state="loaded", progress=None, detail=f"could not switch to {text}: {error}")
            self.log.error("llmchat: model %r: %s", text, error)
            return
        if self._closed:
            return
        if old is not None:
            await self._retire(old, found)
        if not self._closed:
            await self._load(found)

    async def _retire(self, old: Any, found: Resolved) -> None:
        """Let the old model's answers finish (or end them after `drain_seconds`), then free it."""
        self._draining = True
        deadline = time.monotonic() + self.drain_seconds
        while (left := old.pending()) and time.monotonic() < deadline and not self._closed:
            self._set(state="loading", progress=None, detail=f"switching to {found.name}: waiting for {left} answer(s) to finish")
            await asyncio.sleep(0.05)
        self._set(state="loading", progress=0.0, detail=f"loading {found.name}")
        await self._in_thread(lambda: old.close(SWITCHED))
        self._inner = None

    async def _load(self, found: Resolved) -> None:
        self._name = found.name
        self._inner = inner = self._build(dataclasses.replace(self.settings, model_path=found.path, model_name=found.name))
        for room, message_id in self._forget_later:  # the engine applies them once its model is loaded
            inner.forget(room, message_id)
        self._forget_later.clear()
        self._draining = False
        self._set(reference=found.reference, state="loading", progress=0.0, detail=f"loading {found.name}")
        inner.start()
        while not (inner.loaded or inner.load_error is not None) and not self._closed:
            progress = float(getattr(inner, "load_progress", 0.0))
            self._set(progress=round(progress, 3), detail=f"loading {found.name}: {int(progress * 100)} %", push=False)
            await asyncio.sleep(0.05)
        if inner.loaded:
            self._set(state="loaded", progress=None, detail="", error=None)
        else:
            self._set(state="failed", progress=None, detail=f"cannot load {found.name}", error=inner.load_error)

    def _downloading(self, done: int, total: int, what: str) -> None:
        """From the download thread: hand the figures to the loop; stop if the server is closing."""
        if self._closed:
            raise ModelError("the server is stopping")
        fraction = min(1.0, done / total) if total else None
        detail = f"{what}: {int(fraction * 100)} %" if fraction is not None else what
        self._loop.call_soon_threadsafe(self._set_soon, fraction, detail)

    def _set_soon(self, fraction: float | None, detail: str) -> None:
        self._set(state="downloading", progress=None if fraction is None else round(fraction, 3), detail=detail, push=False)

    def _set(self, *, push: bool = True, **fields: Any) -> None:
        changed_state = "state" in fields and fields["state"] != self.state
        for name, value in fields.items():
            setattr(self, name, value)
        now = time.monotonic()
        if push or changed_state or now - self._pushed >= _PUSH_EVERY:
            self._pushed = now
            try:
                self.on_change()
            except Exception:  # telling the members must never stop the model
                self.log.exception("llmchat: telling members about the model failed")

    def _in_thread(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Run blocking `work` on a daemon thread: a download must never hold up the server's exit."""
        future: asyncio.Future[T] = self._loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            try:
                result, error = work(), None
            except BaseException as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            try:
                self._loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        threading.Thread(target=run, name="llmchat-model", daemon=True).start()
        return future
