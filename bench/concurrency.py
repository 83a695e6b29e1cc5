"""Concurrent room generations over the WebSocket, beside raw batched decoding.

Starts one real `jupyter server` with the extension on 127.0.0.1 (tests/support/servers.py), opens
N WebSocket clients, each joined to its *own* fresh room (N clients, N rooms: every
answer has the same short context, system prompt + prompt, and nothing but the system
prompt is shared between them), and measures, for N = 1, 2, 4, 8:

- **concurrent**: the N `Generate`s sent at once (one per client and room);
- **one at a time**: the same N requests, each sent when the previous answer ended
  (what a server without batching gives N users);
- **raw batched**: `bench/engine_batch.py`'s `raw_batched_tokens_per_second` (N sequences
  decoded together with the low-level API, no server), run in this process while the
  server is idle, with about as many context tokens as the server's prompts: the limit.

Then two single-request measurements:

- **second turn with a long history**: a fresh room gets ~1,500 tokens of history (`Text`
  messages), then two `Generate`s. The first is cold: the room's history is in no KV
  cache (the content is unique to the room; only the system prompt is shared, as always).
  The second reuses the room's KV prefix (`cache_key` = the room). The cache is matched by
  content over every slot, so "another room" only makes a request cold if its history
  differs: each round uses a room with its own text. Cached and evaluated prompt tokens
  are read from `Stats` around each request.
- **busy core**: one stream, with another process spinning on one core (`while 1: pass`)
  or not, interleaved.

Everything: temperature 0, repeat_penalty 1.0, max_tokens 64, server defaults otherwise
(n_threads=1, n_batch=512, parallel=8, default system prompt) except rate_limit=0
(every client is the same user). Configurations are interleaved round by round (and their
order rotated) so that load from other processes spreads over all of them; rates are
medians over rounds, time to first token (TTFT: `Generate` sent -> first `Token` with
text received) is pooled over rounds. The CPU that other processes used meanwhile is
measured (psutil) and printed, and so is the CPU time per generated token of the
server's decode thread, its other threads and this client (a view the load barely moves).
Loopback only; 5-7 minutes with the defaults (docs/performance.md has results).

    .venv/bin/python bench/concurrency.py                   # everything, 5 rounds (5-7 min)
    .venv/bin/python bench/concurrency.py --rounds 2 --n 1 8 --skip history busy

Rates: "decode" = tokens after each stream's first, over the span from the first token of
any stream to the last token of any stream (comparable to raw, which excludes prefill);
"end-to-end" = all tokens over `Generate` sent -> last token (includes prompt evaluation).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

try:  # psutil comes with the test extra (ipykernel); without it no CPU figures are printed
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

from engine_batch import busy_core, raw_batched_tokens_per_second  # noqa: E402
from support.servers import running_server  # noqa: E402

# Prompts whose greedy answers (with the default system prompt) run past 64 tokens: this
# small model answers most requests in one sentence (each of these reached 64 tokens with
# 6 random tags of 6, batched 8 at a time and one at a time). Each request gets a unique "(tag) "
# in front (`prompt_for`): the KV cache is matched by content across rooms, so without it
# a prompt already answered in an earlier run would be served from the cache and its TTFT
# would be flattered. Batching can change a greedy answer slightly (other matmul shapes),
# so the table lists the answer lengths seen.
PROMPTS = [
    "Tell the history of the bicycle, from the first models to today.",
    "Tell the history of the radio, from the first sets to today.",
    "Tell the history of the camera, from the first models to today.",
    "Tell the history of the piano, from the first instruments to today.",
    "Tell the history of the sewing machine, from the first models to today.",
    "Tell the history of the microscope, from the first models to today.",
    "Tell the history of the radio and the camera, from the first models to today.",
    "Tell the history of the steam engine, from the first models to today.",
]
_TAGS = itertools.count(101)


def prompt_for(i: int) -> str:
    """Request `i`'s prompt, made unique (see PROMPTS)."""
    return f"({next(_TAGS)}) {PROMPTS[i % len(PROMPTS)]}"
