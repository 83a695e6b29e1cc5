"""jupyter-llmchat over its WebSocket beside llama.cpp's own `llama-server --parallel 8`.

Same model (the packaged GGUF), same prompts (system prompt + a user prompt; the servers'
chat templates format them), same sampling settings (jupyter-llmchat's defaults, or greedy
with `--greedy`), same `max_tokens`, same threads, same context options (8 sequences,
n_ctx 8192 unified, full SWA cache, batches of 512, no repacked/AMX weight buffers).
The prompts are ones this model answers at length, so most answers run to `max_tokens`;
the tokens are counted from each answer's usage, and the table lists the mean per answer.

Servers, started by the bench and kept running throughout: three `jupyter server`s with
the extension (n_threads = 0 adaptive — the default —, 1 and 2; tests/support/servers.py) and two
`llama-server`s (`-t 1` and `-t 2`; built by bench/build_llama_server.sh, skipped with a
message where it is not built). Then, for N = 1, 2, 4, 8 concurrent streams, in phases:

- **quiet**: nothing else started by the bench;
- **busy**: another process spins on one core for the duration of each run;
- **alternating**: a spinning process runs 10 s, pauses 10 s, runs 10 s... (SIGSTOP /
  SIGCONT), restarted with each run; each run is a closed loop of `--window` seconds (one
  busy + one quiet half by default): N clients each send a request, and a new one as soon
  as their answer ends, until the window closes; the rate counts everything up to the end
  of the last answer.

Quiet and busy runs are bursts: N requests sent at once. Rates are aggregate tokens over
(first request sent -> last token), prompt evaluation included (what users wait for);
TTFT = request sent -> first token with text, p95 pooled over rounds. Configurations are
interleaved and their order rotated round by round; rates are medians over rounds. The CPU
other processes used meanwhile (not this bench and what it started) is printed per phase.

Two raw llama.cpp figures (the low-level API, no server, run in the quiet phase):
- the sampling target: raw batched greedy decoding (bench/engine_batch.py) at 1 and 2
  threads of the very answers the fixed-thread jupyter-llmchat run just gave (as many
  sequences, each leaving the batch after as many tokens as its answer got once every
  answer had its first token), beside that run's decoding rate over that span; with
  sampling most answers end before max_tokens, and a comparison with N full-length
  sequences would mostly measure the answers' lengths. Raw of N full-length sequences is
  printed too, beside the rate with prompt evaluation;
- the floor under time to first token: the N prompts' new tokens (as many as the engine
  evaluated per request) in one `llama_decode` after a cached prefix (bench/prefill.py).

    .venv/bin/python bench/side_by_side.py --quick      # 1 round (~12 min quiet; 30 on a loaded machine)
    .venv/bin/python bench/side_by_side.py              # 3 rounds (~35 min)
    .venv/bin/python bench/side_by_side.py --phases quiet --n 1 8 --greedy
    .venv/bin/python bench/side_by_side.py --quick --baseline ../main   # before/after a change
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests"), str(REPO)]

from concurrency import PROMPTS, Client, LoadMeter, Stream, join_rooms, leave_rooms, pct  # noqa: E402
from engine_batch import busy_core, raw_batched_tokens_per_second  # noqa: E402
from prefill import measure as raw_prefill_ms  # noqa: E402
from support.servers import ServerProcess, free_port  # noqa: E402

from jupyter_llmchat.engine.chat_format import make_formatter  # noqa: E402
from jupyter_llmchat.engine.model import default_model_path  # noqa: E402
from jupyter_llmchat.engine.primer import DEFAULT_SYSTEM_PROMPT  # noqa: E402
from jupyter_llmchat.engine.types import ChatTurn, SamplingConfig  # noqa: E402

DEFAULT_LLAMA_SERVER = Path.home() / ".cache" / "jupyter-llmchat" / "llama-server" / "llama-server"
_DEFAULTS = SamplingConfig()
DEFAULT_SAMPLING = {
    "temperature": _DEFAULTS.temperature,
    "top_k": _DEFAULTS.top_k,
    "top_p": _DEFAULTS.top_p,
    "min_p": _DEFAULTS.min_p,
    "repeat_penalty": _DEFAULTS.repeat_penalty,
}
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}
# The packaged base model has no chat template: jupyter-llmchat writes Gemma's turn format
# with its examples (engine/chat_format.py); llama-server gets that very text, and the same
# stop strings (where the model starts the next "user" line).
FORMATTER = make_formatter(None)


def prompt_text(prompt: str) -> str:
    """The text jupyter-llmchat's engine evaluates for `prompt` in a fresh room (BOS apart)."""
    formatted = FORMATTER.format([ChatTurn("system", DEFAULT_SYSTEM_PROMPT), ChatTurn("user", prompt)])
    return "".join(text for text, _ in formatted.segments)
