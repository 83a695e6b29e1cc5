"""Batched decoding throughput: raw llama.cpp batches vs the `Engine`, and thread counts.

Prints figures, asserts nothing. Examples:

    .venv/bin/python bench/engine_batch.py                      # everything (~3 min)
    .venv/bin/python bench/engine_batch.py --part raw --threads 1 2 --busy both
    .venv/bin/python bench/engine_batch.py --part engine --n 1 4 8 --tokens 64

`raw`: one llama_decode per step with one token for each of N sequences (N = 1, 2, 4, 8),
greedy, the same context options as the engine (unified KV, full SWA cache,
n_outputs_max = N). `engine`: N requests submitted at once to `Engine`, aggregate
tokens/s from the first to the last event. `--busy` runs each case on a quiet machine
and/or with one core kept busy by another process (`python -c "while 1: pass"`).

Figures on the 2-core dev VM (medians of 3 interleaved rounds, 48 tokens per sequence,
`bench/engine_batch.py --repeat 3 --tokens 48`; aggregate decode tok/s):

                          N=1    N=2    N=4    N=8
    quiet, 1 thread  raw  70.6   41.7   57.7   89.3
                  engine  76.4   71.3   73.1   90.0
    quiet, 2 threads raw  78.3   65.1  107.5  151.2
                  engine  53.5   64.4   84.5  132.7
    busy,  1 thread  raw  73.9   42.9   59.0   88.2
                  engine  73.2   72.1   72.8   92.4
    busy,  2 threads raw  35.1   18.9   31.3   62.5
                  engine  55.4   53.3   56.1   85.2

`bench/raw_decode.py --repeat 3` (single stream, 128 tokens, medians): quiet 75.0 tok/s with
1 thread, 86.8 with 2; one core busy 75.5 with 1 thread, 35.5 with 2.
Raw N=2..4 is slower than N=1: the 262k-row output projection costs ~8 ms for one row but
~35-55 ms for 2-8 rows in this build; the engine measures and splits such steps into
one-row calls (grouping.py), which is why it beats raw there. With 2 threads the engine
loses to raw because the event loop thread competes with both compute threads; with 1
thread it matches raw. Default chosen: n_threads=1, n_batch=512 (prompt chunks of 128
tokens while other sequences stream).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llama_cpp.llama_cpp as L  # noqa: E402
from raw_decode import model_params  # noqa: E402

PROMPT = (
    "<start_of_turn>user\nCount from 1 to 500, separated by commas.<end_of_turn>\n"
    "<start_of_turn>model\n1, 2, 3, 4, 5,"
)


@contextlib.contextmanager
def busy_core(enabled: bool):
    """Keep one core busy with another process for the duration of the block."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


@L.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level == 4:
        sys.stderr.write(text.decode("utf-8", "replace"))


