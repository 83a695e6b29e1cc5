"""Fan-out: M members in one room, one of them sends K Text frames; every member gets all K.

Prints frames delivered per second and the server's CPU per delivered frame, for

- `llmchat`: this checkout's real `jupyter server` (bench/classroom.py), M distinct users;
- `websockets`: the anchor, a `websockets` server (bench-only dependency) that relays
  each frame it receives to every connection with `websockets.broadcast`,

with the same clients (classroom.Member, which costs the bench little per frame), run
in turns. The server's CPU per frame is the figure that survives a shared machine best.

    .venv/bin/python bench/fanout.py --members 500 --messages 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from classroom import Member, cpu_seconds, join_all, logins, member, quiet, serve, until
from support.servers import free_port, wait_listening

ROOM = "fan"


def text_frame(k: int, size: int) -> str:
    return json.dumps({"type": "Text", "id": f"t{k}", "room": ROOM, "data": {"content": f"{k} " + "x" * size}}, separators=(",", ":"))


async def deliver(members: list[Member], sender: Member, pid: int, messages: int, size: int, interval: float) -> tuple[float, float]:
    """Send `messages` frames from `sender`, all at once or one per `interval` s;
    (frames delivered per second, server CPU us per frame)."""
    await quiet(members, 0.5)
    before = [m.types.get(b"Text", 0) for m in members]
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    for k in range(messages):
        sender.send(text_frame(k, size))
        if interval:
            await asyncio.sleep(max(0.0, t0 + (k + 1) * interval - time.perf_counter()))
    done = lambda: all(m.types.get(b"Text", 0) - b >= messages for m, b in zip(members, before))  # noqa: E731
    assert await until(done, 120, 0.005), "not every member got every message"
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    frames = len(members) * messages
    return frames / elapsed, cpu / frames * 1e6


async def llmchat_round(server, heads, messages: int, size: int, interval: float) -> tuple[float, float]:
    members = await join_all(server, heads, ROOM)
    try:
        return await deliver(members, members[0], server.process.pid, messages, size, interval)
    finally:
        for m in members:
            m.close()
        await asyncio.sleep(1)


async def anchor_round(port: int, pid: int, n: int, messages: int, size: int, interval: float) -> tuple[float, float]:
    members = [await member(port, {}, path="/") for _ in range(n)]
    try:
        return await deliver(members, members[0], pid, messages, size, interval)
    finally:
        for m in members:
            m.close()
        await asyncio.sleep(1)


async def anchor_server(port: int) -> None:
    """The anchor: relay every frame to every connection with websockets.broadcast."""
    from websockets.asyncio.server import broadcast, serve as ws_serve
    from websockets.exceptions import ConnectionClosed

    connections = set()

    async def handler(ws) -> None:
        connections.add(ws)
        try:
            async for message in ws:
                broadcast(connections, message)
        except ConnectionClosed:  # the bench's clients close without a close frame
            pass
        finally:
            connections.discard(ws)

    async with ws_serve(handler, "127.0.0.1", port, compression=None, max_size=None, ping_interval=None):
        await asyncio.get_running_loop().create_future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=100, help="characters of each message's content")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, nargs="+", default=[0.0, 0.01],
                        help="seconds between the sender's messages: 0 = a burst; 0.01 = one every 10 ms")
    parser.add_argument("--anchor-port", type=int, help=argparse.SUPPRESS)  # run as the anchor server
    args = parser.parse_args()
    if args.anchor_port:
        asyncio.run(anchor_server(args.anchor_port))
        return
    port = free_port()
    anchor = subprocess.Popen([sys.executable, __file__, "--anchor-port", str(port)])
    results: dict[tuple[str, float], list[tuple[float, float]]] = {}
    try:
        assert wait_listening(port, time.monotonic() + 30), "the anchor server did not start"
        with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), args.members) as server:
            server.wait_for_model()  # its loading would be counted as the server's CPU
            heads = logins(server, args.members)
            for r in range(args.rounds):
                for interval in args.interval:
                    runs = {
                        "websockets": lambda: anchor_round(port, anchor.pid, args.members, args.messages, args.size, interval),
                        "llmchat": lambda: llmchat_round(server, heads, args.messages, args.size, interval),
                    }
                    for name, run in runs.items():
                        results.setdefault((name, interval), []).append(asyncio.run(run()))
                    print(f"round {r + 1}, {_label(interval)}: " + ", ".join(
                        f"{name} {results[name, interval][-1][0]:,.0f} frames/s ({results[name, interval][-1][1]:.1f} us CPU/frame)"
                        for name in runs))
    finally:
        anchor.kill()
        anchor.wait()
    print(f"{args.members} members x {args.messages} messages of {args.size} characters, medians of {args.rounds} rounds:")
    for interval in args.interval:
        rate = {name: statistics.median(r for r, _ in results[name, interval]) for name in ("llmchat", "websockets")}
        cost = {name: statistics.median(u for _, u in results[name, interval]) for name in ("llmchat", "websockets")}
        print(f"  {_label(interval)}:")
        for name in rate:
            print(f"    {name:>10}: {rate[name]:>9,.0f} frames/s  {cost[name]:>6.1f} us server CPU per frame")
        print(f"    llmchat / websockets: {rate['llmchat'] / rate['websockets']:.2f} x the rate, "
              f"{cost['llmchat'] / cost['websockets']:.2f} x the CPU per frame")


def _label(interval: float) -> str:
    return "burst" if not interval else f"one message every {interval * 1000:g} ms"


if __name__ == "__main__":
    main()