CONFIG = {"temperature": 0, "repeat_penalty": 1.0}
HISTORY_PROMPTS = (
    "Summarise the notes above in a few sentences.",
    "Now list the three most important points from the notes, with a reason for each.",
)
_WORDS = (
    "river mountain garden window letter market teacher engine harbor village winter "
    "summer morning evening station library bridge forest island kitchen ladder lantern "
    "meadow orchard pocket ribbon saddle tunnel valley violin wagon basket candle castle "
    "copper desert feather glacier hammer jacket kettle marble needle painter planet "
    "quarry rocket silver thunder pepper blanket compass anchor"
).split()
_VERBS = "carried found painted opened counted watched mended followed repaired described".split()
_ADJ = "quiet bright narrow heavy gentle ancient crooked golden rusty patient".split()


# ---------------------------------------------------------------------------- the client


@dataclass
class Stream:
    """One `Generate`, as its client saw it."""

    sent: float
    done: asyncio.Future
    message_id: str | None = None
    first: float | None = None
    final: float | None = None
    completion: int = 0
    prompt_tokens: int = 0
    finish: str = ""
    truncated: bool = False  # the prompt was cut to fit
    error: str | None = None  # why it ended with "error", or was refused ("<code>: <message>")
    server_ttft: float = 0.0  # ms, the engine's own (submit -> first token sampled)
    arrivals: list[float] = field(default_factory=list)  # when each Token with text came

    @property
    def ttft(self) -> float:
        return self.first - self.sent

    @property
    def rate(self) -> float:
        """Decode tokens/s of this stream: tokens after the first over first -> last."""
        return (self.completion - 1) / max(self.final - self.first, 1e-9)


# Request ids are unique across clients: every client of one token is one user, and a
# Generate whose id that user already sent is a retry (answered with the first Ack).
_REQUEST_IDS = itertools.count()


