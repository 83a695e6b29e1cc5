"""Answers from an OpenAI-compatible model server (`model_backend = "openai"`).

The second implementation of the `ModelBackend` seam: this server loads no model; each
answer is one streamed `/v1/chat/completions` request to a model server (llama.cpp's
`llama-server`, vLLM, llama-cpp-python's server, …) made with the maintained `openai`
client, whose `AsyncStream` parses the server-sent events. Everything runs on the event
loop: a task per answer, at most `parallel` at once, the rest queued with the positions
the engine promises. `Cancel` cancels the answer's task, which closes its HTTP stream.

Availability: `start` lists the server's models (`/v1/models`), which also names the
model to use. A request that cannot reach the server (or is refused its key, or gets a
5xx) ends its answer with the reason and marks the backend down: from then on `submit`
raises `EngineUnavailable` (Error 503) with that reason, and `/v1/models` is asked again
every `openai_retry_interval` seconds until it answers. While the server is up nothing
polls it (llama-cpp-python's server would make such a probe wait behind running answers).
The API key is sent as the `Authorization` header only: it is never in stats, logs or
any message (`openai_requests.Redactor`).
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ..engine.types import EngineSettings, EngineUnavailable, FinishReason, GenerationRequest, QueueFull, TokenEvent, TokenSink
from .openai_requests import (
    OpenAISettings,
    Redactor,
    StreamedAnswer,
    Unusable,
    chat_messages,
    describe,
    openai_module,
    shown_url,
    takes_server_down,
)

if TYPE_CHECKING:  # pragma: no cover
    import logging

    import openai

_SHUTDOWN = "server shutting down"
_TPS_WINDOW = 5.0  # seconds of history behind stats()["tokens_per_second"], as the engine's
_PROBE_TIMEOUT = 10.0  # seconds a `/v1/models` probe may take


class OpenAIBackend:
    """Streams answers from an OpenAI-compatible server; up to `parallel` streams at once."""

    def __init__(
        self,
        settings: OpenAISettings,
        engine: EngineSettings,
        sink: TokenSink,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._sink = sink
        self._loop = loop
        self.log = log
        self.base_url = shown_url(settings.openai_base_url)
        self._key = settings.openai_api_key or os.environ.get("OPENAI_API_KEY", "")
        self._redact = Redactor(self._key)
        self.loaded = False
        self.load_error: str | None = None
        self.model_name = settings.openai_model  # else the first one /v1/models lists, once it answers
        self.n_ctx = 0  # the model server's context, when /v1/models says (vLLM's max_model_len)
        self.parallel = max(1, int(engine.parallel))
        self._client: openai.AsyncOpenAI | None = None
        self._waiting: collections.deque[StreamedAnswer] = collections.deque()
        self._running: dict[str, StreamedAnswer] = {}
        self._answers: dict[str, StreamedAnswer] = {}  # every queued or running answer
        self._watcher: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()  # the first probe has answered, one way or the other
        self._closing = False
        self._closed = False
        self._pieces: collections.deque[float] = collections.deque()  # times of recent pieces
        self._tokens_generated = 0
        self._prompt_evaluated = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Make the client and ask the model server for its models, without waiting."""
        openai = openai_module()
        self._client = openai.AsyncOpenAI(
            base_url=self.settings.openai_base_url,
            api_key=self._key or "unused",  # a local server needs none, but the client insists
            timeout=openai.Timeout(self.settings.openai_timeout, connect=min(10.0, self.settings.openai_timeout)),
            max_retries=0,  # a failed answer is not silently asked twice; _watch retries the server
        )
        self._loop.call_soon_threadsafe(self._watch_soon)

    async def wait_loaded(self, timeout: float | None = None) -> bool:
        """True once the model server answered, False if it did not (or `timeout` passed)."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.loaded

    def close(self) -> None:
        """End every answer with an error event, close the streams and the client.

        Called from an executor thread at shutdown: waits (at most 10 s) for the answers'
        final events to be delivered on the loop. On the loop thread it returns at once.
        """
        if self._closed:
            return
        self._closed = True
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        done = threading.Event()

        def shut() -> None:
            self._shut()
            self._loop.create_task(self._close_client(done))

        if on_loop:
            shut()
            return
        try:
            self._loop.call_soon_threadsafe(shut)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return
        if not done.wait(timeout=10.0):
            self.log.error("llmchat: the model server's streams did not close within 10 s")

    def _shut(self) -> None:
        self._closing = True
        self.loaded = False
        self._settled.set()
        if self._watcher is not None:
            self._watcher.cancel()
        self._fail_waiting(_SHUTDOWN)
        for answer in list(self._running.values()):
            answer.stopped = ("error", _SHUTDOWN)
            if answer.task is not None:
                answer.task.cancel()

    async def _close_client(self, done: threading.Event) -> None:
        tasks = [answer.task for answer in self._running.values() if answer.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        done.set()

    # -- availability -----------------------------------------------------------------------

    def _watch_soon(self) -> None:
        if self._closing or (self._watcher is not None and not self._watcher.done()):
            return
        self._watcher = self._loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Ask `/v1/models` until it answers: at once, then every `openai_retry_interval`."""
        while not self._closing:
            try:
                await self._probe()
            except Exception as error:  # any failure is a reason to tell users, then look again
                self._down(self._describe(error))
            else:
                return
            await asyncio.sleep(self.settings.openai_retry_interval)

    async def _probe(self) -> None:
        """Which model to ask, from the server's list; then the backend is up."""
        assert self._client is not None
        page = await self._client.with_options(timeout=_PROBE_TIMEOUT).models.list()
        listed = list(page.data)
        ids = [entry.id for entry in listed]
        model = self.settings.openai_model or (ids[0] if ids else "")
        if not model:
            raise Unusable(f"the model server at {self.base_url} lists no model; set LLMChat.openai_model")
        if self.settings.openai_model and ids and model not in ids:
            self.log.warning("llmchat: the model server at %s does not list %r (it lists %s)", self.base_url, model, ids)
        entry = next((e for e in listed if e.id == model), None)
        self.n_ctx = int(getattr(entry, "max_model_len", 0) or 0)
        self.model_name = model
        was_down = self.load_error is not None
        self.loaded, self.load_error = True, None
        self._settled.set()
        self.log.info("llmchat: %s model server at %s, model %s", "back: the" if was_down else "the", self.base_url, model)
        self._pump()

    def _down(self, reason: str) -> None:
        """The model server cannot answer: say why, fail what waits, look again later."""
        if self._closing:
            return
        if reason != self.load_error:
            self.log.warning("llmchat: model server unavailable: %s", reason)
        self.loaded, self.load_error = False, reason
        self._settled.set()
        self._fail_waiting(reason)
        self._watch_soon()

    def _describe(self, error: BaseException, mid_answer: bool = False) -> str:
        return self._redact(describe(error, self.base_url, self.settings.openai_timeout, mid_answer))

    # -- requests ---------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> int:
        """Queue `request`; its queue position (0: its stream starts now)."""
        if self._closing:
            raise EngineUnavailable(_SHUTDOWN)
        if not self.loaded:
            raise EngineUnavailable(self.load_error or "connecting to the model server")
        if request.message_id in self._answers:
            raise ValueError(f"duplicate message_id {request.message_id!r}")
        free = self.parallel - len(self._running)
        ahead = len(self._waiting)
        position = 0 if ahead < free else ahead - free + 1
        if position > self.engine.max_queue:
            raise QueueFull(f"{ahead} requests already waiting (max_queue={self.engine.max_queue})")
        cap = max(1, int(self.engine.max_tokens))
        answer = StreamedAnswer(request, max_tokens=max(1, min(int(request.config.max_tokens), cap)))
        self._answers[request.message_id] = answer
        self._waiting.append(answer)
        self._pump()  # tasks start on the next loop turn: no event reaches the sink from here
        return position

    def forget(self, room: str, message_id: str | None = None) -> None:
        """Nothing of a room is kept here: the model server has its own cache."""

    def cancel(self, message_id: str) -> bool:
        """Stop a queued or streaming answer; its final event says "cancelled"."""
        answer = self._answers.get(message_id)
        if answer is None or answer.stopped is not None:
            return False
        answer.stopped = ("cancelled", None)
        if answer.task is not None:
            answer.task.cancel()  # its stream is closed and its final event sent by _stream
        else:
            self._waiting.remove(answer)
            self._loop.call_soon(self._finish, answer, "cancelled", None)
        return True

    def _pump(self) -> None:
        """Start waiting answers while fewer than `parallel` stream."""
        while self._waiting and len(self._running) < self.parallel and self.loaded and not self._closing:
            answer = self._waiting.popleft()
            self._running[answer.message_id] = answer
            answer.task = self._loop.create_task(self._stream(answer))

    def _fail_waiting(self, reason: str) -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        for answer in waiting:
            answer.stopped = answer.stopped or ("error", reason)
            self._loop.call_soon(self._finish, answer, *answer.stopped)

    async def _stream(self, answer: StreamedAnswer) -> None:
        """One answer: the request, every piece to the sink as it comes, the final event."""
        reason: FinishReason = "error"
        error: str | None = None
        answer.t_start = time.perf_counter()
        try:
            assert self._client is not None
            stream = await self._client.chat.completions.create(**self._body(answer))
            async with stream:
                async for chunk in stream:
                    self._on_chunk(answer, chunk)
            if answer.finish_reason is None:
                error = f"the model server at {self.base_url} ended the answer without a finish reason"
            else:
                reason = answer.finish_reason
        except asyncio.CancelledError:  # cancel() or close(): the stream is closed by now
            reason, error = answer.stopped or ("error", _SHUTDOWN)
        except Exception as failure:
            if not isinstance(failure, openai_module().OpenAIError):  # ours: a bug to see in the log
                self.log.exception("llmchat: answer %s failed", answer.message_id)
            error = self._describe(failure, mid_answer=answer.index > 0)
            if takes_server_down(failure):
                self._down(error)
            else:
                self.log.warning("llmchat: an answer failed: %s", error)
        self._finish(answer, reason, error)
        self._pump()

    def _body(self, answer: StreamedAnswer) -> dict[str, Any]:
        """The chat completion request: the messages and the sampling of the request."""
        config = answer.request.config
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(answer.request.turns),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": answer.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            # Not in OpenAI's API but understood by llama.cpp's and llama-cpp-python's
            # servers (repeat_penalty) and vLLM (repetition_penalty); others ignore them.
            "extra_body": {
                "top_k": config.top_k,
                "min_p": config.min_p,
                "repeat_penalty": config.repeat_penalty,
                "repetition_penalty": config.repeat_penalty,
            },
        }
        if config.seed is not None:
            body["seed"] = config.seed
        if config.stop:
            body["stop"] = list(config.stop)
        return body

    def _on_chunk(self, answer: StreamedAnswer, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            answer.usage = {"prompt_tokens": int(usage.prompt_tokens or 0), "completion_tokens": int(usage.completion_tokens or 0)}
        for choice in chunk.choices or ():
            text = choice.delta.content if choice.delta is not None else None
            if text:
                now = time.perf_counter()
                if answer.t_first is None:
                    answer.t_first = now
                answer.t_last = now
                answer.n_tokens += 1
                self._tokens_generated += 1
                self._pieces.append(now)
                self._forget_pieces(now)
                self._sink([TokenEvent(answer.message_id, answer.index, text)])
                answer.index += 1
            if choice.finish_reason:
                answer.finish_reason = "length" if choice.finish_reason == "length" else "stop"

    def _finish(self, answer: StreamedAnswer, reason: FinishReason, error: str | None) -> None:
        self._running.pop(answer.message_id, None)
        self._answers.pop(answer.message_id, None)
        if answer.usage:
            self._prompt_evaluated += answer.usage.get("prompt_tokens", 0)
        self._sink([answer.final_event(reason, error)])

    # -- figures ------------------------------------------------------------------------------

    def _forget_pieces(self, now: float) -> None:
        while self._pieces and self._pieces[0] < now - _TPS_WINDOW:
            self._pieces.popleft()

    def stats(self) -> dict[str, Any]:
        """`Stats.model` for docs/protocol.md; the figures are this server's streams only."""
        now = time.perf_counter()
        self._forget_pieces(now)
        tps = 0.0
        if self._pieces:
            tps = len(self._pieces) / max(now - self._pieces[0], 1e-3)
        active = len(self._running)
        return {
            "name": self.model_name,
            "backend": "openai",
            "base_url": self.base_url,
            "loaded": self.loaded,
            "load_error": self.load_error,
            "n_ctx": self.n_ctx,
            "parallel": self.parallel,
            "active_sequences": active,
            "queue_depth": len(self._waiting),
            "tokens_generated": self._tokens_generated,
            "tokens_per_second": round(tps, 1),
            "tokens_per_second_per_sequence": round(tps / max(1, active), 1),
            "prompt_tokens_evaluated": self._prompt_evaluated,
        }
