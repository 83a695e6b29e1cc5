"""A class joining one room: the bytes presence costs as N members arrive one by one.

Starts a real `jupyter server` (tests/servers.py) on 127.0.0.1, then opens N WebSockets,
each a different user (Jupyter gives every cookie-less token request its own anonymous
identity), joining the same room one after another; every open socket keeps reading.
Prints the frames and bytes all members received, the time to join them all, and the
server's RSS. With `Presence` as a delta each arrival costs one small frame per member
present (~N^2/2 frames in all); with the whole member list in every `Presence` it was
~N^3/3 member entries (400 members: 1.6 GB).

    .venv/bin/python bench/presence.py --n 100 400 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import tornado.httpclient
import tornado.websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import running_server  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def one_room(url: str, token: str, n: int) -> tuple[int, int, float]:
    """Join n members one by one; (frames, bytes) all of them received, and seconds."""
    received = {"frames": 0, "bytes": 0}
    sockets = []

    async def reader(ws: tornado.websocket.WebSocketClientConnection) -> None:
        while (raw := await ws.read_message()) is not None:
            received["frames"] += 1
            received["bytes"] += len(raw)

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        request = tornado.httpclient.HTTPRequest(url, headers={"Authorization": f"token {token}"})
        ws = await tornado.websocket.websocket_connect(request, subprotocols=["llmchat.v1"])
        await ws.write_message(f'{{"type":"Join","id":"j{i}","room":"class","data":{{}}}}')
        sockets.append(ws)
        tasks.append(asyncio.ensure_future(reader(ws)))
    # Everyone has sent Join; wait until the last Presence reached the first member.
    quiet = 0
    last = -1
    while quiet < 10:
        await asyncio.sleep(0.1)
        quiet = quiet + 1 if received["frames"] == last else 0
        last = received["frames"]
    elapsed = time.perf_counter() - t0 - 1.0
    for ws in sockets:
        ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return received["frames"], received["bytes"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 400, 1000])
    args = parser.parse_args()
    print(f"{'members':>8} {'frames':>10} {'MB received':>12} {'seconds':>8} {'server RSS MiB':>15}")
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            server_args = [
                f"--LLMChat.history_path={Path(tmp) / 'h.sqlite'}", f"--LLMChat.max_connections={n + 10}",
                "--LLMChat.rate_limit=0", "--LLMChat.parallel=1", "--LLMChat.n_ctx=512",
            ]
            with running_server(Path(tmp), server_args) as server:
                before = rss_mib(server.process.pid)
                frames, size, seconds = asyncio.run(one_room(server.ws_url, server.token, n))
                after = rss_mib(server.process.pid)
                print(f"{n:>8} {frames:>10} {size / 1e6:>12.1f} {seconds:>8.1f} {before:>7.0f} -> {after:.0f}")


if __name__ == "__main__":
    main()
