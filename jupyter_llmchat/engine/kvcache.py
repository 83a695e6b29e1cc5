"""Which llama.cpp sequence holds what, and reusing KV prefixes between turns.

There are `parallel` sequence ids ("slots"). A slot is running a job, or idle. An idle slot
may still hold the KV cells of a finished conversation, labelled with its `cache_key`
(a room): the room's next turn is given that slot, only the tokens after the common prefix
are evaluated, and the divergent tail is removed with `llama_memory_seq_rm`. With a
unified KV cache any slot's prefix can also be copied (`llama_memory_seq_cp` shares the
cells, no copy of data), so the system prompt evaluated once serves every room. Idle
slots are evicted least-recently-used when a slot or KV cells are needed.

Gemma 3's sliding-window layers: a prefix is only reusable if the SWA cache still holds
the last `n_swa` positions before the reuse point (`llama_memory_seq_pos_min` guard, as
llama.cpp's server does). `swa_full` does not make that the norm for long conversations:
once a sequence is more than `n_swa` positions past a cell, llama.cpp may give that SWA
cell to another sequence. A donor is therefore only taken if its SWA cells reach back far
enough, and a copied prefix whose SWA part came out empty (`pos_min == -1`) is not used
(measured: a private question that borrowed the system prompt from a ~850-token room
conversation was decoded with no SWA context and echoed the system prompt, 10 of 32).

With `kv_cache_dir` set, a prompt whose longest saved prefix on disk is longer than what
any slot holds is restored from disk into its slot (kv_disk.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .llama_api import llama as _llama

if TYPE_CHECKING:  # pragma: no cover
    from .kv_disk import KVDisk
    from .model import LoadedModel

# Restoring from disk reads ~9 KB a token and costs a few ms: only worth it when the saved
# prefix is this many tokens longer than what the memory cache already holds.
DISK_MIN_GAIN = 64


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int32)
    y = np.asarray(b[:n], dtype=np.int32)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


@dataclass(eq=False)
class Slot:
    """One llama.cpp sequence id and the tokens whose KV it holds (positions 0..n-1)."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    key: str | None = None
    last_used: float = 0.0
    # What runs in the slot (the scheduler's job), None when idle. Opaque here: the table only
    # asks whether a slot is taken, so it needs no knowledge of jobs.
    holder: object | None = None


class SlotTable:
    """Assigns slots to jobs and keeps `Slot.tokens` equal to what the KV cache holds."""

    def __init__(self, model: LoadedModel, disk: KVDisk | None = None):
        self.model = model
        self.slots = [Slot(i) for i in range(model.n_seq_max)]
        self.reuse_prefix = True  # off: every prompt is evaluated in full (tests compare)
        self.disk = disk
        self._mem = _llama().llama_get_memory(model.ctx)

    # -- queries ------------------------------------------------------------------------

    def free_count(self) -> int:
        return sum(1 for s in self.slots if s.holder is None)

    def cells_in_use(self) -> int:
        """Upper bound of the KV cells in use (shared prefix cells are counted per slot)."""
        return sum(len(s.tokens) for s in self.slots)

    # -- assignment ---------------------------------------------------------------------

    def acquire(self, holder: object, prompt: list[int], key: str | None) -> tuple[Slot, int]:
        """Give `holder` a slot holding the longest available prefix of `prompt`.

        Returns the slot and the number of prompt tokens already in its KV cells.
        """
        slot = self._choose(key)
        slot.holder = holder
        slot.key = key
        slot.last_used = time.monotonic()
        if not self.reuse_prefix:
            self.truncate(slot, 0)
            return slot, 0
        limit = len(prompt) - 1  # the last prompt token is always evaluated: we need its logits
        own = min(common_prefix(slot.tokens, prompt), limit)
        if own > 0 and not self._prefix_usable(slot, own):
            own = 0
        donor, best = None, own
        if self.model.kv_unified:
            for other in self.slots:
                if other is slot or not other.tokens:
                    continue
                c = min(common_prefix(other.tokens, prompt), limit)
                if c > best and self._prefix_usable(other, c):
                    donor, best = other, c
        llama = _llama()
        if donor is not None:
            llama.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            llama.llama_memory_seq_cp(self._mem, donor.seq, slot.seq, 0, best)
            slot.tokens = donor.tokens[:best]
        else:
            self.truncate(slot, own)
            best = len(slot.tokens)
        if best > 0 and not self._prefix_usable(slot, best):
            self.truncate(slot, 0)
            best = 0
        if self.disk is not None and limit - best > DISK_MIN_GAIN:
            best = self._restore(slot, prompt, limit, best)
        return slot, best

    def _restore(self, slot: Slot, prompt: list[int], limit: int, best: int) -> int:
        """The longest saved prefix of `prompt` from disk into `slot`, if it beats `best`;
        the tokens the slot now holds. A failed restore leaves the slot empty: evaluated."""
        assert self.disk is not None
        if not self.disk.could_beat(best + DISK_MIN_GAIN, limit):
            self.disk.misses += 1
            return best
        # Room for the restored cells: idle caches go first, as they would for evaluation.
        while self.cells_in_use() - len(slot.tokens) + limit > self.model.n_ctx and self.evict_one():
            pass
        n = self.disk.restore(self.model.ctx, slot.seq, prompt, limit, best + DISK_MIN_GAIN)
        if n == 0:
            return best
        if n < 0 or not self._prefix_usable(slot, n):
            _llama().llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            slot.tokens = []
            return 0
        slot.tokens = list(prompt[:n])
        return n

    def _choose(self, key: str | None) -> Slot:
        idle = [s for s in self.slots if s.holder is None]
        if not idle:
            raise RuntimeError("no free slot")  # the engine admits only when one is free
        if key is not None:
            mine = [s for s in idle if s.key == key and s.tokens]
            if mine:
                return max(mine, key=lambda s: s.last_used)
        empty = [s for s in idle if not s.tokens]
        if empty:
            return empty[0]
        return min(idle, key=lambda s: s.last_used)

    def _prefix_usable(self, slot: Slot, n_past: int) -> bool:
        """False when sliding-window layers lost positions the next token must attend to.

        `pos_min == -1` means the SWA cache holds nothing of the sequence: not usable.
        """
        n_swa = self.model.n_swa
        if n_swa <= 0:
            return True
        pos_min = _llama().llama_memory_seq_pos_min(self._mem, slot.seq)
        return 0 <= pos_min <= max(0, n_past - n_swa)

    # -- KV edits -----------------------------------------------------------------------

    def truncate(self, slot: Slot, n: int) -> None:
        """Keep only the first `n` tokens of `slot` in the KV cache."""
        if n >= len(slot.tokens):
            return
        llama = _llama()
        if n <= 0 or not llama.llama_memory_seq_rm(self._mem, slot.seq, n, -1):
            llama.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            n = 0
        del slot.tokens[n:]

    def release(self, slot: Slot, keep: bool) -> None:
        """The job is over: keep its KV as the room's cache, or free the cells now."""
        slot.holder = None
        slot.last_used = time.monotonic()
        if not keep:
            self.truncate(slot, 0)
            slot.key = None

    def evict_one(self) -> bool:
        """Free the least recently used idle cache; False when there is none."""
        idle = [s for s in self.slots if s.holder is None and s.tokens]
        if not idle:
            return False
        victim = min(idle, key=lambda s: s.last_used)
        self.truncate(victim, 0)
        victim.key = None
        return True

    def reset_all(self) -> None:
        """After a fatal decode error: forget every cached prefix."""
        _llama().llama_memory_clear(self._mem, True)
        for s in self.slots:
            s.tokens = []
            s.key = None
