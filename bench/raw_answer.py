"""What a user gets from raw llama.cpp: the question alone in Gemma's turn format, no system prompt or examples.

The yardstick of `bench/answers.py`: the same model through llama-cpp-python's low-level
API, the question as `<start_of_turn>user\\n{q}<end_of_turn>\\n<start_of_turn>model\\n`,
and the server's greedy setting with its default repeat_penalty, through llama.cpp's own
sampler chain (top-k 40 -> repetition penalty over the last 64 tokens, prompt included ->
greedy; the server penalises the whole row instead, the same choice unless a penalised
token falls behind the 40th). An answer ends at an end-of-generation token of the vocabulary ("stop") or at
`max_tokens` ("length"); control tokens are not shown, as llama-cpp-python's completion
API does not show them.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from raw_decode import L, _model_path, _quiet_log, model_params

GEMMA_TURN = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"


@dataclass(frozen=True)
class RawAnswer:
    text: str
    finish: str  # "stop" or "length"
    tokens: int


def _tokenize(vocab: object, text: str) -> list[int]:
    data = text.encode()
    buf = (L.llama_token * (len(data) + 8))()
    n = L.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)  # BOS, parse control tokens
    return list(buf[:n])


def _piece(vocab: object, token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:n] if n > 0 else b""


def raw_answers(
    questions: Sequence[str],
    max_tokens: int = 64,
    repeat_penalty: float = 1.1,
    top_k: int = 40,
    n_threads: int = 1,
    model_path: str | Path | None = None,
) -> list[RawAnswer]:
    """Answer each question on its own, greedily, with a fresh KV cache."""
    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(_model_path(model_path)).encode(), model_params())
    cparams = L.llama_context_default_params()
    cparams.n_ctx = 1024
    cparams.n_threads = cparams.n_threads_batch = n_threads
    ctx = L.llama_init_from_model(model, cparams)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    batch = L.llama_batch_init(512, 0, 1)
    out = []
    try:
        for question in questions:
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            L.llama_sampler_chain_add(sampler, L.llama_sampler_init_top_k(max(40, top_k)))
            L.llama_sampler_chain_add(sampler, L.llama_sampler_init_penalties(n_vocab, 64, repeat_penalty, 0.0, 0.0))
            L.llama_sampler_chain_add(sampler, L.llama_sampler_init_greedy())
            try:
                out.append(_answer(ctx, vocab, batch, sampler, _tokenize(vocab, GEMMA_TURN.format(question)), max_tokens))
            finally:
                L.llama_sampler_free(sampler)
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(model)
    return out


def _answer(ctx: object, vocab: object, batch: object, sampler: object, prompt: list[int], max_tokens: int) -> RawAnswer:
    for tok in prompt[-64:]:
        L.llama_sampler_accept(sampler, tok)  # as the server does: the penalty sees the prompt's end
    tokens, pos, finish = list(prompt), 0, "length"
    produced: list[int] = []
    while len(produced) < max_tokens:
        batch.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tok, pos + i, 1, 0
            batch.seq_id[i][0] = 0
        batch.logits[len(tokens) - 1] = 1
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        pos += len(tokens)
        token = L.llama_sampler_sample(sampler, ctx, -1)
        if L.llama_vocab_is_eog(vocab, token):
            finish = "stop"
            break
        produced.append(token)
        tokens = [token]
    text = b"".join(_piece(vocab, t) for t in produced).decode("utf-8", "replace")
    return RawAnswer(text, finish, len(produced))
