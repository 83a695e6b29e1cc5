"""A real `redis-server` (Debian's package) on 127.0.0.1 for tests and benches.

Started with its data in a temporary directory, no snapshots unless asked, a bounded wait
until it answers PING, and always stopped. Tests skip with a clear message when the binary
is missing (`apt-get install redis-server`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .servers import free_port, terminate

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def available() -> bool:
    return Path(REDIS_SERVER).exists()


class RedisServer:
    """One redis-server process; `url` is what `room_bus` is set to."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"redis-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.root / f'redis-{self.port}.log').read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not answer in {timeout} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        terminate(self.process, 10)


@contextmanager
def running_redis(root: Path) -> Iterator[RedisServer]:
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
