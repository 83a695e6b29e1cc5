"""What sampling costs beside decoding: 8 answers at once, greedy vs the server's defaults.

Runs the engine in-process (no server) with the packaged model: N requests of `--tokens`
tokens each, decoded together, first with greedy decoding (temperature 0, no penalty),
then with the server's default sampling settings (SamplingConfig(): temperature, top-k,
top-p, min-p, repetition penalty), interleaved over `--rounds`. Prints the aggregate decode
rates and their ratio, and the time one `SequenceSampler.choose` takes on a real logits row
(the whole vocabulary) beside the time of one decode step: the share of a step that the
sampling of all N sequences costs.

    .venv/bin/python bench/sampling.py --n 8 --tokens 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_llmchat.engine import Engine  # noqa: E402
from jupyter_llmchat.engine.sampling import SequenceSampler  # noqa: E402
from jupyter_llmchat.engine.types import ChatTurn, EngineSettings, GenerationRequest, SamplingConfig  # noqa: E402

PROMPT = "Write the numbers from 1 to 100 in a row."


async def run(engine_box: dict, n: int, tokens: int, config: SamplingConfig) -> float:
    """Aggregate tokens/s of n answers decoded together (first token to last)."""
    engine, done, firsts, lasts, counts = engine_box["engine"], engine_box["done"], {}, {}, {}
    engine_box["on"] = lambda ev: (firsts.setdefault(ev.message_id, time.perf_counter()), lasts.__setitem__(ev.message_id, time.perf_counter()), counts.__setitem__(ev.message_id, counts.get(ev.message_id, 0) + 1))
    ids = [f"r{time.perf_counter_ns()}-{i}" for i in range(n)]
    for i, mid in enumerate(ids):
        cfg = SamplingConfig(**{**config.__dict__, "max_tokens": tokens, "seed": i})
        engine.submit(GenerationRequest(mid, [ChatTurn("user", f"{PROMPT} ({i})")], cfg))
    while not all(m in done for m in ids):
        await asyncio.sleep(0.005)
    generated = sum(done[m].usage["completion_tokens"] for m in ids)
    span = max(lasts.values()) - min(firsts.values())
    return (generated - n) / span


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    box: dict = {"done": {}}

    def sink(events):
        for ev in events:
            if "on" in box:
                box["on"](ev)
            if ev.is_final:
                box["done"][ev.message_id] = ev

    # Time every real `choose` (real logits rows) during the default-settings runs.
    spent = box["sampling_s"] = {"time": 0.0, "steps": 0, "wall": 0.0}
    choose = SequenceSampler.choose

    def timed(self, row):
        t = time.perf_counter()
        token = choose(self, row)
        if not self.greedy:
            spent["time"] += time.perf_counter() - t
        return token

    SequenceSampler.choose = timed
    engine = Engine(EngineSettings(n_threads=args.threads), sink, loop)
    box["engine"] = engine
    engine.start()
    assert await engine.wait_loaded(120), engine.load_error
    greedy = SamplingConfig(temperature=0.0, repeat_penalty=1.0)
    default = SamplingConfig()
    rates: dict[str, list[float]] = {"greedy": [], "default": []}
    for _ in range(args.rounds):
        for name, cfg in (("greedy", greedy), ("default", default)):
            t = time.perf_counter()
            rates[name].append(await run(box, args.n, args.tokens, cfg))
            if name == "default":
                spent["wall"] += time.perf_counter() - t
                spent["steps"] += args.tokens
    engine.close()
    g, d = statistics.median(rates["greedy"]), statistics.median(rates["default"])
    print(f"N={args.n}, {args.tokens} tokens, threads={args.threads}, {args.rounds} rounds (medians)")
    print(f"  greedy            {g:7.1f} tok/s")
    print(f"  default sampling  {d:7.1f} tok/s   ratio default/greedy {d / g:.3f}")
    spent = box["sampling_s"]
    print(f"  sampling (all rows, default settings): {1000 * spent['time'] / max(spent['steps'], 1):.2f} ms per step "
          f"of {1000 * args.n / d:.1f} ms ({100 * spent['time'] / max(spent['wall'], 1e-9):.1f} % of decode time)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
