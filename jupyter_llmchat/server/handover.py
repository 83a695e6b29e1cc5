"""The history file keeps one owner: a Jupyter server takes it over from `jupyter llmchat serve`.

When a Jupyter server's extension starts while a service of the same OS user holds the
history file (its pid is in `<history>.lock`, its discovery file in the runtime dir), the
extension asks that service, with the service's runtime secret, to hand over
(`POST llmchat/api/service/handover`). The service takes no more work (new sockets and
questions get 503 with the reason), lets its running answers finish, closes its sockets
(1012: clients reconnect, and their discovery finds the Jupyter server), stores its rooms
and exits; the extension waits for that and opens the file. Rooms are then the same
whichever of the two a user meets.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..runtime_secret import SCHEME, read_secret
from ..service_file import LockBusy, held, read_service_files
from .rest_handlers import ChatAPIHandler

HANDOVER_ROUTE = "llmchat/api/service/handover"
HANDOVER_TIMEOUT = 90.0  # running answers finish first (a max_tokens answer takes a while)


class HandoverHandler(ChatAPIHandler):
    """`POST llmchat/api/service/handover`: only the owner (runtime secret) may ask."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        if self._secret_owner() is None:
            raise web.HTTPError(403, "only the owner's Jupyter server (runtime secret) may take the service over")
        self.settings["llmchat_hand_over"]()
        self.reply({"handing_over": True, "pid": os.getpid()}, status=202)


def release_history(path: str, runtime_dir: str, log: logging.Logger, *, timeout: float = HANDOVER_TIMEOUT) -> bool:
    """Ask the llmchat service that holds the history file `path` to hand it over, and wait
    until it has exited. False when the holder is no service of ours (a Jupyter server)."""
    holder = _holder_pid(path)
    service = next(
        (info for info, _ in read_service_files(runtime_dir) if info["pid"] == holder and _same_file(info.get("history_path"), path)),
        None,
    )
    secret = read_secret(runtime_dir, holder) if service is not None and holder is not None else ""
    if service is None or not secret:
        return False
    log.info("llmchat: the llmchat service (pid %s) holds %s; asking it to hand over", holder, path)
    try:
        _post(service, secret)
    except (OSError, http.client.HTTPException, RuntimeError) as error:
        log.warning("llmchat: the llmchat service (pid %s) did not take the hand-over request: %s", holder, error)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _released(path):
            log.info("llmchat: the llmchat service (pid %s) handed over %s", holder, path)
            return True
        time.sleep(0.1)
    log.warning("llmchat: the llmchat service (pid %s) did not exit within %.0f s", holder, timeout)
    return False


def _holder_pid(path: str) -> int | None:
    try:
        text = Path(f"{path}.lock").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _released(path: str) -> bool:
    """The history file's lock is free: its holder has closed it, or exited."""
    lock = Path(f"{path}.lock")
    try:
        with held(lock.parent, lock.name, record=False):
            return True
    except LockBusy:
        return False


def _same_file(a: Any, b: str) -> bool:
    return isinstance(a, str) and os.path.realpath(a) == os.path.realpath(b)


def _post(service: dict[str, Any], secret: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(service["port"]), timeout=10)
    try:
        connection.request("POST", f"/{HANDOVER_ROUTE}", body=b"{}", headers={"Authorization": f"{SCHEME} {secret}"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 202:
        raise RuntimeError(f"HTTP {response.status}: {body[:200].decode('utf-8', 'replace')}")

