"""Start and stop a real `jupyter server` process, as a user would run it.

Used where the test is about the process itself: restarts, command-line configuration,
kernels, browsers. Bounded: every wait has a deadline, and the process is always killed.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, deadline: float) -> bool:
    """True once 127.0.0.1:port accepts connections (Jupyter binds after writing its runtime file)."""
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM (the process's graceful stop), then SIGKILL if it is not gone in `timeout` s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class ServerProcess:
    """A `jupyter server` (or `jupyter lab`) subprocess on 127.0.0.1 with a random token."""

    def __init__(self, root: Path, args: list[str], app: str = "server", env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(12)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = root / f"server-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.command = [
            sys.executable, "-m", "jupyter", app, "--allow-root", "--no-browser",
            f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}", *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                self.get("api/status")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"server did not answer in {timeout} s:\n{self.log_path.read_text()[-4000:]}")

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_for_model(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.get("llmchat/api/stats")["model"]
            if model["loaded"] or model.get("error"):
                return model
            time.sleep(0.2)
        raise TimeoutError("model did not load")

    def login(self) -> dict[str, str]:
        """Log in with the token like a browser: headers (cookie, XSRF) of a NEW user.

        Jupyter gives every login session its own anonymous identity, so N logins are N
        distinct users (a class in one room) while token-header requests are one user.
        Send the headers with REST calls and WebSocket upgrades alike."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(self.url + "login", timeout=10).read()
        xsrf = next(cookie.value for cookie in jar if cookie.name == "_xsrf")
        form = urllib.parse.urlencode({"password": self.token, "_xsrf": xsrf}).encode()
        opener.open(self.url + "login", data=form, timeout=10).read()
        return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in jar), "X-XSRFToken": xsrf}

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/llmchat/ws"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, Jupyter's graceful shutdown (extensions stop), then kill if it hangs.

        (SIGINT without a terminal exits without running the shutdown.)"""
        terminate(self.process, timeout)


@contextmanager
def running_server(root: Path, args: list[str], **kwargs: object) -> Iterator[ServerProcess]:
    server = ServerProcess(root, args, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()