PHASES = ("quiet", "busy", "alternating")


class Questions:
    """Every target of a run gets the same questions and sampling seeds: with sampling, the
    answers' lengths decide much of a run's rate, and different questions (or seeds) per
    target would compare what sampling happened to make of them. Each target is its own
    server, so a tag need only be unique within one (its KV cache is matched by content:
    a question asked before would be served from the cache)."""

    run = "warm-up"  # set for each (round, phase, N) by bench()

    @classmethod
    def get(cls, i: int, k: int = 0) -> tuple[str, int]:
        """Client i's k-th question of the current run, and its seed."""
        key = f"{cls.run}.{i}.{k}"
        return f"({key}) {PROMPTS[i % len(PROMPTS)]}", zlib.crc32(key.encode())


# ---------------------------------------------------------------------------- the spinners


@contextlib.contextmanager
def alternating_core(period: float, busy_first: bool = True):
    """One core busy for `period` s, then quiet for `period` s, and so on, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
    stop = threading.Event()

    def toggle() -> None:
        busy = busy_first
        while True:
            os.kill(proc.pid, signal.SIGCONT if busy else signal.SIGSTOP)
            if stop.wait(period):
                return
            busy = not busy

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- the two servers


@dataclass
class Outcome:
    """The answers of one run and the span they took."""

    streams: list[Stream]
    start: float
    threads_seen: list[int] = field(default_factory=list)  # adaptive: n_threads polled during the run
    new_prompt_tokens: float = 0.0  # llmchat bursts: prompt tokens evaluated per request (not cached)

    @property
    def agg(self) -> float:
        return sum(s.completion for s in self.streams) / (max(s.final for s in self.streams) - self.start)

    @property
    def ttft_ms(self) -> list[float]:
        return [(s.first - s.sent) * 1000 for s in self.streams]

    def decode_phase(self) -> tuple[list[int], float]:
        """Tokens each answer got after every answer had its first one, and that span: the
        decoding of these answers once all prompts are evaluated, to compare with raw
        decoding of the same lengths."""
        start = max(s.first for s in self.streams)
        end = max(s.final for s in self.streams)
        lengths = [max(0, s.completion - sum(1 for t in s.arrivals if t <= start)) for s in self.streams]
        return lengths, end - start


class ChatClient(Client):
    """concurrency.Client with the sampling settings of this bench."""

    config = DEFAULT_SAMPLING


class LLMChatTarget:
    """A jupyter server with the extension, driven over its WebSocket."""

    kind = "llmchat"

    def __init__(self, root: Path, threads: int, checkout: Path = REPO, prefix: str = "llmchat") -> None:
        self.threads = threads
        self.name = f"{prefix} {'default' if threads == 0 else threads}"
        home = root / self.name.replace(" ", "-")
        home.mkdir()
        self.server = ServerProcess(
            home,
            # One client asks for all N streams: the per-user caps are not what is measured.
            [f"--LLMChat.n_threads={threads}", "--LLMChat.rate_limit=0", "--LLMChat.max_answers_per_user=0",
             f"--LLMChat.history_path={home}/history.sqlite"],
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))},
        )
        self.clients: list[ChatClient] = []
        self.rooms = itertools.count()

    def start(self) -> None:
        self.server.start()

    def wait_ready(self) -> None:
        model = self.server.wait_for_model(180)
        if model.get("error"):
            raise RuntimeError(f"{self.name}: {model['error']}")

    async def connect(self, n: int) -> None:
        self.clients = [await ChatClient.connect(self.server.ws_url, self.server.token) for _ in range(n)]

    def room(self) -> str:
        return f"sbs-{os.getpid()}-{next(self.rooms)}"

    async def burst(self, n: int, tokens: int) -> Outcome:
        clients, rooms = self.clients[:n], [self.room() for _ in range(n)]
        await join_rooms(clients, rooms)
        evaluated = (await clients[0].model_stats())["prompt_tokens_evaluated"]
        watch = asyncio.ensure_future(self._watch_threads())
        start = time.perf_counter()
        asked = [Questions.get(i) for i in range(n)]
        streams = [c.generate(r, q, tokens, seed) for c, r, (q, seed) in zip(clients, rooms, asked)]
        await asyncio.wait_for(asyncio.gather(*(s.done for s in streams)), 600)
        watch.cancel()
        await leave_rooms(clients, rooms)
        out = Outcome(streams, start, await _result(watch))
        out.new_prompt_tokens = ((await clients[0].model_stats())["prompt_tokens_evaluated"] - evaluated) / n
        return out

    async def loop(self, n: int, tokens: int, seconds: float) -> Outcome:
        start = time.perf_counter()
        until = start + seconds
        watch = asyncio.ensure_future(self._watch_threads())

        async def worker(i: int, client: ChatClient) -> list[Stream]:
            done: list[Stream] = []
            joining = asyncio.ensure_future(self._joined(client))
            while time.perf_counter() < until:
                room = await joining
                joining = asyncio.ensure_future(self._joined(client))  # the next room, meanwhile
                q, seed = Questions.get(i, len(done))
                s = client.generate(room, q, tokens, seed)
                await asyncio.wait_for(s.done, 600)
                done.append(s)
                asyncio.ensure_future(client.request("Leave", room))
            with contextlib.suppress(Exception):
                await client.request("Leave", await joining)
            return done

        per_client = await asyncio.gather(*(worker(i, c) for i, c in enumerate(self.clients[:n])))
        watch.cancel()
        return Outcome([s for ss in per_client for s in ss], start, await _result(watch))

    async def _joined(self, client: ChatClient) -> str:
        room = self.room()
        await client.request("Join", room)
        return room

    async def _watch_threads(self) -> list[int]:
        """The adaptive thread count, polled from Stats while a run lasts."""
        seen: list[int] = []
        if self.threads != 0:
            return seen
        try:
            while True:
                seen.append(int((await self.clients[0].model_stats())["n_threads"]))
                await asyncio.sleep(0.25)
        except asyncio.CancelledError:
            return seen

    def disconnect(self) -> None:
        for c in self.clients:
            c.close()

    def stop(self) -> None:
        self.server.stop()


async def _result(task: asyncio.Future) -> list[int]:
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return []


class LlamaServerTarget:
    """llama.cpp's `llama-server --parallel 8`, driven over its streaming `/completion` API."""

    kind = "llama-server"

    def __init__(self, binary: Path, root: Path, threads: int, model: Path) -> None:
        self.threads = threads
        self.name = f"llama-server {threads}"
        self.port = free_port()
        self.log_path = root / f"llama-server-{threads}.log"
        self.command = [
            str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            "-t", str(threads), "-tb", str(threads), "--parallel", "8", "-c", "8192", "--kv-unified", "--swa-full",
            "-b", "512", "-ub", "512", "--no-repack", "--no-webui",
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None
        self.http: AsyncHTTPClient | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} did not become ready")

    async def connect(self, n: int) -> None:
        self.http = AsyncHTTPClient(force_instance=True, max_clients=32)  # bound to the running loop

    def disconnect(self) -> None:
        self.http.close()

    async def generate(self, prompt: str, tokens: int, seed: int) -> Stream:
        """One streamed `/completion` of jupyter-llmchat's own prompt text for `prompt`."""
        s = Stream(time.perf_counter(), asyncio.get_running_loop().create_future())
        pending = bytearray()

        def on_chunk(chunk: bytes) -> None:
            now = time.perf_counter()
            pending.extend(chunk)
            while b"\n" in pending:
                i = pending.index(b"\n")
                line = bytes(pending[:i]).strip()
                del pending[: i + 1]
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("content"):
                    s.arrivals.append(now)
                    s.first = s.first or now
                    s.final = now
                if event.get("stop"):
                    s.final = s.final or now
                    s.completion = event["tokens_predicted"]
                    s.prompt_tokens = event["tokens_evaluated"]
                    s.finish = "length" if event.get("stop_type") == "limit" else "stop"

        body = {
            "prompt": prompt_text(prompt),
            "n_predict": tokens,
            "stop": list(FORMATTER.extra_stops),
            "stream": True,
            "cache_prompt": True,
            "repeat_last_n": 64,
            "seed": seed,
            **ChatClient.config,
        }
        await self.http.fetch(
            HTTPRequest(
                f"http://127.0.0.1:{self.port}/completion",
                method="POST",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
                streaming_callback=on_chunk,
                request_timeout=600,
            )
        )
        s.final = s.final or time.perf_counter()
        s.first = s.first or s.final
        return s

    async def burst(self, n: int, tokens: int) -> Outcome:
        start = time.perf_counter()
        asked = [Questions.get(i) for i in range(n)]
        streams = await asyncio.gather(*(self.generate(q, tokens, seed) for q, seed in asked))
        return Outcome(list(streams), start)

    async def loop(self, n: int, tokens: int, seconds: float) -> Outcome:
        start = time.perf_counter()
        until = start + seconds

        async def worker(i: int) -> list[Stream]:
            done = []
            while time.perf_counter() < until:
                q, seed = Questions.get(i, len(done))
                done.append(await self.generate(q, tokens, seed))
            return done

        per_client = await asyncio.gather(*(worker(i) for i in range(n)))
        return Outcome([s for ss in per_client for s in ss], start)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------- the runs


