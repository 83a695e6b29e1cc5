"""Warm after a restart: a thread's next question with its KV state restored from disk.

Engine-level (a restarted server is a new `Engine` on the same `kv_cache_dir`; the socket
adds the same few ms to every case). For threads of ~1,500 and ~3,000 tokens of history:

- **warm**: the running engine that answered the previous question (its KV in memory);
- **restored**: a new engine on a copy of the directory as it was after the previous
  question (the state saved then), asked the same next question;
- **cold**: a new engine without saved states, asked the same question.

Each case's figure is the time to first token (`timings.ttft_ms`) of the same prompt.
Also: bytes on disk per 1,000 tokens, the decode thread's copy time per snapshot, and
restore time against evaluation time per token. `prompt_budget` is raised to 4,096 here
so the whole thread is in the prompt (with the default, 1,024, it would be cut).

Then **long threads keep a shared prefix**: with the default `prompt_budget` (1,024), a
thread of ~3× the budget asked several questions in a row; the next-turn TTFT and the
share of each prompt found in the KV cache, with the old cut (the oldest turn dropped on
every question) and the cut at cut points (engine/prompt.py).

    .venv/bin/python bench/kv_disk.py                 # 2 rounds (~10 min on 2 busy cores)
    .venv/bin/python bench/kv_disk.py --rounds 1 --sizes 1500
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from jupyter_llmchat.engine import ChatTurn, Engine, EngineSettings, GenerationRequest, SamplingConfig, TokenEvent
from jupyter_llmchat.engine import kv_disk, prompt
from jupyter_llmchat.engine.kv_files import SUFFIX

ONE = SamplingConfig(max_tokens=1, temperature=0.0, repeat_penalty=1.0)
SYSTEM = "You are a helpful assistant for a data science class. Answer briefly."
TOPICS = ("pandas", "numpy", "plotting", "regression", "testing", "git", "SQL", "notebooks", "clustering", "statistics")


def exchange(round_: int, i: int) -> tuple[str, str]:
    """A question and a ~110-token answer, unique to the round (no cache across rounds)."""
    topic = TOPICS[i % len(TOPICS)]
    q = f"Round {round_}, question {i}: how do I get started with {topic} for exercise {i}?"
    a = (
        f"For exercise {i}, start with {topic} by reading the course notes of week {i % 7 + 1}. "
        f"Load the data set, look at the first rows, check the types and the missing values, then try one "
        f"small step at a time and keep each step in its own cell. Compare your result with the example "
        f"output of round {round_}, and ask again if a step fails: paste the error message and the cell."
    )
    return q, a


class Run:
    """One engine on a private loop (a server's life)."""

    def __init__(self, kv_dir: Path | None, prompt_budget: int):
        self.loop = asyncio.new_event_loop()
        self.events: dict[str, list[TokenEvent]] = defaultdict(list)
        settings = EngineSettings(
            prompt_budget=prompt_budget, kv_cache_dir=str(kv_dir) if kv_dir else "", kv_cache_bytes=1 << 30 if kv_dir else 0
        )
        self.engine = Engine(settings, self._sink, self.loop)
        self.engine.start()
        assert self.loop.run_until_complete(self.engine.wait_loaded(300)), self.engine.load_error
        self.n = 0

    def _sink(self, events: list[TokenEvent]) -> None:
        for ev in events:
            self.events[ev.message_id].append(ev)

    def ask(self, turns: list[ChatTurn]) -> dict[str, Any]:
        self.n += 1
        mid = f"q{self.n}"
        before = self.engine.stats()
        self.engine.submit(GenerationRequest(mid, turns, ONE, "room\nada", persist=True, room="room"))

        async def done() -> None:
            while not (self.events[mid] and self.events[mid][-1].is_final):
                await asyncio.sleep(0.005)

        self.loop.run_until_complete(done())
        final = self.events[mid][-1]
        after = self.engine.stats()
        return {
            "ttft": final.timings["ttft_ms"],
            "prompt": final.usage["prompt_tokens"],
            "cached": after["prompt_tokens_cached"] - before["prompt_tokens_cached"],
            "evaluated": after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"],
        }

    def flush(self) -> None:
        if self.engine._disk is not None:
            assert self.engine._disk.flush(120)

    def close(self) -> None:
        self.engine.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()


def thread(round_: int, history_tokens: int, extra: int = 0) -> list[ChatTurn]:
    """System prompt, ~`history_tokens` of exchanges (+`extra` more), and the next question."""
    n = max(1, history_tokens // 150) + extra
    turns = [ChatTurn("system", SYSTEM)]
    for i in range(n):
        q, a = exchange(round_, i)
        turns += [ChatTurn("user", q), ChatTurn("assistant", a)]
    return turns + [ChatTurn("user", exchange(round_, n)[0])]


class Timed:
    """Wall times of calls to one method (the decode thread's copy, the restore)."""

    def __init__(self, owner: Any, name: str):
        self.times: list[float] = []  # wall ms
        self.cpu: list[float] = []  # the calling thread's CPU ms (the wall time includes waiting for a core)
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.times.append((time.perf_counter() - t0) * 1000.0)
                self.cpu.append((time.thread_time() - c0) * 1000.0)

        setattr(owner, name, wrapper)


def restart_case(round_: int, size: int, work: Path, copies: Timed, restores: Timed) -> dict[str, Any]:
    live, saved = work / f"live-{round_}-{size}", work / f"saved-{round_}-{size}"
    a = Run(live, 4096)
    try:
        a.ask(thread(round_, size))  # the previous question: saves the thread
        a.flush()
        shutil.copytree(live, saved)
        files = sorted(saved.glob("*" + SUFFIX))
        state_tokens = [int(kv_header(f)["n_tokens"]) for f in files]
        per_1000 = 1000.0 * sum(f.stat().st_size for f in files) / max(1, sum(state_tokens))
        nxt = thread(round_, size, extra=1)
        warm = a.ask(nxt)
    finally:
        a.close()
    b = Run(saved, 4096)
    try:
        n_restores = len(restores.times)
        restored = b.ask(nxt)
        restore_ms = restores.times[n_restores:]
    finally:
        b.close()
    c = Run(None, 4096)
    try:
        cold = c.ask(nxt)
    finally:
        c.close()
    return {
        "warm": warm, "restored": restored, "cold": cold, "restore_ms": restore_ms,
        "bytes_per_1000": per_1000,
        "state_tokens": state_tokens,
    }


def kv_header(path: Path) -> dict:
    from jupyter_llmchat.engine.kv_files import read_header

    return read_header(path)[0]


def cut_case(round_: int, cut_in_blocks: bool, turns_asked: int) -> list[dict[str, Any]]:
    """A thread of ~3x the default budget asked `turns_asked` questions in a row (warm)."""
    original = prompt.first_cut
    if not cut_in_blocks:
        prompt.first_cut = lambda texts, start: start  # the old cut: the fewest turns dropped
    run = Run(None, 0)
    try:
        results = []
        base = thread(round_, 3 * 1024)
        for k in range(turns_asked + 1):
            q, a = exchange(round_, 1000 + k)
            r = run.ask(base)
            if k:  # the first question of the thread warms it up
                results.append(r)
            base = base + [ChatTurn("assistant", a), ChatTurn("user", q)]
        return results
    finally:
        prompt.first_cut = original
        run.close()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1500, 3000])
    parser.add_argument("--turns", type=int, default=6, help="questions in a row for the cut comparison")
    parser.add_argument("--skip", nargs="*", default=[], choices=["restart", "cut"])
    args = parser.parse_args()
    copies = Timed(kv_disk.KVDisk, "snapshot")  # only the calls that copy count (below)
    restores = Timed(kv_disk.KVDisk, "restore")
    me = psutil.Process()
    cpu0, t0 = psutil.cpu_times(), time.monotonic()
    own0 = me.cpu_times()
    work = Path(tempfile.mkdtemp(prefix="kvbench-"))
    try:
        if "restart" not in args.skip:
            by_size: dict[int, list[dict]] = defaultdict(list)
            for r in range(args.rounds):
                for size in args.sizes:
                    by_size[size].append(restart_case(r, size, work, copies, restores))
            print("next question after a restart (TTFT ms, median of rounds; prompt / evaluated tokens)")
            for size, cases in by_size.items():
                w, s, c = (median([x[k]["ttft"] for x in cases]) for k in ("warm", "restored", "cold"))
                p = cases[0]["cold"]["prompt"]
                ev = {k: cases[0][k]["evaluated"] for k in ("warm", "restored", "cold")}
                rest = median([t for x in cases for t in x["restore_ms"]])
                per_tok_eval = c / max(1, ev["cold"])
                print(
                    f"  ~{size} history, prompt {p}: warm {w:.0f} ({ev['warm']} eval) | restored {s:.0f} ({ev['restored']} eval) "
                    f"| cold {c:.0f} ({ev['cold']} eval) | restored/cold {s / c:.3f} restored/warm {s / w:.2f}"
                )
                state = statistics.mean(cases[0]["state_tokens"]) if cases[0]["state_tokens"] else 0
                print(
                    f"    state of {state:.0f} tokens: {median([x['bytes_per_1000'] for x in cases]) / 1e6:.2f} MB per 1,000 tokens; "
                    f"restore {rest:.1f} ms = {rest / max(1, state) * 1000:.1f} us/token vs evaluation {per_tok_eval * 1000:.0f} us/token"
                )
            print(
                f"  decode thread per snapshot: wall median {median(copies.times):.2f} ms (max {max(copies.times, default=0):.2f}), "
                f"its CPU median {median(copies.cpu):.2f} ms (max {max(copies.cpu, default=0):.2f}); {len(copies.times)} snapshots"
            )
        if "cut" not in args.skip:
            print(f"\nthread of ~3x the default prompt_budget (1,024), {args.turns} questions in a row, warm (TTFT ms; cached share)")
            for blocks in (False, True):
                res = [x for r in range(args.rounds) for x in cut_case(r, blocks, args.turns)]
                ttft = median([x["ttft"] for x in res])
                share = sum(x["cached"] for x in res) / max(1, sum(x["prompt"] for x in res))
                label = "cut at cut points (now)  " if blocks else "oldest turn every question"
                print(f"  {label}: median {ttft:.0f} ms, per turn {[round(x['ttft']) for x in res]}, cached {share:.0%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu1, span = psutil.cpu_times(), time.monotonic() - t0
    own = sum(me.cpu_times()[:2]) - sum(own0[:2])
    busy = (sum(cpu1) - cpu1.idle - (sum(cpu0) - cpu0.idle)) - own
    print(f"\nother processes used {busy / span:.2f} cores on average over {span:.0f} s")


if __name__ == "__main__":
    main()
