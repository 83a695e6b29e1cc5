"""Find the Jupyter server to talk to, and how to authenticate with it.

`find_server` (the CLI's; the kernel API's `locate.locate` builds on it). Order (first that applies):

1. an explicit URL: `connect(url=...)`, `--url`, or the `LLMCHAT_URL` environment variable,
   with `token=` / `--token` / `LLMCHAT_TOKEN` (without a token, the credentials of a
   running local server at that address are used, if there is one);
2. the server that launched this kernel: `JPY_PARENT_PID` (set by jupyter_client in
   every kernel's environment), then the parent process's pid;
3. the only running server;
4. for the CLI only: the newest running server (and it says so);
5. when no Jupyter server runs: the running llmchat service (`jupyter llmchat serve`).

Running servers are the `jpserver-<pid>.json` files of the Jupyter runtime directory,
the same files `jupyter_server.serverapp.list_running_servers()` reads, read directly
here so that a kernel does not import the whole server; running services are its
`llmchat-service-<pid>.json` files (`service_file`). Credentials: the runtime secret of
that server when we can read it (it names us as the server's owner), else its token; a
service has only its secret.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import ServerNotFound
from ..runtime_secret import SCHEME, read_secret
from ..service_file import pid_alive, read_service_files

_INFO_FILE = re.compile(r"^jpserver-(\d+)\.json$")
_WILDCARD_V4 = {"", "0.0.0.0", "*"}
_WILDCARD_V6 = {"::", "[::]"}


@dataclass(frozen=True)
class ServerInfo:
    """Where a server is and how to authenticate with it."""

    url: str  # http(s)://host:port/base_url/ (always ends with "/")
    token: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    pid: int | None = None
    sock: str = ""  # the Unix socket the server listens on, if any
    root_dir: str = ""
    started: float = 0.0  # when its runtime file was written (epoch seconds)
    found_by: str = ""  # why discovery chose it, for messages
    service: bool = False  # `jupyter llmchat serve`, not a Jupyter server

    @property
    def authorization(self) -> str | None:
        """The `Authorization` header value: the secret first (a stable user name), then the token."""
        if self.secret:
            return f"{SCHEME} {self.secret}"
        if self.token:
            return f"token {self.token}"
        return None

    @property
    def ws_url(self) -> str:
        return re.sub(r"^http", "ws", self.url) + "llmchat/ws"

    def describe(self) -> str:
        where = f"{self.url} (pid {self.pid})" if self.pid else self.url
        return f"{where}, {self.found_by}" if self.found_by else where


def runtime_dir() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    return jupyter_runtime_dir()


def running_servers(directory: str | None = None) -> list[ServerInfo]:
    """The servers with a runtime file whose process is alive, newest first."""
    directory = directory or runtime_dir()
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    servers = []
    for name in names:
        if not _INFO_FILE.match(name):
            continue
        path = Path(directory, name)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            started = path.stat().st_mtime
        except (OSError, ValueError):  # being written, or gone
            continue
        pid = info.get("pid")
        if isinstance(pid, int) and pid_alive(pid):
            servers.append(_from_info(info, directory, started))
    return sorted(servers, key=lambda server: server.started, reverse=True)


def running_services(directory: str | None = None) -> list[ServerInfo]:
    """The llmchat services (`jupyter llmchat serve`) of this user that are alive, newest first;
    only those whose runtime secret we can read (a service takes nothing else)."""
    directory = directory or runtime_dir()
    services = []
    for info, started in read_service_files(directory):
        pid = info["pid"]
        secret = read_secret(directory, pid)
        if secret and pid_alive(pid) and isinstance(info.get("port"), int):
            url = f"http://127.0.0.1:{info['port']}/"
            services.append(ServerInfo(url=url, secret=secret, pid=pid, started=started, found_by="the llmchat service", service=True))
    return sorted(services, key=lambda server: server.started, reverse=True)


def find_server(
    url: str | None = None,
    token: str | None = None,
    *,
    newest: bool = False,
    environ: Mapping[str, str] | None = None,
    directory: str | None = None,
) -> ServerInfo:
    """The server to use, following the order in this module's docstring."""
    env = os.environ if environ is None else environ
    if token is None:
        token = env.get("LLMCHAT_TOKEN") or None
    if url:
        return _explicit(url, token, "given URL", directory)
    if env.get("LLMCHAT_URL"):
        return _explicit(env["LLMCHAT_URL"], token, "LLMCHAT_URL", directory)
    directory = directory or runtime_dir()
    servers = running_servers(directory)
    chosen = _choose(servers, env, newest)
    if chosen is None and not servers:
        chosen = next(iter(running_services(directory)), None)
    if chosen is None:
        raise ServerNotFound(_not_found_message(servers, directory))
    return replace(chosen, token=token, secret="") if token else chosen