def raw_batched_tokens_per_second(
    n_seq: int,
    n_tokens: int,
    n_threads: int,
    model_path: str | None = None,
    kv_unified: bool = True,
    flash_attn: int = -1,
    context_tokens: int = 0,
    lengths: list[int] | None = None,
) -> float:
    """Aggregate decode tokens/s of `n_seq` sequences decoded together (prefill excluded).

    `context_tokens` pads each sequence's prompt to about that many tokens (KV occupancy);
    `flash_attn` is llama.cpp's flash_attn_type (-1 auto, 0 off, 1 on). With `lengths`
    (one per sequence, at most `n_tokens`), sequence i leaves the batch after lengths[i]
    tokens, as answers of those lengths would: the same work as a server run that gave them.
    """
    lengths = [min(n_tokens, max(1, x)) for x in lengths] if lengths else [n_tokens] * n_seq
    n_seq = len(lengths)
    from jupyter_llmchat.engine.model import default_model_path

    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    path = model_path or str(default_model_path())
    model = L.llama_model_load_from_file(path.encode(), model_params())
    cparams = L.llama_context_default_params()
    cparams.n_ctx = 8192
    cparams.n_batch = cparams.n_ubatch = 512
    cparams.n_seq_max = n_seq
    cparams.n_outputs_max = n_seq
    cparams.kv_unified = kv_unified
    cparams.swa_full = True
    cparams.flash_attn_type = flash_attn
    cparams.n_threads = cparams.n_threads_batch = n_threads
    ctx = L.llama_init_from_model(model, cparams)
    vocab = L.llama_model_get_vocab(model)
    samplers = []
    for _ in range(n_seq):
        s = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(s, L.llama_sampler_init_greedy())
        samplers.append(s)
    batch = L.llama_batch_init(512, 0, 1)
    try:
        data = PROMPT.encode()
        buf = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(vocab, data, len(data), buf, len(buf), True, True)
        prompt = list(buf[:n])
        if context_tokens > len(prompt):
            prompt = prompt[:1] + prompt[1:] * (context_tokens // len(prompt)) + prompt[1:]
        # prefill every sequence in 512-token chunks (not timed)
        for seq in range(n_seq):
            for start in range(0, len(prompt), 512):
                chunk = prompt[start : start + 512]
                batch.n_tokens = len(chunk)
                for i, tok in enumerate(chunk):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, start + i, 1
                    batch.seq_id[i][0] = seq
                    batch.logits[i] = 1 if start + i == len(prompt) - 1 else 0
                assert L.llama_decode(ctx, batch) == 0
        last = [L.llama_sampler_sample(samplers[0], ctx, -1)] * n_seq
        pos = len(prompt)
        t0 = time.perf_counter()
        for step in range(max(lengths)):
            active = [s for s in range(n_seq) if lengths[s] > step]
            batch.n_tokens = len(active)
            for i, s in enumerate(active):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = last[s], pos, 1
                batch.seq_id[i][0] = s
                batch.logits[i] = 1
            assert L.llama_decode(ctx, batch) == 0
            for i, s in enumerate(active):
                last[s] = L.llama_sampler_sample(samplers[s], ctx, i)
            pos += 1
        elapsed = time.perf_counter() - t0
    finally:
        L.llama_batch_free(batch)
        for s in samplers:
            L.llama_sampler_free(s)
        L.llama_free(ctx)
        L.llama_model_free(model)
    return sum(lengths) / elapsed


async def engine_tokens_per_second(
    n_req: int, n_tokens: int, n_threads: int, parallel: int = 8, temperature: float = 0.0
) -> dict[str, float]:
    """Submit `n_req` requests at once; aggregate and per-request figures."""
    from jupyter_llmchat.engine import ChatTurn, Engine, EngineSettings, GenerationRequest, SamplingConfig

    loop = asyncio.get_running_loop()
    finals: dict[str, object] = {}
    first_event: list[float] = []
    last_event = [0.0]
    n_events = [0]

    def sink(events):
        now = time.perf_counter()
        if not first_event:
            first_event.append(now)
        last_event[0] = now
        n_events[0] += len(events)
        for ev in events:
            if ev.is_final:
                finals[ev.message_id] = ev

    engine = Engine(
        EngineSettings(n_ctx=8192, n_threads=n_threads, parallel=parallel, max_tokens=n_tokens), sink, loop
    )
    engine.start()
    assert await engine.wait_loaded(120), engine.load_error
    # warm-up (first decode allocates)
    engine.submit(GenerationRequest("warm", [ChatTurn("user", "Hi")], SamplingConfig(max_tokens=2, temperature=0)))
    while "warm" not in finals:
        await asyncio.sleep(0.01)
    first_event.clear()
    turns = [ChatTurn("user", "Count from 1 to 500, separated by commas.")]
    t0 = time.perf_counter()
    for i in range(n_req):
        cfg = SamplingConfig(max_tokens=n_tokens, temperature=temperature, seed=i)
        engine.submit(GenerationRequest(f"b{i}", list(turns), cfg))
    while len(finals) < n_req + 1:
        await asyncio.sleep(0.01)
    t1 = time.perf_counter()
    completion = sum(f.usage["completion_tokens"] for k, f in finals.items() if k != "warm")
    per_seq = [f.timings["tokens_per_second"] for k, f in finals.items() if k != "warm"]
    ttft = [f.timings["ttft_ms"] for k, f in finals.items() if k != "warm"]
    engine.close()
    return {
        "aggregate_tps": completion / (t1 - t0),
        "decode_tps": completion / max(last_event[0] - first_event[0], 1e-6),
        "per_seq_tps": sum(per_seq) / len(per_seq),
        "ttft_ms_max": max(ttft),
        "completion_tokens": completion,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["raw", "engine", "all"], default="all")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--busy", choices=["quiet", "busy", "both"], default="both")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; configurations are interleaved")
    parser.add_argument("--no-unified", action="store_true", help="raw part: also without kv_unified")
    parser.add_argument("--fa", action="store_true", help="raw part: also with flash attention off")
    parser.add_argument("--context", type=int, default=0, help="raw part: tokens of context per sequence")
    args = parser.parse_args()
    busy_modes = {"quiet": [False], "busy": [True], "both": [False, True]}[args.busy]
    parts = ["raw", "engine"] if args.part == "all" else [args.part]
    variants = [("", {})]
    if args.no_unified:
        variants.append((" kv_unified off", {"kv_unified": False}))
    if args.fa:
        variants.append((" flash_attn off", {"flash_attn": 0}))
    for busy in busy_modes:
        label = "one core busy" if busy else "quiet"
        results: dict[tuple, list[float]] = {}
        with busy_core(busy):
            # Rounds of every configuration, so that a burst of load elsewhere on the
            # machine spreads over all of them instead of spoiling one.
            for _ in range(args.repeat):
                for n_threads in args.threads:
                    for part in parts:
                        for n in args.n:
                            if part == "raw":
                                for vname, kw in variants:
                                    tps = raw_batched_tokens_per_second(
                                        n, args.tokens, n_threads, context_tokens=args.context, **kw
                                    )
                                    results.setdefault((part + vname, n_threads, n), []).append(tps)
                            else:
                                r = asyncio.run(engine_tokens_per_second(n, args.tokens, n_threads))
                                results.setdefault((part, n_threads, n), []).append(r["decode_tps"])
                                results.setdefault(("engine ttft_ms", n_threads, n), []).append(r["ttft_ms_max"])
        for (part, n_threads, n), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
            values = sorted(values)
            unit = "ms" if "ttft" in part else "tok/s aggregate"
            print(
                f"{part:22s} {label:13s} n_threads={n_threads} N={n}:  median {values[len(values) // 2]:6.1f}"
                f"  best {max(values) if unit != 'ms' else min(values):6.1f} {unit}  ({len(values)} runs)",
                flush=True,
            )


if __name__ == "__main__":
    main()
