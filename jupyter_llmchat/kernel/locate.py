"""Which llmchat to talk to from a kernel, and starting one when there is none.

The order (`ask`, `broadcast`, `connect`, `ChatWidget` and its kernel relay):

1. an explicit URL (`connect(url=)`, `LLMCHAT_URL`): used as given;
2. a Jupyter server that answers llmchat (its `llmchat/api/stats` answers): the one that
   started this kernel, else the only one running (`discovery.find_server`'s choice), else
   any other running one, newest first;
3. a running llmchat service (`jupyter llmchat serve`) of this user;
4. else one is started: `python -m jupyter_llmchat serve` as a detached process, at most one
   per runtime dir (`llmchat-autostart.lock` while it starts; the service itself holds
   `llmchat-service.lock` for its life), and every kernel of the user then shares it and its
   one model. `LLMCHAT_AUTOSTART=0` turns this off: a clear `ServerNotFound` instead.

A service is used once its model is loaded (or has failed: its questions then say why),
so the first question after a start does not meet "the model is loading".
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

from ..service_file import AUTOSTART_LOCK, SERVICE_LOCK, LockBusy, held
from .discovery import ServerInfo, _choose, _explicit, running_servers, running_services, runtime_dir
from .errors import ChatRequestError, ExtensionNotEnabled, LLMChatClientError, ServerNotFound

AUTOSTART_ENV = "LLMCHAT_AUTOSTART"
START_TIMEOUT = 180.0  # seconds for a started service to load its model (a first import is slow)
SERVICE_LOG = "llmchat-service.log"

Probe = Callable[[ServerInfo], dict[str, Any]]  # the server's stats; raises when it does not answer


def autostart_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(AUTOSTART_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def locate(
    url: str | None,
    token: str | None,
    probe: Probe,
    *,
    environ: Mapping[str, str] | None = None,
    directory: str | None = None,
    on_start: Callable[[], None] | None = None,
    timeout: float = START_TIMEOUT,
) -> ServerInfo:
    """The server or service to use, in the order of this module's docstring.

    `probe(server)` asks a candidate for its stats; `on_start()` is called once when a
    service is being started (or waited for), for a "starting the model service…" notice."""
    env = os.environ if environ is None else environ
    if token is None:
        token = env.get("LLMCHAT_TOKEN") or None
    if url or env.get("LLMCHAT_URL"):
        return _explicit(url or env["LLMCHAT_URL"], token, "given URL" if url else "LLMCHAT_URL", directory)
    directory = directory or runtime_dir()
    servers = running_servers(directory)
    chosen = _choose(servers, env, newest=False)
    # This process's own server (or the only one) first, then any other, newest first.
    candidates = ([chosen] if chosen else []) + [
        replace(server, found_by="the newest running server with llmchat") for server in servers if not chosen or server.pid != chosen.pid
    ]
    passed_over = ""
    for index, server in enumerate(candidates):
        server = replace(server, token=token, secret="") if token else server
        try:
            probe(server)
            return server
        except (ExtensionNotEnabled, ServerNotFound) as error:  # no llmchat there: on to the next, then a service
            passed_over += f"{server.describe()} has no llmchat ({error}); "
        except ChatRequestError:  # llmchat answers, with an error (a bad setting: 503) the next call shows
            return server
        except LLMChatClientError:  # our credentials refused: this process's own server says so, others are skipped
            if index == 0 and chosen is not None:
                raise
    ready, loading = _services(directory, probe)
    if ready is not None:
        return ready
    autostart = autostart_enabled(env)
    if not loading and not autostart:
        raise ServerNotFound(
            f"{passed_over}no Jupyter server with llmchat and no llmchat service found in {directory}, and "
            f"{AUTOSTART_ENV}={env.get(AUTOSTART_ENV)} keeps one from being started for you: run `jupyter llmchat serve`, "
            f"start Jupyter with the extension, give a URL (connect(url=), LLMCHAT_URL), or unset {AUTOSTART_ENV}"
        )
    if on_start is not None:
        on_start()
    return _start_or_wait(directory, probe, timeout, spawn=autostart)


def _services(directory: str, probe: Probe) -> tuple[ServerInfo | None, bool]:
    """(a running service whose model is ready, whether one runs but is not ready yet)."""
    for service in running_services(directory):
        try:
            stats = probe(service)
        except Exception:  # noqa: BLE001  stopping, or not listening yet
            continue
        model = stats.get("model") or {}
        on_its_way = model.get("state") in ("resolving", "downloading", "loading")  # load_error then says how far
        if model.get("loaded") or model.get("state") == "failed" or (not on_its_way and model.get("load_error")):
            return service, False
    return None, _service_runs(directory)


def _service_runs(directory: str) -> bool:
    """A service holds its lock for its whole life, from before its discovery file is written."""
    try:
        with held(directory, SERVICE_LOCK, record=False):
            return False
    except LockBusy:
        return True


def _start_or_wait(directory: str, probe: Probe, timeout: float, *, spawn: bool) -> ServerInfo:
    """Under the autostart lock: the service once ready, started first if none runs."""
    deadline = time.monotonic() + timeout
    try:
        with held(directory, AUTOSTART_LOCK, wait=timeout):
            process: subprocess.Popen[bytes] | None = None
            while time.monotonic() < deadline:
                ready, loading = _services(directory, probe)
                if ready is not None:
                    return replace(ready, found_by="the llmchat service started for this user" if process else ready.found_by)
                if process is None and not loading and spawn:
                    process = _spawn(directory)
                elif process is not None and process.poll() is not None:
                    raise ServerNotFound(f"the llmchat service could not start (exit status {process.returncode}): {_log_tail(directory)}")
                elif process is None and not loading:
                    break  # a service that was loading went away, and we may not start one
                time.sleep(0.1)
    except LockBusy as error:
        raise ServerNotFound(f"another process is starting the llmchat service and it is not ready after {timeout:g} s ({error})") from None
    raise ServerNotFound(f"the llmchat service was not ready within {timeout:g} s; see {os.path.join(directory, SERVICE_LOG)}")


def _spawn(directory: str) -> subprocess.Popen[bytes]:
    """`python -m jupyter_llmchat serve`, detached: it outlives this kernel and serves every other."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    log_path = os.path.join(directory, SERVICE_LOG)
    log = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    options: dict[str, Any] = {"start_new_session": True} if os.name != "nt" else {"creationflags": 0x00000008 | 0x00000200}
    with log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_llmchat", "serve"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=directory, close_fds=True, **options,
        )
    # Reaped when it exits, however long after: no zombie left in this (long-lived) kernel.
    threading.Thread(target=process.wait, name="llmchat-service-reaper", daemon=True).start()
    return process


def _log_tail(directory: str, chars: int = 600) -> str:
    try:
        with open(os.path.join(directory, SERVICE_LOG), encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return "(no log)"
    return " ".join(text[-chars:].split()) or "(empty log)"