@contextlib.contextmanager
def phase_load(phase: str, args: argparse.Namespace, round_no: int):
    if phase == "busy":
        with busy_core(True):
            yield
    elif phase == "alternating":
        with alternating_core(args.period, busy_first=round_no % 2 == 0):
            yield
    else:
        yield


async def bench(args: argparse.Namespace, targets: list, meter: LoadMeter) -> None:
    t0 = time.monotonic()
    for t in targets:
        await t.connect(max(args.n))
    print("warming up (the system prompt enters each server's cache) ...", flush=True)
    context_tokens = 0
    for t in targets:
        warm = await t.burst(max(args.n), 8)
        if t.kind == "llmchat":
            context_tokens = int(statistics.median(s.prompt_tokens for s in warm.streams))
    results: dict[tuple[str, str, int], list[Outcome]] = {}
    raw: dict[tuple[int, int], list[tuple[float, float, float]]] = {}  # (ours decoding, raw same lengths, raw full)
    floors: dict[int, tuple[int, int, float]] = {}  # threads: (N, new tokens per prompt, raw prefill ms)
    for r in range(args.rounds):
        order = targets[r % len(targets) :] + targets[: r % len(targets)]
        for phase in args.phases:
            for n in args.n:
                for t in order:
                    Questions.run = f"{phase[0]}{r}n{n}"
                    await asyncio.sleep(args.settle)  # the previous target's work is not this run's load
                    with meter.span(f"{phase};"), phase_load(phase, args, r):
                        if phase == "alternating":
                            out = await t.loop(n, args.tokens, args.window)
                        else:
                            out = await t.burst(n, args.tokens)
                    results.setdefault((phase, t.name, n), []).append(out)
                if phase == "quiet" and n in (1, max(args.n)) and not args.no_raw:
                    for threads in (1, 2):
                        # Raw batched greedy decoding of the answers this run's fixed-thread
                        # server gave (same count, same lengths), and of N full-length answers.
                        lengths, seconds = results[(phase, f"llmchat {threads}", n)][-1].decode_phase()
                        with meter.span("quiet;"):
                            same = await asyncio.to_thread(
                                raw_batched_tokens_per_second, n, args.tokens, threads,
                                context_tokens=context_tokens, lengths=lengths,
                            )
                            full = await asyncio.to_thread(
                                raw_batched_tokens_per_second, n, args.tokens, threads, context_tokens=context_tokens
                            )
                        raw.setdefault((threads, n), []).append((sum(lengths) / seconds, same, full))
                if phase == "quiet" and n == max(args.n) and not args.no_raw and r == 0:
                    new = [o.new_prompt_tokens for (ph, name, k), outs in results.items()
                           if ph == phase and k == n and name.startswith("llmchat") for o in outs]
                    t = max(1, round(med(new)))
                    for threads in (1, 2):
                        with meter.span("quiet;"):
                            ms = await asyncio.to_thread(raw_prefill_ms, threads, [(n, t)], context_tokens - t, 0, 3)
                        floors[threads] = (n, t, ms[(n, t)])
                print(f"  round {r + 1}/{args.rounds} {phase} N={n} done at {time.monotonic() - t0:.0f} s", flush=True)
    for t in targets:
        t.disconnect()
    report(args, targets, results, raw, floors, meter, context_tokens, time.monotonic() - t0)


