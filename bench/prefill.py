"""Prompt evaluation (prefill) time with the low-level API: the floor under time to first token.

For N new prompts of T tokens each, after a shared cached prefix of P tokens (the system
prompt, copied into every sequence as the engine does), times the single `llama_decode`
that evaluates all N x T tokens and yields one logits row per sequence - what the engine
must do before any of N simultaneous requests gets its first token. Also times one cold
history of H tokens (512-token chunks, as the engine feeds a prompt alone), optionally
with other sequences holding cached tokens in the unified KV cache (`--occupied`). Same context
options as the engine (unified KV, full SWA cache, n_seq_max = n_outputs_max = 8).

    .venv/bin/python bench/prefill.py                        # n_threads 1 and 2, quiet
    .venv/bin/python bench/prefill.py --threads 1 --busy both --repeat 5

Prints medians in ms and tokens/s.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_batch import L, _quiet_log, busy_core, model_params  # noqa: E402

TEXT = (
    "The quiet river near the old bridge carried forty lanterns before the golden winter. "
    "A patient painter counted the copper kettles in the market and mended a crooked ladder. "
)


def _tokens(vocab, n: int) -> list[int]:
    data = (TEXT * (n // 20 + 2)).encode()
    buf = (L.llama_token * (len(data) + 8))()
    k = L.llama_tokenize(vocab, data, len(data), buf, len(buf), False, False)
    assert k >= n, (k, n)
    return list(buf[:n])


def measure(
    n_threads: int, cases: list[tuple[int, int]], prefix: int, history: int, repeat: int, occupied: int = 0
) -> dict:
    """Median ms per case: {(N, T): ms, ("history", H): ms}."""
    from jupyter_llmchat.engine.model import default_model_path

    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    model = L.llama_model_load_from_file(str(default_model_path()).encode(), model_params())
    cp = L.llama_context_default_params()
    cp.n_ctx = 8192
    cp.n_batch = cp.n_ubatch = 512
    cp.n_seq_max = cp.n_outputs_max = 8
    cp.kv_unified = True
    cp.swa_full = True
    cp.n_threads = cp.n_threads_batch = n_threads
    ctx = L.llama_init_from_model(model, cp)
    mem = L.llama_get_memory(ctx)
    vocab = L.llama_model_get_vocab(model)
    batch = L.llama_batch_init(512, 0, 1)
    toks = _tokens(vocab, max(prefix + max(t for _, t in cases) * 8, history) + 8)

    def decode(items: list[tuple[int, int, int, bool]]) -> float:
        """items: (token, pos, seq, logits); returns seconds."""
        batch.n_tokens = len(items)
        for i, (tok, pos, seq, out) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if out else 0
        t0 = time.perf_counter()
        assert L.llama_decode(ctx, batch) == 0
        return time.perf_counter() - t0

    results: dict = {}
    try:
        for _ in range(repeat + 1):  # the first round warms up (graph allocation)
            for n, t in cases:
                L.llama_memory_clear(mem, True)
                decode([(toks[i], i, 0, i == prefix - 1) for i in range(prefix)])
                for s in range(1, n):
                    L.llama_memory_seq_cp(mem, 0, s, 0, prefix)
                items = []
                for s in range(n):
                    new = toks[prefix + s * t : prefix + (s + 1) * t]
                    items += [(tok, prefix + i, s, i == t - 1) for i, tok in enumerate(new)]
                results.setdefault((n, t), []).append(decode(items) * 1000)
            L.llama_memory_clear(mem, True)
            for s in range(1, 8) if occupied else ():  # idle rooms' cached prefixes in the unified KV
                for start in range(0, occupied, 512):
                    n_occ = min(512, occupied - start)
                    decode([(toks[start + i], start + i, s, False) for i in range(n_occ)])
            total = 0.0
            for start in range(0, history, 512):
                chunk = toks[start : min(start + 512, history)]
                total += decode([(tok, start + i, 0, start + i == history - 1) for i, tok in enumerate(chunk)])
            results.setdefault(("history", history), []).append(total * 1000)
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)
        L.llama_model_free(model)
    return {k: statistics.median(v[1:]) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--prompt", type=int, default=21, help="new tokens per prompt (bench/concurrency.py: ~21)")
    parser.add_argument("--prefix", type=int, default=123, help="cached shared prefix (the default system prompt)")
    parser.add_argument("--history", type=int, default=1573, help="tokens of the cold history case")
    parser.add_argument("--occupied", type=int, default=0, help="history case: tokens cached in each of 7 other sequences")
    parser.add_argument("--busy", choices=["quiet", "busy", "both"], default="quiet")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = [(n, args.prompt) for n in args.n]
    for busy in {"quiet": [False], "busy": [True], "both": [False, True]}[args.busy]:
        with busy_core(busy):
            for n_threads in args.threads:
                r = measure(n_threads, cases, args.prefix, args.history, args.repeat, args.occupied)
                label = "one core busy" if busy else "quiet"
                for n, t in cases:
                    ms = r[(n, t)]
                    print(f"{label:13s} n_threads={n_threads}  {n} prompts x {t} tokens: {ms:7.1f} ms "
                          f"({n * t / ms * 1000:6.0f} tok/s; x{ms / r[cases[0]]:.2f} of {cases[0][0]} prompt)", flush=True)
                ms = r[("history", args.history)]
                occ = f" ({args.occupied} tokens in 7 other sequences)" if args.occupied else ""
                print(f"{label:13s} n_threads={n_threads}  1 history of {args.history} tokens{occ}: {ms:7.1f} ms "
                      f"({args.history / ms * 1000:6.0f} tok/s)", flush=True)


if __name__ == "__main__":
    main()
