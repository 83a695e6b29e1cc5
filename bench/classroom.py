"""Shared by the room benches (presence, load, fanout, nonreader): a real `jupyter server`
on 127.0.0.1 (tests/support/servers.py) and a class of distinct users on WebSockets.

Every member logs in on its own (`ServerProcess.login()`: a new user per login), so the
benches measure N users, not one user's N tabs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.servers import ServerProcess, running_server  # noqa: E402

# The checkout whose server is measured: this one, or another (a copy of an older commit,
# `git archive <commit> | tar -x -C /tmp/before`) for before/after figures.
REPO = Path(os.environ.get("LLMCHAT_REPO") or Path(__file__).resolve().parents[1])

def server_args(tmp: Path, connections: int, *extra: str) -> list[str]:
    """A small model (it loads fast and is not what these benches measure) and room for the class."""
    return [
        f"--LLMChat.history_path={tmp / 'h.sqlite'}", f"--LLMChat.max_connections={connections + 10}",
        "--LLMChat.rate_limit=0", "--LLMChat.parallel=1", "--LLMChat.n_ctx=512", *extra,
    ]


def serve(tmp: Path, connections: int, *extra: str, env: dict[str, str] | None = None) -> Any:
    """`with serve(tmp, n) as server:` this checkout's server, its Jupyter paths under `tmp`."""
    paths = {"PYTHONPATH": str(REPO), "JUPYTER_DATA_DIR": str(tmp / "data"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
    return running_server(tmp, server_args(tmp, connections, *extra), env={**paths, **(env or {})})


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def logins(server: ServerProcess, n: int) -> list[dict[str, str]]:
    """Headers of n distinct users."""
    return [server.login() for _ in range(n)]


class Member(asyncio.Protocol):
    """A WebSocket client that costs the bench almost nothing per frame, so the benches
    measure the server: frames are cut out of the byte stream (a server never masks nor,
    without compression, fragments them), counted, and handed to `on_frame` whole.

    A Python WebSocket library spends ~100 us per frame; 1,000 members of a busy room
    receive 10,000 frames a second, more than one core of such clients can read.
    """

    def __init__(self, host: str, path: str, headers: dict[str, str], on_frame: Callable[[bytes], None] | None = None) -> None:
        self.host, self.path, self.headers, self.on_frame = host, path, headers, on_frame
        self.frames = 0
        self.bytes = 0
        self.types: dict[bytes, int] = {}  # frames received per type
        self.reading = True  # False: stop reading from the socket (a member that never reads)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {self.host}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: llmchat.v1",
                 *(f"{name}: {value}" for name, value in self.headers.items())]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(bytes(buffer[:end]).decode(errors="replace")))
                return
            del buffer[: end + 4]
            self._upgraded = True
            self.opened.set_result(None)
        at, size = 0, len(buffer)
        while size - at >= 2:
            opcode, length = buffer[at] & 0x0F, buffer[at + 1] & 0x7F
            head = 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = struct.unpack_from("!H", buffer, at + 2)[0], 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = struct.unpack_from("!Q", buffer, at + 2)[0], 10
            if size - at < head + length:
                break
            payload = bytes(buffer[at + head : at + head + length])
            at += head + length
            if opcode == 0x9:
                self.send(payload, opcode=0xA)
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
            else:
                self.frames += 1
                self.bytes += length
                kind = payload[9 : payload.find(b'"', 9)]  # {"type":"<kind>", ...: encoded type first
                self.types[kind] = self.types.get(kind, 0) + 1
                if self.on_frame is not None:
                    self.on_frame(payload)
        del buffer[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, payload: bytes | str, opcode: int = 0x1) -> None:
        """One masked frame (the mask is zero: clients must mask, the key may be any)."""
        data = payload.encode() if isinstance(payload, str) else payload
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else b"\xfe" + struct.pack("!H", n) if n < 65536 else b"\xff" + struct.pack("!Q", n))
        self.transport.write(head + b"\0\0\0\0" + data)  # type: ignore[union-attr]

    def pause(self) -> None:
        """Never read again: the server's writes to this member pile up."""
        self.reading = False
        self.transport.pause_reading()  # type: ignore[union-attr]

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def member(port: int, headers: dict[str, str], on_frame: Callable[[bytes], None] | None = None,
                 path: str = "/llmchat/ws") -> Member:
    """A connected, upgraded `Member` (Jupyter names its login cookie after host:port)."""
    _, protocol = await asyncio.get_running_loop().create_connection(
        lambda: Member(f"127.0.0.1:{port}", path, headers, on_frame), "127.0.0.1", port
    )
    await protocol.opened
    return protocol


def join_frame(room: str, i: int = 0) -> str:
    return json.dumps({"type": "Join", "id": f"j{i}", "room": room, "data": {}})


async def until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `check` on the loop until it holds or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


async def join_all(server: ServerProcess, heads: list[dict[str, str]], room: str,
                   on_frame: Callable[[int], Callable[[bytes], None]] | None = None, at_once: int = 8) -> list[Member]:
    """One member per login, each joined to `room` as soon as its socket is open, at most
    `at_once` sockets opening at a time (a class arriving, not one student per round
    trip); returns once every member has its `Joined`, in login order."""
    members: list[Member | None] = [None] * len(heads)
    gate = asyncio.Semaphore(at_once)

    async def arrive(i: int) -> None:
        async with gate:
            m = await member(server.port, heads[i], on_frame(i) if on_frame else None)
            m.send(join_frame(room, i))
            members[i] = m

    await asyncio.gather(*(arrive(i) for i in range(len(heads))))
    joined = [m for m in members if m is not None]
    assert await until(lambda: all(m.types.get(b"Joined") for m in joined), 300), "not every member was joined"
    return joined


async def quiet(members: list[Member], seconds: float = 1.0) -> None:
    """Until no member has received a frame for `seconds` (the last Presence frames are read)."""
    last = -1
    while (now := sum(m.frames for m in members)) != last:
        last = now
        await asyncio.sleep(seconds)
