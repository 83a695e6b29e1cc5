"""A member that never reads: 64 MiB broadcast past it at 16 MiB/s.

Starts this checkout's real `jupyter server` (bench/classroom.py) with a probe hook
(bench/probe.py) that reports the bytes of all rooms' replay buffers. Members: one that
joins every room and then never reads again, `--readers` that read everything, and a
sender; the sender posts `--total` bytes in messages of `--size` bytes, spread over
`--rooms` rooms, at `--rate` bytes/s. Prints the growth of the server's RSS (its peak,
sampled every 10 ms, minus before), whether each reader got every message, whether the
non-reader was dropped, and the peak replay bytes beside `replay_memory`.

    .venv/bin/python bench/nonreader.py                         # one room, the defaults
    .venv/bin/python bench/nonreader.py --rooms 16 --server-arg=--LLMChat.replay_memory=16777216
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from classroom import Member, join_frame, logins, member, quiet, rss_kib, serve, until
from support.servers import ServerProcess

MIB = 1 << 20


async def run(server: ServerProcess, probe: Path, args: argparse.Namespace) -> None:
    pid = server.process.pid
    rooms = [f"r{i}" for i in range(args.rooms)]
    heads = logins(server, args.readers + 2)
    everyone: list[Member] = []
    for h in heads:
        m = await member(server.port, h)
        for i, room in enumerate(rooms):
            m.send(join_frame(room, i))
        everyone.append(m)
    assert await until(lambda: all(m.types.get(b"Joined", 0) == len(rooms) for m in everyone), 60)
    stalled, sender, readers = everyone[0], everyone[1], everyone[2:]
    stalled.pause()
    await quiet(readers, 0.5)
    base = rss_kib(pid)
    peak = base
    messages = args.total // args.size
    content = "x" * (args.size - 300)  # the rest of the frame: envelope, author, ids

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    before = [m.types.get(b"Text", 0) for m in readers]
    t0 = time.perf_counter()
    for k in range(messages):
        room = rooms[k % len(rooms)]
        sender.send(json.dumps({"type": "Text", "room": room, "data": {"content": f"{k} {content}"}}, separators=(",", ":")))
        await asyncio.sleep(max(0.0, t0 + (k + 1) * args.size / args.rate - time.perf_counter()))
    sent_in = time.perf_counter() - t0
    complete = await until(lambda: all(m.types.get(b"Text", 0) - b >= messages for m, b in zip(readers, before)), 60)
    await asyncio.sleep(0.5)
    sampler.cancel()
    stats = server.get("llmchat/api/stats")
    replay = json.loads(probe.read_text())
    got = [m.types.get(b"Text", 0) - b for m, b in zip(readers, before)]
    print(f"{messages} messages of {args.size // 1024} KiB ({messages * args.size / MIB:.0f} MiB) into {len(rooms)} room(s) "
          f"in {sent_in:.1f} s ({messages * args.size / sent_in / MIB:.1f} MiB/s)")
    print(f"  readers got {min(got)}..{max(got)} of {messages} each: {'every message' if complete else 'NOT every message'}; "
          f"Error frames {sum(m.types.get(b'Error', 0) for m in readers)}")
    print(f"  the non-reader: {'dropped (1008)' if stats['active_connections'] == len(everyone) - 1 else 'still connected'}; "
          f"connections now {stats['active_connections']} of {len(everyone)}")
    print(f"  server RSS {base / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB: +{(peak - base) / 1024:.1f} MiB (target < 32), "
          f"after {rss_kib(pid) / 1024:.0f} MiB")
    print(f"  replay buffers: peak {replay['replay_peak'] / MIB:.1f} MiB, now {replay['replay_bytes'] / MIB:.1f} MiB, "
          f"replay_memory {replay['replay_memory'] / MIB:.0f} MiB")
    for m in everyone:
        m.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=64 * MIB)
    parser.add_argument("--size", type=int, default=256 * 1024, help="bytes per message")
    parser.add_argument("--rate", type=float, default=16 * MIB, help="bytes per second")
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--server-arg", action="append", default=[], help="an extra server argument")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.json"
        extra = ["--LLMChat.hooks=bench.probe:install", *args.server_arg]
        with serve(Path(tmp), args.readers + 2, *extra, env={"LLMCHAT_PROBE": str(probe)}) as server:
            server.wait_for_model()
            asyncio.run(run(server, probe, args))


if __name__ == "__main__":
    main()
