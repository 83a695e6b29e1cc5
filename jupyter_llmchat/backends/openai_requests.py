"""What one OpenAI-compatible request needs, apart from the backend that schedules them.

The settings of `model_backend = "openai"`, the `messages` of a request, one streamed
answer's bookkeeping (`StreamedAnswer`), and the sentences that say why a model server did
not answer, without the API key (`Redactor`). `openai_backend.OpenAIBackend` uses them.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass, field
from types import ModuleType

from ..engine.chat_format import merge_turns, split_system
from ..engine.types import ChatTurn, FinishReason, GenerationRequest, TokenEvent

DETAIL_CHARS = 300  # most characters of a model server's own error message passed on


def openai_module() -> ModuleType:
    """The `openai` package, imported on first use: a server on the llama backend never pays for it."""
    import openai

    return openai


@dataclass(frozen=True)
class OpenAISettings:
    """What the OpenAI backend needs from the `LLMChat` traits of the same names."""

    openai_base_url: str = ""  # e.g. http://127.0.0.1:8080/v1
    openai_model: str = ""  # "" means the first model the server lists at /v1/models
    openai_api_key: str = ""  # "" means the OPENAI_API_KEY environment variable
    openai_timeout: float = 60.0  # seconds to wait for the model server's next byte
    openai_retry_interval: float = 5.0  # seconds between /v1/models probes while it is down

    def check(self) -> None:
        """Raise `ValueError` naming the setting that makes this backend unusable."""
        url = urllib.parse.urlsplit(self.openai_base_url)
        if not self.openai_base_url:
            raise ValueError('openai_base_url must be set when model_backend is "openai" (e.g. http://127.0.0.1:8080/v1)')
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"openai_base_url must be an http(s) URL, not {shown_url(self.openai_base_url)!r}")


def shown_url(url: str) -> str:
    """`url` without any user:password part, for stats, logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def chat_messages(turns: list[ChatTurn]) -> list[dict[str, str]]:
    """The OpenAI `messages` of a request: the system prompt first, then alternating turns.

    The model server applies the model's own chat template to these role-tagged messages.
    A system turn after the first is shown as a user turn (templates accept one system
    message, at the top), and consecutive turns of one role are merged, as the engine does.
    """
    system, rest = split_system(merge_turns(turns))
    lead = [ChatTurn("system", system)] if system else []
    body = merge_turns([ChatTurn("user" if turn.role == "system" else turn.role, turn.content) for turn in rest])
    return [{"role": turn.role, "content": turn.content} for turn in lead + body]


class Redactor:
    """Removes the API key from any text that may leave this module."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text


@dataclass(eq=False)
class StreamedAnswer:
    """One request from `submit` until its final event."""

    request: GenerationRequest
    max_tokens: int
    t_submit: float = field(default_factory=time.perf_counter)
    task: asyncio.Task[None] | None = None
    stopped: tuple[FinishReason, str | None] | None = None  # set by cancel() or close()
    finish_reason: FinishReason | None = None  # what the model server said
    index: int = 0  # next event index
    n_tokens: int = 0  # content pieces streamed
    usage: dict[str, int] | None = None  # the server's own figures, when it sends them
    t_start: float | None = None
    t_first: float | None = None
    t_last: float | None = None

    @property
    def message_id(self) -> str:
        return self.request.message_id

    def final_event(self, reason: FinishReason, error: str | None) -> TokenEvent:
        """The last event, with usage and timings in the engine's terms (job.Job.final_event)."""
        now = time.perf_counter()
        t_start = self.t_start if self.t_start is not None else now
        tps = 0.0
        if self.n_tokens >= 2 and self.t_first is not None and self.t_last is not None and self.t_last > self.t_first:
            tps = (self.n_tokens - 1) / (self.t_last - self.t_first)
        usage = dict(self.usage) if self.usage else {"completion_tokens": self.n_tokens}
        event = TokenEvent(
            self.message_id,
            self.index,
            "",
            is_final=True,
            finish_reason=reason,
            error=error,
            usage=usage,
            timings={
                "queue_ms": round((t_start - self.t_submit) * 1000.0, 1),
                "ttft_ms": round((self.t_first - self.t_submit) * 1000.0, 1) if self.t_first is not None else 0.0,
                "tokens_per_second": round(tps, 1),
            },
        )
        self.index += 1
        return event


class Unusable(RuntimeError):
    """The model server answered, but not with anything this backend can use."""


def describe(error: BaseException, base_url: str, timeout: float, mid_answer: bool = False) -> str:
    """A sentence for the user about why the model server did not answer (redact the key after)."""
    openai = openai_module()
    where = f"the model server at {base_url}"
    if isinstance(error, Unusable):
        return str(error)
    if isinstance(error, openai.APITimeoutError):
        return f"{where} did not answer within {timeout:g} s"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        lost = f"lost {where} in the middle of the answer" if mid_answer else f"cannot reach {where}"
        return lost + (f": {cause}" if cause is not None and str(cause) else "")
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return f"{where} refused the API key (HTTP {error.status_code}); set LLMChat.openai_api_key or OPENAI_API_KEY"
    if isinstance(error, openai.APIStatusError):
        detail = error.message[:DETAIL_CHARS] if error.message else ""
        return f"{where} answered HTTP {error.status_code}" + (f": {detail}" if detail else "")
    return f"{where}: {type(error).__name__}: {error}"


def takes_server_down(error: BaseException) -> bool:
    """Errors after which no other request would fare better (not one bad request)."""
    openai = openai_module()
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (401, 403) or error.status_code >= 500
    return isinstance(error, openai.APIConnectionError)
