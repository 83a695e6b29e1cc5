"""The per-server secret that lets the server's own kernels and CLI authenticate.

A server with a password (or behind JupyterHub) has no token a kernel could read, so at
start-up the extension writes a random secret next to the server's `jpserver-<pid>.json`,
readable by the owner only (0600, like that file). Whoever can read it is the OS user who
runs the server; the handlers accept it as that user (`Authorization: llmchat-secret …`).
"""

from __future__ import annotations

import getpass
import os
import secrets
from pathlib import Path

SCHEME = "llmchat-secret"


def secret_path(runtime_dir: str | os.PathLike[str], pid: int) -> Path:
    return Path(runtime_dir) / f"llmchat-{pid}.secret"


def write_secret(runtime_dir: str | os.PathLike[str], pid: int | None = None) -> tuple[Path, str]:
    """Create a fresh secret file (owner-only) for this server; returns (path, secret)."""
    from jupyter_core.paths import secure_write

    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
    path = secret_path(runtime_dir, os.getpid() if pid is None else pid)
    secret = secrets.token_urlsafe(32)
    with secure_write(str(path)) as handle:  # removes a stale file, opens 0600, checks the mode
        handle.write(secret)
    return path, secret


def read_secret(runtime_dir: str | os.PathLike[str], pid: int) -> str:
    """The secret of the server `pid`, or "" when there is none we can read."""
    try:
        return secret_path(runtime_dir, pid).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def remove_secret(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def owner_username() -> str:
    """Who a secret-authenticated request is: the hub user, else the OS user of the server."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