def _choose(servers: list[ServerInfo], env: Mapping[str, str], newest: bool) -> ServerInfo | None:
    hints = [("the server that started this kernel (JPY_PARENT_PID)", env.get("JPY_PARENT_PID", ""))]
    hints.append(("the parent process", str(os.getppid())))
    for reason, pid in hints:
        for server in servers:
            if pid.isdigit() and server.pid == int(pid):
                return replace(server, found_by=reason)
    if len(servers) == 1:
        return replace(servers[0], found_by="the only running server")
    if servers and newest:
        return replace(servers[0], found_by=f"the newest of {len(servers)} running servers")
    return None


def _not_found_message(servers: list[ServerInfo], directory: str) -> str:
    if not servers:
        return (
            f"no running Jupyter server found (no live jpserver-*.json in {directory}) and no llmchat service; "
            "start one (`jupyter llmchat serve`, or a Jupyter server), or give its URL and token "
            "(connect(url=, token=), --url/--token, or LLMCHAT_URL/LLMCHAT_TOKEN)"
        )
    listing = "; ".join(server.describe() for server in servers)
    return (
        f"{len(servers)} Jupyter servers are running and none of them started this process: {listing}. "
        "Give the URL of one (connect(url=), --url or LLMCHAT_URL)."
    )


def _explicit(url: str, token: str | None, source: str, directory: str | None) -> ServerInfo:
    url = _normalise(url)
    local = _local_match(url, directory) if token is None else None
    if local is not None:
        return replace(local, url=url, found_by=f"{source}, credentials of the local server pid {local.pid}")
    return ServerInfo(url=url, token=token or "", found_by=source)


def _normalise(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServerNotFound(f"not a Jupyter server URL: {url!r} (expected http(s)://host:port/base_url/)")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _local_match(url: str, directory: str | None) -> ServerInfo | None:
    """A running local server at that address, to borrow its secret or token."""
    wanted = urlsplit(url)
    local_names = {"localhost", "127.0.0.1", "::1"}
    for server in running_servers(directory):
        have = urlsplit(server.url)
        same_host = wanted.hostname == have.hostname or {wanted.hostname, have.hostname} <= local_names
        if same_host and wanted.port == have.port and wanted.path == have.path and not server.sock:
            return server
    return None


def _from_info(info: dict, directory: str, started: float) -> ServerInfo:
    base_url = info.get("base_url") or "/"
    sock = info.get("sock") or ""
    if sock:
        url = f"http://localhost{base_url}"
    else:
        host = str(info.get("hostname") or "localhost")
        if host in _WILDCARD_V4:
            host = "127.0.0.1"
        elif host in _WILDCARD_V6:
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        scheme = "https" if info.get("secure") else "http"
        url = f"{scheme}://{host}:{info.get('port')}{base_url}"
    pid = info["pid"]
    return ServerInfo(
        url=url,
        token=info.get("token") or "",
        secret=read_secret(directory, pid),
        pid=pid,
        sock=sock,
        root_dir=info.get("root_dir") or "",
        started=started,
    )

