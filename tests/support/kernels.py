"""Real `jupyter server` processes with their own runtime directory, and kernels they start.

Each server here gets a private Jupyter runtime directory, so discovery sees exactly the
servers a test started, and is stopped with SIGTERM, which runs Jupyter's graceful
cleanup (a SIGINT without a terminal skips it). Kernels are started through the server's
own REST API and driven with jupyter_client over their connection file.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import websocket
from jupyter_client.blocking import BlockingKernelClient
from .servers import ServerProcess, wait_listening

# Small and fast: short answers, greedy decoding (reproducible), no repetition penalty.
SERVER_ARGS = [
    "--LLMChat.n_ctx=2048",
    "--LLMChat.parallel=2",
    "--LLMChat.default_max_tokens=8",
    "--LLMChat.max_tokens=8",
    "--LLMChat.ping_interval=0",
    "--LLMChat.n_threads=1",  # reproducible greedy answers (see conftest.BASE_CONFIG)
]
NO_CLIENT_ENV = {"LLMCHAT_URL": "", "LLMCHAT_TOKEN": ""}  # the test runner's own settings must not leak in


class LLMChatServer(ServerProcess):
    """A server whose runtime files go to `runtime_dir`; `token=False` leaves it password-only."""

    def __init__(
        self, root: Path, runtime_dir: Path, args: list[str] = (), *, token: bool = True, env: dict[str, str] | None = None
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.runtime_dir = runtime_dir
        env = {**NO_CLIENT_ENV, "JUPYTER_RUNTIME_DIR": str(runtime_dir), **(env or {})}
        # An option given twice makes Jupyter skip the extension's whole config: a test's
        # own value replaces the default here instead of repeating it.
        overridden = {arg.split("=", 1)[0] for arg in args}
        defaults = [arg for arg in SERVER_ARGS if arg.split("=", 1)[0] not in overridden]
        args = [*defaults, f"--LLMChat.history_path={root / 'history.sqlite'}", *args]
        super().__init__(root, args, env=env)
        if not token:
            self.token = ""
            self.command = [arg for arg in self.command if not arg.startswith("--IdentityProvider.token=")]
            self.command.append("--IdentityProvider.token=")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        """Up once its runtime file exists and its port accepts connections (works without a token)."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        info = self.runtime_dir / f"jpserver-{self.pid}.json"
        deadline = time.monotonic() + timeout
        while not info.exists() or not wait_listening(self.port, deadline):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def delete(self, path: str) -> None:
        request = urllib.request.Request(self.url + path, method="DELETE", headers={"Authorization": f"token {self.token}"})
        urllib.request.urlopen(request, timeout=10).close()


@contextmanager
def llmchat_server(root: Path, runtime_dir: Path, args: list[str] = (), **kwargs: Any) -> Iterator[LLMChatServer]:
    server = LLMChatServer(root, runtime_dir, list(args), **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def server_kernel(server: LLMChatServer, timeout: float = 60.0) -> Iterator[BlockingKernelClient]:
    """A python3 kernel started by the server (POST api/kernels), and a client for it."""
    kernel = server.post("api/kernels", {"name": "python3"})
    client = BlockingKernelClient(connection_file=str(server.runtime_dir / f"kernel-{kernel['id']}.json"))
    try:
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=timeout)
        yield client
    finally:
        client.stop_channels()
        try:
            server.delete(f"api/kernels/{kernel['id']}")
        except OSError:
            pass


def run_cell(client: BlockingKernelClient, code: str, timeout: float = 90.0) -> str:
    """Execute `code` in the kernel; returns its stdout; a cell error fails with the traceback."""
    stdout: list[str] = []
    errors: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind == "stream" and content["name"] == "stdout":
            stdout.append(content["text"])
        elif kind == "error":
            errors.append("\n".join(content["traceback"]))

    reply = client.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=collect, allow_stdin=False)
    if errors or reply["content"]["status"] != "ok":
        raise AssertionError(f"cell failed:\n{''.join(errors) or reply['content']}\nstdout: {''.join(stdout)}")
    return "".join(stdout)


def last_json(output: str) -> Any:
    """The JSON object a cell printed last."""
    return json.loads(output.strip().splitlines()[-1])



class Member:
    """A plain llmchat.v1 socket that has joined a room, as a browser widget would be."""

    def __init__(self, server: LLMChatServer, room: str, timeout: float = 60.0) -> None:
        self.ws = websocket.create_connection(
            server.ws_url, header=[f"Authorization: token {server.token}"], subprotocols=["llmchat.v1"], timeout=timeout
        )
        self.welcome = self.recv()
        self.ws.send(json.dumps({"type": "Join", "id": "join", "room": room, "data": {}}))
        self.joined = self.next(lambda frame: frame["type"] == "Joined")

    def recv(self) -> dict[str, Any]:
        return json.loads(self.ws.recv())

    def next(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            frame = self.recv()
            if wanted(frame):
                return frame

    def answer(self, message_id: str) -> list[dict[str, Any]]:
        """Every Token of one answer, up to the final one."""
        tokens = []
        while not tokens or not tokens[-1]["data"]["is_final"]:
            tokens.append(self.next(lambda f: f["type"] == "Token" and f["data"]["message_id"] == message_id))
        return tokens

    def close(self) -> None:
        self.ws.close()