@dataclass
class Client:
    """One WebSocket connection; a reader task routes frames to streams and replies."""

    config: ClassVar[dict] = CONFIG  # the sampling of every Generate; a subclass may set its own

    conn: object
    streams: dict[str, Stream] = field(default_factory=dict)  # by request id
    by_message: dict[str, Stream] = field(default_factory=dict)
    replies: dict[str, asyncio.Future] = field(default_factory=dict)
    refused: list[dict] = field(default_factory=list)  # the data of each Error that answered a Generate
    ids: itertools.count = field(default_factory=lambda: _REQUEST_IDS)

    @classmethod
    async def connect(cls, url: str, token: str | None = None, headers: dict[str, str] | None = None) -> Client:
        """A socket of the token's user, or with a login's `headers` (a user of its own)."""
        req = HTTPRequest(url, headers=headers or {"Authorization": f"token {token}"})
        conn = await websocket_connect(req, subprotocols=["llmchat.v1"], max_message_size=16 << 20)
        welcome = json.loads(await conn.read_message())
        assert welcome["type"] == "Welcome", welcome
        client = cls(conn)
        client.reader = asyncio.ensure_future(client._read())
        return client

    async def _read(self) -> None:
        while True:
            msg = await self.conn.read_message()
            now = time.perf_counter()
            if msg is None:
                return
            frame = json.loads(msg)
            kind, data, rid = frame["type"], frame.get("data") or {}, frame.get("id")
            if kind == "Token":
                s = self.by_message.get(data["message_id"])
                if s is None:
                    continue
                if data["text"]:
                    s.arrivals.append(now)
                    s.first = s.first or now
                if data["is_final"]:
                    s.final = now
                    s.first = s.first or now
                    s.completion = data["usage"]["completion_tokens"]
                    s.prompt_tokens = data["usage"]["prompt_tokens"]
                    s.finish = data["finish_reason"]
                    s.truncated = data.get("truncated", False)
                    s.error = data.get("error")
                    s.server_ttft = data["timings"]["ttft_ms"]
                    if not s.done.done():
                        s.done.set_result(s)
            elif kind == "Ack" and rid in self.streams:
                s = self.streams.pop(rid)
                s.message_id = data["message_id"]
                self.by_message[s.message_id] = s
            elif kind == "Error":
                err = RuntimeError(f"server error: {data}")
                s = self.streams.pop(rid, None)
                if s is not None:
                    s.error = f"{data['code']}: {data['message']}"
                    self.refused.append(data)
                fut = self.replies.pop(rid, None) or getattr(s, "done", None)
                if fut is not None and not fut.done():
                    fut.set_exception(err)
                else:
                    print(f"unexpected {frame}", file=sys.stderr)
            elif rid in self.replies:
                fut = self.replies.pop(rid)
                if not fut.done():
                    fut.set_result(frame)

    def _send(self, kind: str, room: str | None, data: dict, rid: str) -> None:
        frame = {"type": kind, "id": rid, "data": data}
        if room is not None:
            frame["room"] = room
        self.conn.write_message(json.dumps(frame))

    async def request(self, kind: str, room: str | None = None, data: dict | None = None) -> dict:
        rid = f"{kind}-{next(self.ids)}"
        fut = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        self._send(kind, room, data or {}, rid)
        return await asyncio.wait_for(fut, 120)

    def text(self, room: str, content: str) -> None:
        self._send("Text", room, {"content": content}, f"t-{next(self.ids)}")

    def generate(self, room: str | None, prompt: str, max_tokens: int, seed: int | None = None) -> Stream:
        """Send a `Generate` (`room` None: a private answer); await the Stream's `done`."""
        rid = f"g-{next(self.ids)}"
        s = Stream(time.perf_counter(), asyncio.get_running_loop().create_future())
        s.done.add_done_callback(lambda f: f.cancelled() or f.exception())  # a refusal is counted, not logged
        self.streams[rid] = s
        config = {**self.config, "max_tokens": max_tokens, **({} if seed is None else {"seed": seed})}
        self._send("Generate", room, {"prompt": prompt, "config": config}, rid)
        return s

    async def model_stats(self) -> dict:
        return (await self.request("Stats"))["data"]["model"]

    def close(self) -> None:
        self.conn.close()
        self.reader.cancel()


# ---------------------------------------------------------------------------- load


