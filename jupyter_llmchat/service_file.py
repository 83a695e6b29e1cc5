"""The discovery file of `jupyter llmchat serve`, and the lock files beside it.

A running service writes `llmchat-service-<pid>.json` into Jupyter's runtime dir (not
`jpserver-<pid>.json`: `jupyter server list` stays about Jupyter servers), with its
runtime secret beside it (`runtime_secret`, `llmchat-<pid>.secret`, 0600). The kernel
client's discovery reads both, as it reads a Jupyter server's. Both wings speak this file:
the service writes it, the kernel client reads it; so it lives in the shared base.

Two lock files per runtime dir: `llmchat-service.lock`, held by the running service for
its whole life (a second one exits at once), and `llmchat-autostart.lock`, held by a
kernel while it starts one (the others wait for it and then use that one).
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; at most one service is then not guaranteed
    fcntl = None  # type: ignore[assignment]

SERVICE_FILE = re.compile(r"^llmchat-service-(\d+)\.json$")
SERVICE_LOCK = "llmchat-service.lock"
AUTOSTART_LOCK = "llmchat-autostart.lock"
KIND = "llmchat-service"


class LockBusy(RuntimeError):
    """The lock is held by another process (its pid in the message, when known)."""


def service_file(runtime_dir: str | os.PathLike[str], pid: int) -> Path:
    return Path(runtime_dir) / f"llmchat-service-{pid}.json"


def write_service_file(runtime_dir: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """Write this process's discovery file, owner-only (written whole, then renamed in place)."""
    from jupyter_core.paths import secure_write

    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = service_file(runtime_dir, os.getpid())
    partial = path.with_suffix(".json.partial")
    with secure_write(str(partial)) as handle:
        json.dump({"kind": KIND, "pid": os.getpid(), **info}, handle, indent=1)
    os.replace(partial, path)
    return path


def read_service_files(runtime_dir: str | os.PathLike[str]) -> list[tuple[dict[str, Any], float]]:
    """Every readable discovery file of this OS user in the dir: (its contents, its mtime).

    A file another user owns is skipped: two users never share a service, even when they
    point JUPYTER_RUNTIME_DIR at the same directory."""
    try:
        names = os.listdir(runtime_dir)
    except OSError:
        return []
    found = []
    for name in names:
        if not SERVICE_FILE.match(name):
            continue
        path = Path(runtime_dir, name)
        try:
            stat = path.stat()
            if hasattr(os, "getuid") and stat.st_uid != os.getuid():
                continue
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being replaced, or gone
            continue
        if isinstance(info, dict) and info.get("kind") == KIND and isinstance(info.get("pid"), int):
            found.append((info, stat.st_mtime))
    return found


@contextmanager
def held(runtime_dir: str | os.PathLike[str], name: str, *, wait: float = 0.0, record: bool = True) -> Iterator[IO[str] | None]:
    """Hold the lock file `name` of the runtime dir; `LockBusy` if another process keeps it
    longer than `wait` seconds. Released when the block ends or the process dies."""
    handle = take(runtime_dir, name, wait=wait, record=record)
    try:
        yield handle
    finally:
        if handle is not None:
            handle.close()


def take(runtime_dir: str | os.PathLike[str], name: str, *, wait: float = 0.0, record: bool = True) -> IO[str] | None:
    """The open, locked lock file (keep it open to keep the lock); see `held`. `record`: write
    our pid into it (who holds it, for messages); a mere check leaves the last holder's."""
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    handle = open(os.open(Path(runtime_dir, name), os.O_RDWR | os.O_CREAT, 0o600), "a+", encoding="utf-8")
    if fcntl is None:
        return handle
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                handle.seek(0)
                owner = handle.read().strip() or "unknown"
                handle.close()
                raise LockBusy(f"{Path(runtime_dir, name)} is held by pid {owner}") from None
            time.sleep(0.1)
    if record:
        handle.seek(0)
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
    return handle


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a process of another user counts as running)."""
    if os.name == "nt":
        from jupyter_server.utils import check_pid

        return bool(check_pid(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
