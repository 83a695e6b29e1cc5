"""Per-sequence token choice: a llama.cpp sampler chain, or a numpy argmax for greedy.

Gemma's vocabulary has 262k entries, so what runs over the whole vocabulary dominates the
per-token cost. The chain therefore starts with top-k (a partial sort that leaves k
candidates) and applies the repetition penalty to those k only; top-p, min-p, the
temperature and the final random draw then work on a handful of candidates. Penalising
after top-k gives the same result for penalty >= 1 except that a penalised token can no
longer be replaced in the top k by the (k+1)-th one - a negligible difference for ~2.5 ms
saved per token. Plain greedy (temperature 0, no penalty) skips llama.cpp's sampler, which
would copy all 262k logits into a candidate array, and takes an argmax on the logits row.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .types import SamplingConfig


def _llama():
    import llama_cpp.llama_cpp as llama

    return llama


class SequenceSampler:
    """Chooses the next token of one sequence from its row of logits."""

    __slots__ = ("_chain", "_n_vocab", "greedy")

    def __init__(self, config: SamplingConfig, n_vocab: int, penalty_last_n: int = 64):
        llama = _llama()
        self._n_vocab = n_vocab
        self._chain = None
        temperature = float(config.temperature)
        penalty = float(config.repeat_penalty)
        self.greedy = temperature <= 0.0 and penalty == 1.0
        if self.greedy:
            return
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        self._chain = chain
        add = llama.llama_sampler_chain_add
        if temperature <= 0.0:  # greedy with a repetition penalty
            add(chain, llama.llama_sampler_init_top_k(max(40, int(config.top_k))))
            add(chain, llama.llama_sampler_init_penalties(n_vocab, penalty_last_n, penalty, 0.0, 0.0))
            add(chain, llama.llama_sampler_init_greedy())
            return
        if config.top_k and config.top_k > 0:
            add(chain, llama.llama_sampler_init_top_k(int(config.top_k)))
        if penalty != 1.0:
            add(chain, llama.llama_sampler_init_penalties(n_vocab, penalty_last_n, penalty, 0.0, 0.0))
        if 0.0 < config.top_p < 1.0:
            add(chain, llama.llama_sampler_init_top_p(float(config.top_p), 1))
        if config.min_p and config.min_p > 0.0:
            add(chain, llama.llama_sampler_init_min_p(float(config.min_p), 1))
        add(chain, llama.llama_sampler_init_temp(temperature))
        seed = llama.LLAMA_DEFAULT_SEED if config.seed is None else int(config.seed) & 0xFFFFFFFF
        add(chain, llama.llama_sampler_init_dist(seed))

    def accept_prompt(self, tokens: list[int], last_n: int = 64) -> None:
        """Let the repetition penalty see the end of the prompt, as llama.cpp's server does."""
        if self._chain is None:
            return
        llama = _llama()
        for tok in tokens[-last_n:]:
            llama.llama_sampler_accept(self._chain, tok)

    def sample(self, ctx: object, idx: int) -> int:
        """Token for the logits row `idx` of the last decode."""
        if self._chain is not None:
            return _llama().llama_sampler_sample(self._chain, ctx, idx)
        ptr = _llama().llama_get_logits_ith(ctx, idx)
        row = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
        return int(row.argmax())

    def close(self) -> None:
        if self._chain is not None:
            _llama().llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:  # last resort; the scheduler closes samplers explicitly
        try:
            self.close()
        except Exception:
            pass