class LoadMeter:
    """CPU used by other processes (not this one or its children) during marked spans."""

    def __init__(self) -> None:
        self.me = psutil.Process() if psutil else None
        self.spans: list[tuple[str, float, float]] = []  # (label, seconds, other cpu-seconds)

    def _snap(self) -> tuple[float, float, float]:
        t = time.monotonic()
        if psutil is None:
            return t, 0.0, 0.0
        ct = psutil.cpu_times()
        busy = sum(ct) - ct.idle - getattr(ct, "iowait", 0.0) - getattr(ct, "guest", 0.0) - getattr(ct, "guest_nice", 0.0)
        ours = 0.0
        for p in [self.me, *self.me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                c = p.cpu_times()
                ours += c.user + c.system
        return t, busy, ours

    @contextlib.contextmanager
    def span(self, label: str):
        a = self._snap()
        yield
        b = self._snap()
        self.spans.append((label, b[0] - a[0], (b[1] - a[1]) - (b[2] - a[2])))

    def cores(self, match: str = "") -> float:
        """Average cores used by others over the spans whose label contains `match`."""
        spans = [(t, c) for label, t, c in self.spans if match in label]
        total = sum(t for t, _ in spans)
        return max(0.0, sum(c for _, c in spans) / total) if total else 0.0


class CpuMeter:
    """CPU seconds of the server's decode thread, its other threads, and this client."""

    def __init__(self, server_pid: int) -> None:
        if psutil is None:
            self.snap = lambda: (0.0, 0.0, 0.0)
            return
        self.server = psutil.Process(server_pid)
        self.me = psutil.Process()
        # The decode thread loaded the model and ran the warm-up: the busiest thread.
        self.decode_tid = max(self.server.threads(), key=lambda t: t.user_time + t.system_time).id

    def snap(self) -> tuple[float, float, float]:
        decode = other = 0.0
        for t in self.server.threads():
            if t.id == self.decode_tid:
                decode += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
        c = self.me.cpu_times()
        return decode, other, c.user + c.system


# ---------------------------------------------------------------------------- runs


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a small sample."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))]


async def join_rooms(clients: list[Client], rooms: list[str]) -> None:
    await asyncio.gather(*(c.request("Join", room) for c, room in zip(clients, rooms)))


async def leave_rooms(clients: list[Client], rooms: list[str]) -> None:
    await asyncio.gather(*(c.request("Leave", room) for c, room in zip(clients, rooms)))


async def run_concurrent(clients: list[Client], rooms: list[str], max_tokens: int) -> dict:
    streams = [c.generate(room, prompt_for(i), max_tokens) for i, (c, room) in enumerate(zip(clients, rooms))]
    await asyncio.wait_for(asyncio.gather(*(s.done for s in streams)), 300)
    span_decode = max(s.final for s in streams) - min(s.first for s in streams)
    span_e2e = max(s.final for s in streams) - min(s.sent for s in streams)
    return summarise(streams, span_decode, span_e2e)


async def run_sequential(clients: list[Client], rooms: list[str], max_tokens: int) -> dict:
    streams = []
    for i, (c, room) in enumerate(zip(clients, rooms)):
        s = c.generate(room, prompt_for(i), max_tokens)
        await asyncio.wait_for(s.done, 300)
        streams.append(s)
    span_decode = sum(s.final - s.first for s in streams)
    span_e2e = sum(s.final - s.sent for s in streams)
    return summarise(streams, span_decode, span_e2e)


def summarise(streams: list[Stream], span_decode: float, span_e2e: float) -> dict:
    return {
        "clean": all(s.finish == "length" for s in streams),
        "agg_decode": sum(s.completion - 1 for s in streams) / span_decode,
        "agg_e2e": sum(s.completion for s in streams) / span_e2e,
        "per_stream": statistics.median(s.rate for s in streams),
        "ttft": [s.ttft * 1000 for s in streams],
        "server_ttft": [s.server_ttft for s in streams],
        "tokens": [s.completion for s in streams],
        "prompt_tokens": [s.prompt_tokens for s in streams],
    }


def history_text(room_no: int, n_messages: int, words_per_message: int) -> list[str]:
    """Notes unique to one room (its number leads the first message)."""
    rng = random.Random(room_no)
    out = []
    for k in range(n_messages):
        sentences = []
        n = 0
        while n < words_per_message:
            s = (
                f"The {rng.choice(_ADJ)} {rng.choice(_WORDS)} near the {rng.choice(_WORDS)} "
                f"{rng.choice(_VERBS)} {rng.randint(2, 99)} {rng.choice(_WORDS)}s before the "
                f"{rng.choice(_ADJ)} {rng.choice(_WORDS)}."
            )
            sentences.append(s)
            n += len(s.split())
        out.append(f"Notes {room_no}.{k + 1}: " + " ".join(sentences))
    return out


async def history_round(client: Client, round_no: int, n_messages: int, words: int, max_tokens: int) -> dict:
    room = f"hist-{os.getpid()}-{round_no}"
    await client.request("Join", room)
    for text in history_text(1000 + round_no, n_messages, words):
        client.text(room, text)
    await client.request("Ping")  # the Texts are processed in order before this reply
    out = {}
    for label, prompt in zip(("cold", "warm"), HISTORY_PROMPTS):
        before = await client.model_stats()
        s = client.generate(room, prompt, max_tokens)
        await asyncio.wait_for(s.done, 300)
        after = await client.model_stats()
        out[label] = {
            "ttft": s.ttft * 1000,
            "prompt_tokens": s.prompt_tokens,
            "cached": after["prompt_tokens_cached"] - before["prompt_tokens_cached"],
            "evaluated": after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"],
        }
    await client.request("Leave", room)
    return out


async def bench(args: argparse.Namespace, server, meter: LoadMeter) -> None:
    t_start = time.monotonic()
    url, token = server.ws_url, server.token
    max_n = max(args.n)
    clients = [await Client.connect(url, token) for _ in range(max_n)]
    tag = itertools.count()

    def fresh_rooms(n: int) -> list[str]:
        k = next(tag)
        return [f"b{os.getpid()}-{k}-{i}" for i in range(n)]

    # Warm-up: the system prompt enters the KV cache (every room shares it, as in use),
    # the first decodes allocate, and the engine's output grouping learns each N.
    for n in sorted(set(args.n)):
        rooms = fresh_rooms(n)
        await join_rooms(clients[:n], rooms)
        warm = await run_concurrent(clients[:n], rooms, 16)
        await leave_rooms(clients[:n], rooms)
    context_tokens = int(statistics.median(warm["prompt_tokens"]))
    cpu = CpuMeter(server.process.pid)

    conc: dict[int, list[dict]] = {n: [] for n in args.n}
    seq: dict[int, list[dict]] = {n: [] for n in args.n}
    raw: dict[int, list[float]] = {n: [] for n in args.n}
    hist: list[dict] = []
    busy: dict[bool, list[dict]] = {False: [], True: []}
    modes = ["concurrent", "sequential", "raw"]
    for r in range(args.rounds):
        order = modes[r % 3 :] + modes[: r % 3]
        for n in args.n:
            if "concurrency" in args.skip:
                break
            for mode in order:
                with meter.span(f"conc {mode} N={n} r={r};"):
                    if mode == "raw":
                        raw[n].append(
                            await asyncio.to_thread(
                                raw_batched_tokens_per_second, n, args.tokens, args.threads, context_tokens=context_tokens
                            )
                        )
                        continue
                    rooms = fresh_rooms(n)
                    await join_rooms(clients[:n], rooms)
                    runner = run_concurrent if mode == "concurrent" else run_sequential
                    c0 = cpu.snap()
                    res = await runner(clients[:n], rooms, args.tokens)
                    c1 = cpu.snap()
                    n_tok = sum(res["tokens"])
                    res["cpu_ms"] = [(b - a) * 1000 / n_tok for a, b in zip(c0, c1)]
                    (conc if mode == "concurrent" else seq)[n].append(res)
                    await leave_rooms(clients[:n], rooms)
        if "history" not in args.skip and r < args.history_rounds:
            with meter.span("history"):
                hist.append(await history_round(clients[0], r, args.history_messages, args.history_words, args.tokens))
        if "busy" not in args.skip:
            for b in (r % 2 == 0, r % 2 == 1):
                with busy_core(b), meter.span(f"busy={b}"):
                    rooms = fresh_rooms(1)
                    await join_rooms(clients[:1], rooms)
                    res = await run_concurrent(clients[:1], rooms, args.tokens)
                    await leave_rooms(clients[:1], rooms)
                    res["raw"] = await asyncio.to_thread(
                        raw_batched_tokens_per_second, 1, args.tokens, args.threads, context_tokens=context_tokens
                    )
                    busy[b].append(res)
        print(f"  round {r + 1}/{args.rounds} done at {time.monotonic() - t_start:.0f} s", flush=True)
    for c in clients:
        c.close()
    report(args, conc, seq, raw, hist, busy, meter, context_tokens, time.monotonic() - t_start)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def clean(runs: list[dict]) -> list[dict]:
    """Runs in which every answer reached max_tokens (all of them if there is none)."""
    ok = [r for r in runs if r["clean"]]
    return ok or runs


def report(args, conc, seq, raw, hist, busy, meter: LoadMeter, context_tokens: int, elapsed: float) -> None:
    p = print
    p()
    p(f"jupyter-llmchat concurrency bench: n_threads={args.threads} parallel=8 n_batch=512 max_tokens={args.tokens} "
      f"temperature=0 repeat_penalty=1.0; {args.rounds} rounds, {elapsed:.0f} s")
    p(f"machine: {os.cpu_count()} cores; CPU used by other processes (not this bench, its server, raw runs or spinner): "
      f"{meter.cores():.2f} cores on average, {meter.cores('conc'):.2f} during the concurrency part; "
      f"load average now {os.getloadavg()[0]:.2f}")
    if any(conc.values()):
        p()
        p(f"N clients, N rooms (one each); prompts of ~{context_tokens} tokens of which the system prompt is cached.")
        p("tok/s: medians over rounds in which every answer reached max_tokens; TTFT ms: pooled over all rounds")
        p("(srv = the engine's own ttft_ms, from submit). conc = N Generates at once; seq = the same N one at a time;")
        p("raw = engine_batch raw batched. agg = aggregate decode tok/s, e2e = all tokens / (Generate -> last token).")
        head = (f"{'N':>2} | {'conc agg':>8} {'e2e':>6} {'/stream':>7} {'TTFT p50':>8} {'p95':>6} {'srv p95':>7} | "
                f"{'seq agg':>7} {'e2e':>6} {'TTFT p50':>8} {'p95':>6} | {'raw agg':>7} | "
                f"{'conc/raw':>8} {'conc/seq':>8} {'e2e c/s':>7}")
        p(head)
        p("-" * len(head))
        for n in args.n:
            c, s, rw = clean(conc[n]), clean(seq[n]), raw[n]
            if not c:
                continue
            ct = [t for x in conc[n] for t in x["ttft"]]
            st = [t for x in seq[n] for t in x["ttft"]]
            sv = [t for x in conc[n] for t in x["server_ttft"]]
            ra = med(rw)
            ca, ce = med([x["agg_decode"] for x in c]), med([x["agg_e2e"] for x in c])
            sa, se = med([x["agg_decode"] for x in s]), med([x["agg_e2e"] for x in s])
            p(f"{n:>2} | {ca:8.1f} {ce:6.1f} {med([x['per_stream'] for x in c]):7.1f} {med(ct):8.0f} {pct(ct, 95):6.0f} "
              f"{pct(sv, 95):7.0f} | {sa:7.1f} {se:6.1f} {med(st):8.0f} {pct(st, 95):6.0f} | {ra:7.1f} | "
              f"{ca / ra:8.2f} {ca / sa:8.2f} {ce / se:7.2f}")
        p()
        p("conc agg / raw agg round by round (same-round ratios cancel slow drifts of the load;")
        p("* = an answer of that run ended before max_tokens, so fewer than N streams ran at the end):")
        p("(in brackets: cores used by other processes during that round's runs of N)")
        for n in args.n:
            ratios = [
                f"{c['agg_decode'] / r:.2f}{'' if c['clean'] else '*'} [{meter.cores(f'N={n} r={k};'):.1f}]"
                for k, (c, r) in enumerate(zip(conc[n], raw[n]))
            ]
            p(f"  N={n}: {'  '.join(ratios)}")
        lens = [sorted({x["tokens"][i] for x in conc[max(args.n)] + seq[max(args.n)]}) for i in range(max(args.n))]
        p(f"Answer lengths seen, by prompt: {lens}")
        p()
        p("CPU per generated token, ms (medians): the server's decode thread | its other threads | this client")
        for n in args.n:
            for label, runs in (("conc", conc[n]), ("seq ", seq[n])):
                if runs:
                    d, o, cl = (med([x["cpu_ms"][i] for x in runs]) for i in range(3))
                    p(f"  N={n} {label}: {d:6.2f} | {o:5.2f} | {cl:5.2f}   (raw: {1000 / med(raw[n]):6.2f} ms per token, one thread)")
    if hist:
        p()
        p(f"Second turn in a room with a ~1,500-token history ({len(hist)} rounds, a fresh room with its own text each;")
        p(f"other processes used {meter.cores('history'):.2f} cores meanwhile):")
        for label, what in (("cold", "turn 1, history not cached"), ("warm", "turn 2, room's KV prefix reused")):
            xs = [h[label] for h in hist]
            p(f"  {label} ({what}): TTFT median {med([x['ttft'] for x in xs]):6.0f} ms (all {[round(x['ttft']) for x in xs]}); "
              f"prompt {med([x['prompt_tokens'] for x in xs]):.0f} tokens, cached {med([x['cached'] for x in xs]):.0f}, "
              f"evaluated {med([x['evaluated'] for x in xs]):.0f}")
        ratio = med([h["warm"]["ttft"] for h in hist]) / med([h["cold"]["ttft"] for h in hist])
        p(f"  warm / cold TTFT = {ratio:.3f}   (target <= 0.25)")
    if busy[False] and busy[True]:
        p()
        q = med([x["per_stream"] for x in busy[False]])
        b = med([x["per_stream"] for x in busy[True]])
        rq = med([x["raw"] for x in busy[False]])
        rb = med([x["raw"] for x in busy[True]])
        p(f"Single stream over the WebSocket with another process spinning on one core, vs without ({len(busy[True])} rounds each):")
        p(f"  without  {q:6.1f} tok/s  (raw {rq:5.1f}); other processes used {meter.cores('busy=False'):.2f} cores")
        p(f"  spinner  {b:6.1f} tok/s  (raw {rb:5.1f}); other processes used {meter.cores('busy=True'):.2f} cores besides the spinner")
        p(f"  spinner / without = {b / q:.3f}   (target >= 0.6)")
    if any(conc.values()):
        p()
        p("Targets:")
        n_hi, n_lo = max(args.n), min(args.n)
        ca8 = med([x["agg_decode"] for x in clean(conc[n_hi])])
        p(f"  N={n_hi} aggregate over the WebSocket / raw batched N={n_hi}: {ca8 / med(raw[n_hi]):.3f}  (target >= 0.9)")
        if n_lo == 1:
            p(f"  N=1 over the WebSocket / raw N=1: {med([x['agg_decode'] for x in conc[1]]) / med(raw[1]):.3f}  (target >= 0.95)")
            single = med([t for x in conc[1] + seq[1] for t in x["ttft"]])
            p95 = pct([t for x in conc[n_hi] for t in x["ttft"]], 95)
            p(f"  p95 TTFT with {n_hi} at once / single-request TTFT (median {single:.0f} ms): {p95 / single:.2f}  (target <= 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every answer")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="n_threads of the server and of raw")
    parser.add_argument("--history-rounds", type=int, default=3)
    parser.add_argument("--history-messages", type=int, default=10)
    parser.add_argument("--history-words", type=int, default=110, help="words per history message")
    parser.add_argument("--skip", nargs="*", default=[], choices=["concurrency", "history", "busy"])
    args = parser.parse_args()
    if max(args.n) > 8:
        parser.error("the server runs with parallel=8")
    meter = LoadMeter()
    with tempfile.TemporaryDirectory() as tmp:
        server_args = [
            f"--LLMChat.n_threads={args.threads}",
            "--LLMChat.rate_limit=0",
            "--LLMChat.max_answers_per_user=0",  # one client asks for all N streams
            f"--LLMChat.history_path={tmp}/bench.sqlite",
        ]
        print(f"starting jupyter server (load average {os.getloadavg()[0]:.2f}) ...", flush=True)
        with running_server(Path(tmp), server_args) as server:
            server.wait_for_model(120)
            asyncio.run(bench(args, server, meter))


if __name__ == "__main__":
    main()
