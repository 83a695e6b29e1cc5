"""A class joining one room: the bytes presence costs as N members arrive one by one.

Starts this checkout's real `jupyter server` (bench/classroom.py) on 127.0.0.1, logs N
users in (`ServerProcess.login()`: every login is a new user, as N students would be),
opens one WebSocket each and joins them to the same room one after another; every open
socket keeps reading. Prints the frames and bytes all members received, the time until
the last member got its `Joined`, the time until the last `Presence` was read, and the
server's RSS and CPU. With `Presence` as a delta each arrival costs one small frame per
member present (~N^2/2 frames in all); with the whole member list in every `Presence` it
was ~N^3/3 member entries (400 members: 1.6 GB).

    .venv/bin/python bench/presence.py --n 100 400 1000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from classroom import cpu_seconds, join_all, logins, quiet, rss_kib, serve
from support.servers import ServerProcess


async def one_room(server: ServerProcess, heads: list[dict[str, str]]) -> None:
    pid = server.process.pid
    before, cpu0 = rss_kib(pid), cpu_seconds(pid)
    t0 = time.perf_counter()
    members = await join_all(server, heads, "class")
    joined = time.perf_counter() - t0
    await quiet(members, 0.5)
    settled = time.perf_counter() - t0 - 0.5
    frames, size = sum(m.frames for m in members), sum(m.bytes for m in members)
    presence = sum(m.types.get(b"Presence", 0) for m in members)
    print(f"{len(members):>8} {frames:>10} {presence:>10} {size / 1e6:>12.1f} {joined:>8.1f} {settled:>8.1f} "
          f"{cpu_seconds(pid) - cpu0:>8.1f} {before / 1024:>9.0f} -> {rss_kib(pid) / 1024:.0f}")
    for m in members:
        m.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 400, 1000])
    args = parser.parse_args()
    print(f"{'members':>8} {'frames':>10} {'Presence':>10} {'MB received':>12} {'joined s':>8} {'read s':>8} "
          f"{'CPU s':>8} {'server RSS MiB':>15}")
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), n) as server:
            server.wait_for_model()
            heads = logins(server, n)
            asyncio.run(one_room(server, heads))


if __name__ == "__main__":
    main()
