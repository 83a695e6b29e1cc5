"""Choosing how to split one step's logits rows over `llama_decode` calls, by measurement.

The obvious plan - every generating sequence's token in one `llama_decode`, one logits row
each - is not always the fastest. The output projection of a 262k-token vocabulary is the
biggest matrix of a small model, and with this llama.cpp build (x86, llamafile sgemm) the
multi-row product is much slower per row than the single-row one: measured with 1 thread,
2 sequences took 45 ms per step in one call but 24 ms as two one-token calls; at 8
sequences the single call wins again (84 vs 100 ms); with 2 threads the crossover moves.
It depends on the CPU, the build, the thread count and the load, so the engine measures:
for each number K of generating sequences it keeps a moving average of the time per
generated token of both plans ("joint": one call; "split": one call per sequence), tries
each a few times, then uses the faster one and re-checks the other now and then.

The plan changes the numbers, not just the speed: llama.cpp rounds a one-row product
differently from a several-row one, so a greedy answer can flip a near-tie between the
plans, and the measured choice makes that depend on the machine's load. `pinned` fixes the
plan for whoever must compare runs (tests, benches; docs/performance.md, "What a greedy
answer depends on").
"""

from __future__ import annotations

JOINT = "joint"
SPLIT = "split"

_WARMUP = 3  # samples of each plan before trusting the averages
_EXPLORE_EVERY = 64  # steps between re-checks of the slower plan
_ALPHA = 0.2  # weight of a new sample in the moving average


class OutputGrouping:
    """Per K, which plan is currently faster (seconds per generated token, EMA)."""

    def __init__(self, pinned: str | None = None):
        if pinned not in (None, JOINT, SPLIT):
            raise ValueError(f"unknown output grouping {pinned!r} (expected {JOINT!r} or {SPLIT!r})")
        self.pinned = pinned
        self._ema: dict[tuple[int, str], float] = {}
        self._n: dict[tuple[int, str], int] = {}
        self._steps: dict[int, int] = {}

    def choose(self, k: int) -> str:
        """The plan for a step with `k` generating sequences."""
        if k <= 1:
            return JOINT
        if self.pinned is not None:
            return self.pinned
        nj = self._n.get((k, JOINT), 0)
        ns = self._n.get((k, SPLIT), 0)
        if nj < _WARMUP or ns < _WARMUP:
            return JOINT if nj <= ns else SPLIT
        best = JOINT if self._ema[(k, JOINT)] <= self._ema[(k, SPLIT)] else SPLIT
        step = self._steps.get(k, 0) + 1
        self._steps[k] = step
        if step % _EXPLORE_EVERY == 0:
            return SPLIT if best == JOINT else JOINT
        return best

    def record(self, k: int, plan: str, seconds_per_token: float) -> None:
        """A clean measurement (no prompt tokens in the step, no KV trouble)."""
        key = (k, plan)
        n = self._n.get(key, 0)
        if n < _WARMUP:  # the best of the first samples: the first call of a shape is slow
            self._ema[key] = min(self._ema.get(key, seconds_per_token), seconds_per_token)
        else:
            self._ema[key] += _ALPHA * (seconds_per_token - self._ema[key])
        self._n[key] = n + 1

    def snapshot(self) -> dict[str, float]:
        """Current averages in ms/token, for logs and benches."""
        return {f"{k}:{plan}": round(v * 1000.0, 2) for (k, plan), v in sorted(self._ema.items())}
