"""`jupyter llmchat serve` processes for tests: private Jupyter dirs, the discovery file, REST with the secret.

Every service here runs in a temporary runtime, data and config dir (never the user's),
and is stopped (SIGTERM, then SIGKILL) however the test ends; `service_env` also turns the
autostart on, for the processes a test starts on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .servers import terminate

from jupyter_llmchat.runtime_secret import SCHEME
from jupyter_llmchat.service_file import pid_alive

# Small and fast, as the Jupyter servers of the tests (kernels.SERVER_ARGS).
SERVICE_CONFIG = {"n_ctx": 2048, "parallel": 2, "default_max_tokens": 8, "max_tokens": 16, "n_threads": 1, "temperature": 0.0}


def service_env(tmp_path: Path, config: dict[str, Any] | None = None) -> dict[str, str]:
    """An environment of its own: runtime, data and config dirs under `tmp_path`, `config` as
    `c.LLMChat` in its jupyter_server_config.json, and the autostart on."""
    config_dir = tmp_path / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({"LLMChat": {**SERVICE_CONFIG, **(config or {})}}))
    return {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "LLMCHAT_AUTOSTART": "1",
        "LLMCHAT_URL": "",
        "LLMCHAT_TOKEN": "",
    }


def service_files(env: dict[str, str]) -> list[Path]:
    return sorted(Path(env["JUPYTER_RUNTIME_DIR"]).glob("llmchat-service-*.json"))


class Service:
    """A running service as its discovery file describes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info = json.loads(path.read_text())
        self.pid: int = self.info["pid"]
        self.url: str = self.info["url"]
        self.secret = (path.parent / f"llmchat-{self.pid}.secret").read_text().strip()

    def request(self, method: str, path: str, body: Any = None, authorization: str | None = "secret") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if authorization == "secret":
            headers["Authorization"] = f"{SCHEME} {self.secret}"
        elif authorization:
            headers["Authorization"] = authorization
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


def wait_for_service(env: dict[str, str], process: subprocess.Popen[bytes] | None = None, timeout: float = 120.0) -> Service:
    """The service once its discovery file is there and its model is loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}")
        files = service_files(env)
        if files:
            service = Service(files[0])
            status, stats = service.request("GET", "llmchat/api/stats")
            if status == 200 and stats["model"]["loaded"]:
                return service
        time.sleep(0.2)
    raise TimeoutError("no llmchat service came up")


def start_serve(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_llmchat", "serve", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=env["JUPYTER_RUNTIME_DIR"].rsplit("/", 1)[0],
    )


def stop_services(env: dict[str, str]) -> None:
    """Stop every service of that runtime dir (those a test started, and those autostarted)."""
    pids = []
    for path in service_files(env):
        try:
            pids.append(json.loads(path.read_text())["pid"])
        except (OSError, ValueError):
            pass
    for pid in pids:
        _signal(pid, 15)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        _signal(pid, 9)


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its parent, is not)."""
    if not pid_alive(pid):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


__all__ = ["SERVICE_CONFIG", "Service", "service_env", "service_files", "alive", "start_serve", "stop_services", "terminate", "wait_for_service"]