# ---------------------------------------------------------------------------- the report


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def report(args, targets, results, raw, floors, meter: LoadMeter, context_tokens: int, elapsed: float) -> None:
    p = print
    names = [t.name for t in targets]
    sampling = "greedy (temperature 0, repeat_penalty 1.0)" if args.greedy else (
        "jupyter-llmchat's defaults (" + ", ".join(f"{k} {v}" for k, v in DEFAULT_SAMPLING.items()) + ")"
    )
    p()
    p(f"side by side: max_tokens={args.tokens}, sampling {sampling}; {args.rounds} round(s), {elapsed:.0f} s; "
      f"prompts of ~{context_tokens} tokens (system prompt cached)")
    p(f"machine: {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.2f}; CPU used by other processes "
      f"(not this bench, its servers or spinner): " + ", ".join(f"{ph} {meter.cores(ph + ';'):.2f}" for ph in args.phases) + " cores")
    prompt_tokens = {
        t.name: med(s.prompt_tokens for (_, name, _), outs in results.items() if name == t.name for o in outs for s in o.streams)
        for t in targets
    }
    p("prompt tokens per request (median): " + ", ".join(f"{name} {v:.0f}" for name, v in prompt_tokens.items()))
    p("agg = aggregate tok/s (all tokens / first request sent -> last token; median over rounds); "
      "p95 = TTFT p95 ms (pooled); tok = mean tokens per answer")

    def agg(phase, name, n):
        return med(o.agg for o in results.get((phase, name, n), []))

    def p95(phase, name, n):
        ttft = [x for o in results.get((phase, name, n), []) for x in o.ttft_ms]
        return pct(ttft, 95) if ttft else float("nan")

    for phase in args.phases:
        p()
        extra = f" (closed loop of {args.window:.0f} s, spinner {args.period:.0f} s on / {args.period:.0f} s off)" if phase == "alternating" else ""
        p(f"phase {phase}{extra}")
        head = " N | " + " | ".join(f"{name:>19}" for name in names) + " | adaptive threads seen"
        p(head)
        p("   | " + " | ".join(f"{'agg':>7} {'p95':>5} {'tok':>4}" for _ in names) + " |")
        p("-" * len(head))
        for n in args.n:
            cells = []
            for name in names:
                outs = results.get((phase, name, n), [])
                toks = [s.completion for o in outs for s in o.streams]
                mean_tokens = sum(toks) / len(toks) if toks else float("nan")
                cells.append(f"{agg(phase, name, n):7.1f} {p95(phase, name, n):5.0f} {mean_tokens:4.0f}")
            seen = [x for o in results.get((phase, "llmchat default", n), []) for x in o.threads_seen]
            share = ", ".join(f"{k}: {seen.count(k) / len(seen):.0%}" for k in sorted(set(seen))) if seen else "-"
            p(f"{n:>2} | " + " | ".join(cells) + f" | {share}")

    p()
    p("Targets (ratios of the figures above):")
    has_ls = any(t.kind == "llama-server" for t in targets)
    for phase in args.phases:
        for n in args.n:
            d = agg(phase, "llmchat default", n)
            f1, f2 = agg(phase, "llmchat 1", n), agg(phase, "llmchat 2", n)
            line = f"  {phase:<11} N={n}: default/best fixed {d / max(f1, f2):.2f}"
            if phase == "quiet":
                line += " (>= 0.95)"
            elif phase == "busy":
                line += f"; default/1 thread {d / f1:.2f} (>= 0.95)"
            else:
                line += " (>= 1.15)"
            if has_ls:
                ls = max(agg(phase, "llama-server 1", n), agg(phase, "llama-server 2", n))
                line += f"; default/llama-server best fixed {d / ls:.2f}" + (" (>= 1.1)" if phase == "alternating" else "")
                if n == max(args.n):
                    ls_p95 = min(p95(phase, "llama-server 1", n), p95(phase, "llama-server 2", n))
                    line += f"; TTFT p95 default/llama-server {p95(phase, 'llmchat default', n) / ls_p95:.2f} (<= 0.5)"
            p(line)
    if any(t.name == "baseline default" for t in targets):
        p(f"  this checkout's default / the baseline's default ({args.baseline}):")
        for phase in args.phases:
            ratios = [f"N={n} {agg(phase, 'llmchat default', n) / agg(phase, 'baseline default', n):.2f}" for n in args.n]
            p(f"    {phase:<11} " + "  ".join(ratios))
    if floors and has_ls:
        p("  the floor under TTFT: raw prefill (low-level API, no server) of N prompts' new tokens in one llama_decode:")
        for threads, (n, t, ms) in sorted(floors.items()):
            ls_p95 = min(p95("quiet", "llama-server 1", n), p95("quiet", "llama-server 2", n))
            p(f"    threads={threads}: {n} x {t} tokens {ms:5.0f} ms = {ms / ls_p95:.2f} x llama-server's best p95 ({ls_p95:.0f} ms)")
    if raw:
        p("  sampling: over the socket with the settings above (fixed threads) / raw batched greedy decoding:")
        p("    decoding = tokens after every answer had its first / that span; raw of the same answer lengths;")
        p("    agg = all tokens incl. prompt evaluation (the columns above); raw of N answers of max_tokens")
        for (threads, n), runs in sorted(raw.items()):
            ours, same, full = (med(x[i] for x in runs) for i in range(3))
            target = "0.9" if n > 1 else "0.95"
            total = agg("quiet", f"llmchat {threads}", n)
            p(f"    threads={threads} N={n}: decoding {ours:6.1f} / {same:6.1f} = {ours / same:.2f} (>= {target});"
              f"  agg {total:6.1f} / {full:6.1f} = {total / full:.2f}")
    if not has_ls:
        p("  (llama-server not built: run bench/build_llama_server.sh for the llama-server columns)")


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of --rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every answer")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of each alternating run")
    parser.add_argument("--period", type=float, default=10.0, help="seconds busy, then seconds quiet, alternating")
    parser.add_argument("--greedy", action="store_true", help="temperature 0, no penalty (default: the server's defaults)")
    parser.add_argument("--no-raw", action="store_true", help="skip raw batched decoding")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of quiet before each run")
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. before a change) whose default runs too")
    parser.add_argument("--llama-server", type=Path, default=Path(os.environ.get("LLAMA_SERVER", DEFAULT_LLAMA_SERVER)))
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    if max(args.n) > 8:
        parser.error("both servers run 8 sequences at once")
    if args.greedy:
        ChatClient.config = GREEDY
    binary = args.llama_server if args.llama_server.exists() else shutil.which("llama-server")
    if binary is None:
        print(f"llama-server not found at {args.llama_server}: skipping it (build it with bench/build_llama_server.sh)")
    meter = LoadMeter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        targets: list = [LLMChatTarget(root, threads) for threads in (0, 1, 2)]
        if args.baseline:
            targets.append(LLMChatTarget(root, 0, args.baseline.resolve(), prefix="baseline"))
        if binary is not None:
            model = default_model_path()
            targets += [LlamaServerTarget(Path(binary), root, threads, model) for threads in (1, 2)]
        print(f"starting {len(targets)} servers (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        try:
            for t in targets:
                t.start()
            for t in targets:
                t.wait_ready()
            asyncio.run(bench(args, targets, meter))
        finally:
            for t in targets:
                t.stop()


if __name__ == "__main__":
    main()
