"""The public `Engine`: one model, one decode thread, many concurrent generations.

The event loop thread calls `submit`, `cancel`, `stats` and `close`; they only touch the
queue under a lock and never wait for the model. The decode thread loads the model, then
loops: admit queued requests into free slots, run one decode step, and hand the step's
events to the loop with a single `call_soon_threadsafe`. When there is nothing to do it
sleeps on a condition variable, waking ten times a second with adaptive threads to look
at the machine (threads.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Any

from .fair_queue import FairQueue, queue_full
from .job import Job
from .kv_disk import KVDisk
from .kv_files import model_identity
from .model import LoadedModel, ModelLoadError, load_model
from .threads import ThreadPolicy
from .types import (
    EngineSettings,
    EngineUnavailable,
    GenerationRequest,
    QueueFull,
    TokenEvent,
    TokenSink,
)

_SHUTDOWN = "server shutting down"
_TPS_WINDOW = 5.0  # seconds of history behind stats()["tokens_per_second"]
_NO_DISK = {"bytes": 0, "files": 0, "hits": 0, "misses": 0}  # stats()["kv_disk"] when states are not saved


class Engine:
    """Continuous-batching text generation over one shared llama.cpp context."""

    def __init__(
        self,
        settings: EngineSettings,
        sink: TokenSink,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger | None = None,
    ):
        self.settings = settings
        self._sink = sink
        self._loop = loop
        self.log = log or logging.getLogger("jupyter_llmchat.engine")
        self.loaded = False
        self.load_error: str | None = None
        self.model_name = self._guess_name(settings)
        self.n_ctx = int(settings.n_ctx)
        self.parallel = max(1, int(settings.parallel))
        self.formatter_kind = ""  # "gemma" or "jinja" once loaded (tests, docs)
        self.load_progress = 0.0  # 0-1 while llama.cpp reads the weights
        self._close_reason = _SHUTDOWN
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = FairQueue()  # round-robin between users (fair_queue.py)
        self._jobs: dict[str, Job] = {}  # every queued or admitted job, by message_id
        self._n_admitted = 0
        self._closing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._settled = threading.Event()  # loaded or failed
        self._sched = None
        self._model: LoadedModel | None = None
        self._disk: KVDisk | None = None
        self._forget_later: list[tuple[str, str | None]] = []  # forget() calls before the disk was open
        self._steps: collections.deque[tuple[float, float, int]] = collections.deque()
        self._tokens_generated = 0
        self._prompt_evaluated = 0
        self._prompt_cached = 0
        self.threads = ThreadPolicy(settings.n_threads)
        self.prompt_budget = int(settings.prompt_budget) or self.n_ctx // self.parallel  # exact once loaded

    @staticmethod
    def _guess_name(settings: EngineSettings) -> str:
        if settings.model_name:
            return settings.model_name
        if settings.model_path:
            from pathlib import Path

            return Path(settings.model_path).name.removesuffix(".gguf")
        return "gemma-3-270m-q4_k_m"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model on the decode thread and return at once."""
        with self._lock:
            if self._thread is not None or self._closing:
                return
            self._thread = threading.Thread(target=self._run, name="llmchat-decode", daemon=True)
            self._thread.start()

    async def wait_loaded(self, timeout: float | None = None) -> bool:
        """True once the model is loaded, False if loading failed (or `timeout` passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._settled.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return self.loaded

    def close(self, reason: str = _SHUTDOWN) -> None:
        """Stop the decode thread; every queued or running request ends with an error event
        saying `reason`.

        Blocks for at most about one decode step (or until a load in progress aborts).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_reason = reason
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60.0)
            if thread.is_alive():
                self.log.error("the decode thread did not stop within 60 s")
        # Without a thread (never started) nothing else will finalise queued requests.
        self._finalise_waiting()
        self.loaded = False

    # -- requests -------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> int:
        """Queue `request`; return its queue position (0: it starts at the next step).

        The queue holds `max_queue` requests beyond the free slots; its last
        `owner_queue_reserve` places (at most half) take only the owner's requests, so the
        server's own kernels and CLI are not refused when others have filled it
        (`fair_queue.queue_full`). Waiting requests start
        round-robin between users (fair_queue.py), so the position counts the requests that
        start before this one, not those that came before it.
        """
        if self._closing:
            raise EngineUnavailable(_SHUTDOWN)
        if self.load_error is not None:
            raise EngineUnavailable(f"model failed to load: {self.load_error}")
        if not self.loaded:
            raise EngineUnavailable("model is loading")
        cap = max(1, int(self.settings.max_tokens))
        job = Job(request, max_tokens=max(1, min(int(request.config.max_tokens), cap)))
        with self._lock:
            if request.message_id in self._jobs:
                raise ValueError(f"duplicate message_id {request.message_id!r}")
            free = self.parallel - self._n_admitted
            ahead = len(self._waiting)
            depth = 0 if ahead < free else ahead - free + 1  # queue places in use with this one
            refused = queue_full(self.settings, depth, ahead, request.owner)
            if refused:
                raise QueueFull(refused)
            before = self._waiting.push(job)
            self._jobs[request.message_id] = job
            self._cond.notify()
        return 0 if before < free else before - free + 1

    def pending(self) -> int:
        """Requests queued or running: a model switch waits until none is left."""
        with self._lock:
            return len(self._jobs)

    def cancel(self, message_id: str) -> bool:
        """Stop a queued or running generation; its final event says "cancelled"."""
        with self._lock:
            job = self._jobs.get(message_id)
            if job is None or job.done or job.cancelled:
                return False
            job.cancelled = True
            if not self._waiting.remove(job):  # already admitted: the decode thread ends it next step
                self._cond.notify()
                return True
            del self._jobs[message_id]
            event = job.final_event("", "cancelled")
        self._deliver([event])
        return True

    def stats(self) -> dict[str, Any]:
        """Figures for docs/protocol.md (`model`), plus `prompt_tokens_cached`."""
        with self._lock:
            now = time.perf_counter()
            while self._steps and self._steps[0][1] < now - _TPS_WINDOW:
                self._steps.popleft()
            tps = per_sequence = 0.0
            if self._steps:
                span = max(now - self._steps[0][0], 1e-3)
                tps = sum(n for _, _, n in self._steps) / span
                # A step gives one token to every sequence generating in it, so steps per
                # second is the speed each stream sees (= tps / the sequences sharing it).
                per_sequence = len(self._steps) / span
            return {
                "name": self.model_name,
                "backend": "llama",
                "loaded": self.loaded,
                "load_error": self.load_error,
                "n_ctx": self.n_ctx,
                "parallel": self.parallel,
                "prompt_budget": self.prompt_budget,
                "active_sequences": self._n_admitted,
                # requests that will not start at the next step (queue position > 0)
                "queue_depth": max(0, len(self._waiting) - (self.parallel - self._n_admitted)),
                "tokens_generated": self._tokens_generated,
                "tokens_per_second": round(tps, 1),
                "tokens_per_second_per_sequence": round(per_sequence, 1),
                "prompt_tokens_evaluated": self._prompt_evaluated,
                "prompt_tokens_cached": self._prompt_cached,
                "n_threads": self.threads.threads,
                "threads": "adaptive" if self.threads.adaptive else "fixed",
                "kv_disk": self._disk.stats() if self._disk is not None else dict(_NO_DISK),
            }

    # -- decode thread ----------------------------------------------------------------------

    def _deliver(self, events: list[TokenEvent]) -> None:
        if not events:
            return
        try:
            self._loop.call_soon_threadsafe(self._sink, events)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _load(self) -> bool:
        from .chat_format import make_formatter
        from .prompt import PromptBuilder
        from .scheduler import Scheduler

        try:
            model = load_model(self.settings, should_abort=lambda: self._closing, on_progress=self._loading)
        except ModelLoadError as exc:
            self.load_error = str(exc)
        except Exception as exc:  # never let a bad model take the server down
            self.load_error = f"{type(exc).__name__}: {exc}"
        else:
            self._model = model
            formatter = make_formatter(
                model.chat_template, model.bos_text, model.eos_text, model.add_bos, self.log, self.settings.few_shot
            )
            builder = PromptBuilder(
                formatter,
                tokenize=lambda text: model.tokenize(text, False),
                detokenize=model.detokenize,
                bos_id=model.bos_id,
                specials=model.specials,
            )
            disk = self._open_disk(model)
            with self._lock:
                self._disk = disk
                later, self._forget_later = self._forget_later, []
            for room, message_id in later if disk is not None else ():
                disk.forget(room, message_id)
            self._sched = Scheduler(model, builder, self.log, self.threads, self.settings.prompt_budget, self._disk)
            self.prompt_budget = self._sched.prompt_budget
            self.formatter_kind = formatter.kind
            self.model_name = model.name
            self.n_ctx = model.n_ctx
            self.loaded = True
            self.log.info(
                "model %s loaded: n_ctx=%d (per sequence %d, per prompt %d), parallel=%d, n_threads=%s, format=%s",
                model.name, model.n_ctx, model.n_ctx_seq, self._sched.prompt_budget, model.n_seq_max,
                self.settings.n_threads or f"adaptive (1-{self.threads.cores})", formatter.kind,
            )
        if self.load_error is not None:
            self.log.error("model failed to load: %s", self.load_error)
        self._settled.set()
        return self.loaded

    def _loading(self, progress: float) -> None:
        self.load_progress = progress

    def _open_disk(self, model: LoadedModel) -> KVDisk | None:
        """The saved KV states of this model (kv_disk.py), or None when saving is off or
        the directory cannot be used (said once in the log)."""
        s = self.settings
        if not s.kv_cache_dir or s.kv_cache_bytes <= 0:
            return None
        try:
            return KVDisk(s.kv_cache_dir, s.kv_cache_bytes, model_identity(model.path), self.log)
        except OSError as exc:
            self.log.warning("KV states are not saved: cannot use kv_cache_dir %s: %s", s.kv_cache_dir, exc)
            return None

    def forget(self, room: str, message_id: str | None = None) -> None:
        """Delete the saved KV states of `room` (those holding `message_id`, if given): the
        room was cleared, or the message deleted. Before the model is loaded, once it is."""
        with self._lock:
            disk = self._disk
            if disk is None:
                self._forget_later.append((room, message_id))
                return
        disk.forget(room, message_id)

    def _run(self) -> None:
        try:
            if self._load():
                self._loop_steps()
        finally:
            self._shutdown()

    def _loop_steps(self) -> None:
        sched = self._sched
        cond = self._cond
        while True:
            with cond:
                while not self._closing and not self._waiting and not sched.has_work():
                    if not cond.wait(self.threads.idle_wait):
                        self.threads.look_while_idle()  # keeps the reading of the machine fresh (threads.py)
                if self._closing:
                    return
                admit: list[Job] = []
                free = sched.free_slots()
                while self._waiting and len(admit) < free:
                    admit.append(self._waiting.pop())
                self._n_admitted += len(admit)
            t0 = time.perf_counter()
            events: list[TokenEvent] = []
            for job in admit:
                try:
                    sched.admit(job)
                except Exception as exc:  # a bug must not leave a client waiting forever
                    self.log.exception("admitting %s failed", job.message_id)
                    sched.fail(job, f"internal error: {exc}")
            try:
                events = sched.step()
            except Exception as exc:
                self.log.exception("decode step failed")
                events = sched.finish_all("error", f"internal error: {exc}")
                sched.slots.reset_all()
            t1 = time.perf_counter()
            finished = sched.finished
            sched.finished = []
            # Bookkeeping before delivery: whoever sees a final event also sees its slot free.
            with self._lock:
                for job in finished:
                    self._jobs.pop(job.message_id, None)
                self._n_admitted -= len(finished)
                n_new = sched.tokens_generated - self._tokens_generated
                if n_new:
                    self._steps.append((t0, t1, n_new))
                self._tokens_generated = sched.tokens_generated
                self._prompt_evaluated = sched.prompt_tokens_evaluated
                self._prompt_cached = sched.prompt_tokens_cached
            self._deliver(events)

    def _finalise_waiting(self) -> None:
        with self._lock:
            jobs = self._waiting.drain()
            for job in jobs:
                self._jobs.pop(job.message_id, None)
            events = [job.final_event("", "error", self._close_reason) for job in jobs if not job.done]
        self._deliver(events)

    def _shutdown(self) -> None:
        """On the decode thread: end everything, then free the context and the model."""
        events: list[TokenEvent] = []
        if self._sched is not None:
            try:
                events = self._sched.finish_all("error", self._close_reason)
            except Exception:
                self.log.exception("while ending running requests")
            with self._lock:
                self._n_admitted = 0
                for job in self._sched.finished:
                    self._jobs.pop(job.message_id, None)
                self._sched.finished = []
        self._deliver(events)
        self._finalise_waiting()
        if self._model is not None:
            for job in self._sched.jobs if self._sched is not None else []:
                if job.sampler is not None:
                    job.sampler.close()
            self._sched = None
            self._model.close()
            self._model = None
        if self._disk is not None:
            self._disk.close()  # the states copied so far are written before the thread ends
        self.loaded = False
        self._settled.set()
