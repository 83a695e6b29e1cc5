"""A class in one room under load: N distinct users joined, a broadcast every 100 ms.

Starts a real `jupyter server` (bench/classroom.py), logs N users in, opens one WebSocket
each and joins them all to one room. Prints

- the server's RSS per idle joined connection: (RSS with N idle joined sockets - RSS
  before them) / N, after a warm-up of a few connections opened and closed;
- then a REST post to the room every `--period` s for `--seconds` s: how many of the
  N x posts deliveries arrived (every member must get every broadcast), errors, the
  latency from post to delivery (p50, p99, max), frames/s and the server's CPU.

    .venv/bin/python bench/load.py --n 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import tornado.httpclient

from classroom import cpu_seconds, join_all, logins, quiet, rss_kib, serve, until
from support.servers import ServerProcess

ROOM = "load"


async def measure(server: ServerProcess, heads: list[dict[str, str]], seconds: float, period: float) -> None:
    pid = server.process.pid
    warm = await join_all(server, heads[:20], ROOM)  # first-use allocations, then gone
    for m in warm:
        m.close()
    await asyncio.sleep(2)
    before = rss_kib(pid)
    latencies: list[list[float]] = [[] for _ in heads]  # per member: post -> delivery of each broadcast

    def on_frame(i: int):
        def frame(payload: bytes) -> None:
            if payload.startswith(b'{"type":"Text"'):
                latencies[i].append(time.time() - float(json.loads(payload)["data"]["content"].split()[1]))
        return frame

    t0 = time.perf_counter()
    members = await join_all(server, heads, ROOM, on_frame)
    joined_in = time.perf_counter() - t0
    await quiet(members)
    idle = rss_kib(pid)
    n = len(members)
    print(f"joined {n} members (distinct users) in {joined_in:.1f} s")
    print(f"server RSS {before / 1024:.0f} MiB without them, {idle / 1024:.0f} MiB with {n} idle joined sockets: "
          f"{(idle - before) / n:.1f} KiB per idle connection (target <= 64)")

    client = tornado.httpclient.AsyncHTTPClient()
    url = f"{server.url}llmchat/api/rooms/{ROOM}/messages"
    headers = {"Authorization": f"token {server.token}", "Content-Type": "application/json"}
    statuses: list[int] = []
    posts = round(seconds / period)
    cpu0, start = cpu_seconds(pid), time.perf_counter()

    async def post(k: int) -> None:
        body = json.dumps({"content": f"b{k} {time.time():.6f}"})
        response = await client.fetch(url, method="POST", body=body, headers=headers, raise_error=False)
        statuses.append(response.code)

    pending = []
    for k in range(posts):
        pending.append(asyncio.ensure_future(post(k)))
        await asyncio.sleep(max(0.0, start + (k + 1) * period - time.perf_counter()))
    await asyncio.gather(*pending)
    await until(lambda: sum(map(len, latencies)) >= n * posts, 30)
    busy = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu0
    flat = sorted(x for each in latencies for x in each)
    complete = sum(len(each) == posts for each in latencies)
    errors = sum(m.types.get(b"Error", 0) for m in members)
    print(f"{posts} posts, one every {period * 1000:.0f} ms: HTTP {sorted(set(statuses))}, {len(flat)} of {n * posts} "
          f"deliveries, {complete} of {n} members got every one, {errors} Error frames, "
          f"{sum(m.closed.done() for m in members)} sockets closed")
    if flat:
        q = statistics.quantiles(flat, n=100)
        print(f"post -> delivery: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, max {flat[-1] * 1000:.0f} ms; "
              f"{len(flat) / busy:.0f} frames/s; server CPU {cpu / busy:.2f} cores; RSS after {rss_kib(pid) / 1024:.0f} MiB")
    for m in members:
        m.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=0.1)
    parser.add_argument("--server-arg", action="append", default=[], help="an extra server argument")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with serve(Path(tmp), args.n, *args.server_arg) as server:
            server.wait_for_model()
            heads = logins(server, args.n)
            asyncio.run(measure(server, heads, args.seconds, args.period))


if __name__ == "__main__":
    main()
