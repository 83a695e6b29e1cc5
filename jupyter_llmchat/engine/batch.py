"""A `llama_batch` whose arrays are numpy buffers owned by Python.

`llama_batch_init` gives C arrays that Python can only fill element by element through
ctypes (five slow assignments per token). Here the struct points into numpy arrays, so a
prompt chunk is written with a few slice assignments, and every token's `seq_id` entry
points at a constant cell holding that sequence's id (one token always belongs to exactly
one sequence in this engine). Nothing is freed by llama.cpp: do not pass this batch to
`llama_batch_free`.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .llama_api import llama as _llama


class Batch:
    """Up to `capacity` tokens for sequences `0..n_seq-1`."""

    def __init__(self, capacity: int, n_seq: int):
        llama = _llama()
        self.capacity = capacity
        self.n = 0
        self.n_outputs = 0
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self._seq_values = np.arange(n_seq, dtype=np.int32)
        base = self._seq_values.ctypes.data
        self._seq_addr = base + 4 * np.arange(n_seq, dtype=np.uint64)
        self.seq_ptr = np.full(capacity, base, dtype=np.uint64)
        self.struct = llama.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama.llama_token))
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = ctypes.cast(
            self.seq_ptr.ctypes.data, ctypes.POINTER(ctypes.POINTER(llama.llama_seq_id))
        )
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def clear(self) -> None:
        self.n = 0
        self.n_outputs = 0

    @property
    def free(self) -> int:
        return self.capacity - self.n

    def add(self, token: int, pos: int, seq: int, output: bool) -> int:
        """Append one token; return its index (the logits row index when `output`)."""
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq_ptr[i] = self._seq_addr[seq]
        self.logits[i] = 1 if output else 0
        self.n = i + 1
        if output:
            self.n_outputs += 1
        return i

    def add_span(self, tokens: list[int], pos0: int, seq: int, output_last: bool) -> int:
        """Append a prompt chunk at positions `pos0…`; return the index of its last token."""
        k = len(tokens)
        i = self.n
        self.token[i : i + k] = tokens
        self.pos[i : i + k] = np.arange(pos0, pos0 + k, dtype=np.int32)
        self.seq_ptr[i : i + k] = self._seq_addr[seq]
        self.logits[i : i + k] = 0
        if output_last:
            self.logits[i + k - 1] = 1
            self.n_outputs += 1
        self.n = i + k
        return i + k - 1

    def truncate(self, n: int) -> None:
        """Drop entries from index `n` on (used to retry a decode without a prefill chunk)."""
        if n < self.n:
            self.n_outputs -= int(self.logits[n : self.n].sum())
            self.n = n

    def as_struct(self):
        self.struct.n_tokens = self.n
        return self.struct
