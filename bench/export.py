"""A room's transcript export in bounded memory: 10,000 and 100,000 stored messages.

Fills a history file with N messages of about 200 characters (a question and an answer in
turn, with some deleted), then runs the export (`server/export.py`, what
`GET rooms/{room}/export` streams) over the memory bus into a sink that keeps nothing,
and prints the time, the bytes written and the peak of Python's allocations during it
(tracemalloc), beside the peak of reading the same room in one query, as an export that
did not page would.

    .venv/bin/python bench/export.py --n 10000 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from jupyter_llmchat.room_bus.memory_bus import MemoryRoomBus
from jupyter_llmchat.room_bus.store import HistoryStore
from jupyter_llmchat.server.export import transcript

ROOM = "big"
TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 2 + "#"


def fill(store: HistoryStore, n: int) -> None:
    rows = []
    for seq in range(1, n + 1):
        answer = seq % 2 == 0
        author = {"username": "model", "name": "gemma-3-270m", "kind": "assistant"} if answer else {
            "username": f"student{seq % 50}", "name": f"Student {seq % 50}", "kind": "user"}
        data = {"message_id": f"m-{seq}", "content": f"{seq}: {TEXT}", "author": author, "created": "2026-12-06T10:00:00.000Z"}
        if answer:
            data["in_reply_to"] = f"m-{seq - 1}"
        if seq % 97 == 0:
            data = {**data, "content": "", "deleted": True}
        rows.append((ROOM, seq, data["message_id"], json.dumps(data), author["kind"], author["username"], data.get("in_reply_to")))
    with store._db:
        store._db.execute("BEGIN")
        store._db.executemany(
            "INSERT INTO messages (room, seq, message_id, data, kind, username, in_reply_to) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
    store.save_head(ROOM, n)


async def export_once(bus: MemoryRoomBus, fmt: str) -> tuple[float, int, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    written = 0
    async for piece in transcript(bus, ROOM, fmt):  # type: ignore[arg-type]
        written += len(piece.encode())
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, written, peak


async def read_all(bus: MemoryRoomBus, n: int) -> int:
    tracemalloc.start()
    await bus.messages(ROOM, since=0, limit=n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


async def main(sizes: list[int]) -> None:
    print(f"{'messages':>9} {'format':>6} {'seconds':>8} {'MB out':>7} {'peak MiB (paged)':>17} {'peak MiB (one read)':>20}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = HistoryStore(Path(tmp) / "history.sqlite")
            fill(store, n)
            bus = MemoryRoomBus(store, 16, 300.0)
            whole = await read_all(bus, n)
            for fmt in ("md", "json"):
                elapsed, written, peak = await export_once(bus, fmt)
                print(f"{n:>9} {fmt:>6} {elapsed:>8.2f} {written / 1e6:>7.1f} {peak / 2**20:>17.1f} {whole / 2**20:>20.1f}")
            store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    asyncio.run(main(parser.parse_args().n))
