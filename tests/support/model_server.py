"""A real OpenAI-compatible model server for tests and benches: llama-cpp-python's own
(its `[server]` extra) serving the packaged model, started as an admin would start it
(`python -m jupyter_llmchat.engine.model_server`: the engine's chat layout, AMX-safe).

Bounded: every wait has a deadline, and the process is always stopped. `stop()` then
`start()` brings it back on the same port (a model server that went away and returned).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .servers import free_port, terminate

MODEL_ALIAS = "gemma-3-270m-q4_k_m"


class ModelServer:
    """`llama_cpp.server` on 127.0.0.1 with the packaged model, one thread, a random API key."""

    def __init__(self, log_dir: Path, *, n_threads: int = 1, n_ctx: int = 4096, api_key: str | None = None) -> None:
        self.port = free_port()
        self.api_key = api_key if api_key is not None else f"sk-test-{secrets.token_hex(8)}"
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_dir / f"model-server-{self.port}.log"
        self.command = [
            sys.executable, "-m", "jupyter_llmchat.engine.model_server", "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads), "--n_ctx", str(n_ctx),
            # By default a new request ends the answer streaming: several clients need this off.
            "--interrupt_requests", "False",
        ]
        if self.api_key:
            self.command += ["--api_key", self.api_key]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Start it and wait until `/v1/models` answers."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the model server exited early:\n{self.log_path.read_text()[-4000:]}")
            if self.answers():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the model server did not answer in {timeout} s:\n{self.log_path.read_text()[-4000:]}")

    def answers(self) -> bool:
        """True when `/v1/models` answers (with the key)."""
        request = urllib.request.Request(f"{self.base_url}/models", headers={"Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: gone at once, mid-answer (a crash, a lost machine)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (uvicorn's graceful stop), then kill if it hangs."""
        terminate(self.process, timeout)


@contextmanager
def running_model_server(log_dir: Path, **kwargs: object) -> Iterator[ModelServer]:
    server = ModelServer(log_dir, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()
