"""One room across two servers through Redis, beside the same room on one server.

Starts a `redis-server` and real `jupyter server`s (tests/support/servers.py, tests/support/redis_server.py)
on 127.0.0.1, then, for each N:

- **memory**: one server with the memory bus, 2N members in one room;
- **redis**: two servers with `room_bus = "redis://…"`, N members on each, in one room.

Senders (one member per server) post `Text`s carrying the time they were sent, first at a
steady rate (latency: `--deliveries` per second over all members, kept below what the one
client process can read, so its own backlog is not what is timed), then as fast as they
can (throughput). Every member reads every
frame; each delivery's latency is its receive time minus the send time (one clock: all
clients are in this process). The three servers run side by side and the two setups take
turns, `--repeat` times each, in a new room each time (a busy machine slows both alike).
Prints the medians over the repeats of p50/p99 latency and burst deliveries/s of both
setups, and their ratio (target: cross-server p99 <= 2x single server).

    .venv/bin/python bench/redis_bus.py --n 50 100 200 --deliveries 1000 --seconds 5 --burst 100 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import tornado.httpclient
import tornado.websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.redis_server import running_redis  # noqa: E402
from support.servers import ServerProcess, running_server  # noqa: E402



class Members:
    """Every member's socket and the latency of every delivery of a timed Text."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.sockets: list[tornado.websocket.WebSocketClientConnection] = []
        self.latencies: list[float] = []
        self.delivered = 0
        self.frames = 0  # every frame received
        self.joined = 0
        self.readers: list[asyncio.Future[None]] = []

    async def add(self, server: ServerProcess, n: int) -> None:
        for i in range(n):
            request = tornado.httpclient.HTTPRequest(server.ws_url, headers={"Authorization": f"token {server.token}"})
            ws = await tornado.websocket.websocket_connect(request, subprotocols=["llmchat.v1"], max_message_size=64 << 20)
            await ws.write_message(json.dumps({"type": "Join", "id": f"j{i}", "room": self.room, "data": {}}))
            self.sockets.append(ws)
            self.readers.append(asyncio.ensure_future(self._read(ws)))

    async def _read(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        while (raw := await ws.read_message()) is not None:
            now = time.perf_counter()
            self.frames += 1
            if raw.startswith('{"type":"Joined"'):
                self.joined += 1
            if '"Text"' in raw and '"sent=' in raw:
                frame = json.loads(raw)
                self.latencies.append(now - float(frame["data"]["content"][5:]))
                self.delivered += 1

    async def settled(self, timeout: float = 120.0) -> None:
        """Every member joined and no frame arrived for half a second (the Presences are out)."""
        deadline = time.perf_counter() + timeout
        last = -1
        while time.perf_counter() < deadline and (self.joined < len(self.sockets) or self.frames != last):
            last = self.frames
            await asyncio.sleep(0.5)

    async def quiet(self, expected: int, timeout: float = 60.0) -> None:
        deadline = time.perf_counter() + timeout
        while self.delivered < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for ws in self.sockets:
            ws.close()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def post(ws: tornado.websocket.WebSocketClientConnection, room: str) -> None:
    await ws.write_message(json.dumps({"type": "Text", "room": room, "data": {"content": f"sent={time.perf_counter()}"}}))


async def run(
    servers: list[ServerProcess], per_server: int, rate: float, seconds: float, burst: int, room: str
) -> dict[str, float]:
    members = Members(room)
    for server in servers:
        await members.add(server, per_server)
    await members.settled()  # measured from here: the joins and their Presences are done
    total = per_server * len(servers)
    senders = [members.sockets[i * per_server] for i in range(len(servers))]  # one on each server
    count = int(rate * seconds)
    for i in range(count):  # steady: latency
        await post(senders[i % len(senders)], room)
        await asyncio.sleep(1 / rate)
    await members.quiet(count * total)
    steady = sorted(members.latencies)
    members.latencies, members.delivered = [], 0
    start = time.perf_counter()
    for i in range(burst):  # as fast as the senders can: throughput
        await post(senders[i % len(senders)], room)
    await members.quiet(burst * total)
    elapsed = time.perf_counter() - start
    await members.close()
    return {
        "p50_ms": statistics.median(steady) * 1000,
        "p99_ms": steady[int(len(steady) * 0.99) - 1] * 1000,
        "received": len(steady) / (count * total),
        "burst_per_s": members.delivered / elapsed,
        "burst_received": members.delivered / (burst * total),
    }


class Receiver:
    """A member on the receiving bus: records when each frame reached its queue."""

    def __init__(self, name: str) -> None:
        from jupyter_llmchat.server.connection import Identity

        self.client_id, self.user, self.rooms = name, Identity(name, name), set()
        self.arrived: list[float] = []

    def send(self, frame: bytes) -> None:
        self.arrived.append(time.perf_counter())


async def redis_hop(url: str, count: int) -> tuple[float, float]:
    """The Redis hop alone, in one process: `emit` on one bus until the frame is queued to a
    member of another bus (script + publish + subscription + fan-out). (p50, p99) in ms."""
    from jupyter_llmchat import protocol
    from jupyter_llmchat.room_bus.redis_bus import RedisRoomBus

    sender, receiver = RedisRoomBus(url, 4096, 300), RedisRoomBus(url, 4096, 300)
    member = Receiver("hop")
    await receiver.join("hop", member)
    latencies = []
    text = protocol.Text("m-hop", "x" * 40, protocol.Author("a", "A", "user"), "2026-01-01T00:00:00.000Z")
    for _ in range(count):
        before, sent = len(member.arrived), time.perf_counter()
        await sender.emit("hop", "Text", text)
        while len(member.arrived) == before:
            await asyncio.sleep(0)
        latencies.append(member.arrived[-1] - sent)
    await sender.close(), await receiver.close()
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000


def server_args(tmp: Path, members: int, bus: str | None) -> list[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    args = [f"--LLMChat.history_path={tmp / 'h.sqlite'}", f"--LLMChat.max_connections={members + 10}",
            "--LLMChat.rate_limit=0", "--LLMChat.parallel=1", "--LLMChat.n_ctx=512", "--LLMChat.n_threads=1"]
    return args + ([f"--LLMChat.room_bus={bus}"] if bus else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[50, 100], help="members per server (redis); 2N on one server (memory)")
    parser.add_argument("--deliveries", type=float, default=1000.0, help="deliveries per second in the steady phase (Texts/s x members)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--burst", type=int, default=200, help="Texts sent back to back in the throughput phase")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each setup, taking turns (medians printed)")
    args = parser.parse_args()
    print(f"steady phase: {args.deliveries:g} deliveries/s for {args.seconds:g} s; burst: {args.burst} Texts; medians of {args.repeat} runs")
    print(f"{'setup':>22} {'members':>8} {'p50 ms':>8} {'p99 ms':>8} {'burst deliveries/s':>19} {'received':>9}")
    with tempfile.TemporaryDirectory() as tmp, running_redis(Path(tmp)) as redis:
        p50, p99 = asyncio.run(redis_hop(redis.url, 2000))
    print(f"{'the Redis hop alone':>22} {'':>8} {p50:>8.2f} {p99:>8.2f}   (emit on one bus -> queued on another, one process)")
    for n in args.n:
        runs: dict[str, list[dict[str, float]]] = {"memory, 1 server": [], "redis, 2 servers": []}
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            root = Path(tmp)
            redis = stack.enter_context(running_redis(root / "redis"))
            one = stack.enter_context(running_server(root / "one", server_args(root / "one", 2 * n, None)))
            shared = [
                stack.enter_context(running_server(root / name, server_args(root / name, n, redis.url))) for name in ("a", "b")
            ]
            for turn in range(args.repeat):
                rate = args.deliveries / (2 * n)
                runs["memory, 1 server"].append(asyncio.run(run([one], 2 * n, rate, args.seconds, args.burst, f"m{turn}")))
                runs["redis, 2 servers"].append(asyncio.run(run(shared, n, rate, args.seconds, args.burst, f"r{turn}")))
        results = {
            setup: {name: statistics.median(figures[name] for figures in each) for name in each[0]}
            for setup, each in runs.items()
        }
        for setup, figures in results.items():
            print(
                f"{setup:>22} {2 * n:>8} {figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f} "
                f"{figures['burst_per_s']:>19.0f} {min(figures['received'], figures['burst_received']):>9.3f}"
            )
        memory, shared = results["memory, 1 server"], results["redis, 2 servers"]
        print(f"{'ratio redis / memory':>22} {'':>8} {shared['p50_ms'] / memory['p50_ms']:>8.2f} "
              f"{shared['p99_ms'] / memory['p99_ms']:>8.2f} {shared['burst_per_s'] / memory['burst_per_s']:>19.2f}")


if __name__ == "__main__":
    main()
