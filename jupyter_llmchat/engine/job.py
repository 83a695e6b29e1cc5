"""The life of one request inside the engine, and the figures of its final event."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .types import FinishReason, GenerationRequest, TokenEvent

if TYPE_CHECKING:  # pragma: no cover
    from .detokenize import TextStream
    from .kvcache import Slot
    from .sampling import SequenceSampler


@dataclass(eq=False)
class Job:
    """A request from `submit` until its final event.

    Written by the decode thread only, except `cancelled`, which the loop thread sets (a
    plain attribute store; the decode thread looks at it once per step).
    """

    request: GenerationRequest
    max_tokens: int
    t_submit: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    done: bool = False
    # -- set at admission ---------------------------------------------------------------
    slot: Slot | None = None
    prompt: list[int] = field(default_factory=list)
    n_cached: int = 0  # prompt tokens found in the KV cache
    n_fed: int = 0  # prompt tokens in the KV cache so far (cached + evaluated)
    budget: int = 0  # completion tokens allowed after trimming
    snap_at: int = 0  # prompt tokens after which the KV state is saved to disk (0: not saved)
    truncated: bool = False  # the prompt was cut to fit its budget (said in the final event)
    sampler: SequenceSampler | None = None
    stream: TextStream | None = None
    t_admit: float | None = None
    # -- generation ---------------------------------------------------------------------
    pending: int | None = None  # sampled token to be fed at the next step
    n_gen: int = 0  # answer tokens (end-of-generation token not counted)
    n_sampled: int = 0  # every token sampled, for the decode speed
    index: int = 0  # next event index
    t_first: float | None = None
    t_last: float | None = None

    @property
    def message_id(self) -> str:
        return self.request.message_id

    @property
    def prefilling(self) -> bool:
        return self.slot is not None and self.n_fed < len(self.prompt)

    def event(self, text: str) -> TokenEvent:
        ev = TokenEvent(self.message_id, self.index, text)
        self.index += 1
        return ev

    def final_event(self, text: str, reason: FinishReason, error: str | None = None) -> TokenEvent:
        """The last event, with usage and timings (docs/protocol.md)."""
        now = time.perf_counter()
        t_admit = self.t_admit if self.t_admit is not None else now
        tps = 0.0
        if self.n_sampled >= 2 and self.t_first is not None and self.t_last is not None and self.t_last > self.t_first:
            tps = (self.n_sampled - 1) / (self.t_last - self.t_first)
        ev = TokenEvent(
            self.message_id,
            self.index,
            text,
            is_final=True,
            finish_reason=reason,
            error=error,
            truncated=self.truncated,
            usage={"prompt_tokens": len(self.prompt), "completion_tokens": self.n_gen},
            timings={
                "queue_ms": round((t_admit - self.t_submit) * 1000.0, 1),
                "ttft_ms": round((self.t_first - self.t_submit) * 1000.0, 1) if self.t_first is not None else 0.0,
                "tokens_per_second": round(tps, 1),
            },
        )
        self.index += 1
        self.done = True
        return ev
