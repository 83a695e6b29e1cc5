"""Shared fixtures: the tiers, a real Jupyter server with the extension, small socket clients.

Two tiers (docs/architecture.md, "How it is tested"): a test marked `fast` runs without the
model, in milliseconds; every other test is marked `integration` here and uses the real
model and real servers. `chat_server` starts pytest-jupyter's server in-process with the
real model, or, for a `fast` test, with the stand-in backend (tests/support/standin.py).
`ChatClient` speaks llmchat.v1 over Tornado's WebSocket client. Several users are
simulated with an identity provider that maps tokens to users, as JupyterHub does.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import tornado.httpclient
import tornado.websocket
from jupyter_server.auth.identity import IdentityProvider, User

from support.standin import StandIn

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test not marked `fast` is `integration`, before `-m` selects (`pytest -m fast` is
    the fast tier alone, `-m integration` the rest), and a whole run does the fast tier
    first: a broken room or protocol shows in seconds."""
    for item in items:
        if item.get_closest_marker("fast") is None:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: item.get_closest_marker("fast") is None)  # stable: files keep their order


@pytest.fixture(autouse=True)
def fast_tests_load_no_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `fast` test that would load the real model fails instead of silently becoming slow."""
    if request.node.get_closest_marker("fast") is not None:
        from jupyter_llmchat.engine.engine import Engine

        def refuse(engine: Engine) -> None:
            raise AssertionError("a fast test must not load the model: use the stand-in (tests/support/standin.py)")

        monkeypatch.setattr(Engine, "start", refuse)


def _real_history() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "llmchat" / "history.sqlite"


@pytest.fixture(scope="session", autouse=True)
def private_jupyter_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every server, kernel and CLI of the tests (subprocesses too) gets temporary Jupyter
    data and runtime dirs and no llmchat service autostart; the session fails if the user's
    own history was written."""
    real = _real_history()
    before = real.stat().st_mtime_ns if real.exists() else None
    root = tmp_path_factory.mktemp("jupyter-home")
    saved = {name: os.environ.get(name) for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "LLMCHAT_AUTOSTART")}
    os.environ["JUPYTER_DATA_DIR"] = str(root / "data")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    # No test starts `jupyter llmchat serve` by accident; the tests of that turn it back on.
    os.environ["LLMCHAT_AUTOSTART"] = "0"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    after = real.stat().st_mtime_ns if real.exists() else None
    assert after == before, f"the tests wrote the user's own history {real}"


USERS = {
    "tok-ada": User(username="ada", name="Ada Lovelace", display_name="Ada Lovelace"),
    "tok-bob": User(username="bob", name="Bob", display_name="Bob"),
}
TIMEOUT = 60.0


class TokenUsers(IdentityProvider):
    """Each test token is a different user (as a JupyterHub token would be).

    The cookie `test-login` stands for a browser's login cookie: like Jupyter's own, it
    does not count as token authentication, so origin and XSRF checks apply to it.
    """

    def get_user(self, handler: Any) -> User | None:
        cookie = handler.get_cookie("test-login")
        if cookie:
            return USERS.get(cookie)
        header = handler.request.headers.get("Authorization", "")
        token = header[len("token ") :] if header.startswith("token ") else handler.get_argument("token", "")
        user = USERS.get(token)
        if user is not None:
            handler._token_authenticated = True  # as Jupyter's own token check does: no XSRF needed
        return user


# Small, fast defaults for every test server; tests override what they are about.
BASE_CONFIG: dict[str, Any] = {
    "n_ctx": 4096,
    "parallel": 4,
    "default_max_tokens": 8,
    "temperature": 0.0,
    "ping_interval": 0,
    # Greedy answers compared across requests must not change with the thread count, which
    # adaptive threads pick from the machine's load (tests/engine covers that policy).
    "n_threads": 1,
}


@pytest.fixture
def llmchat_config() -> dict[str, Any]:
    """Per-test LLMChat traits; override this fixture or mutate it before `chat_server`."""
    return {}


@pytest.fixture
def jp_server_config_extra() -> dict[str, Any]:
    """Per-test ServerApp traits (e.g. allow_origin)."""
    return {}


@pytest.fixture
def standin_options() -> dict[str, Any]:
    """Keyword arguments of the stand-in backend of a `fast` test's server (e.g. `delay`)."""
    return {}


@pytest.fixture
def model_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, standin_options: dict[str, Any]) -> str:
    """The server's model: the real engine, or the stand-in for a `fast` test.

    The extension builds its backend with `model_backend.llama_backend`; a fast test's
    server gets a `StandIn` from the same call, so the rest of the extension runs as it is.
    """
    if request.node.get_closest_marker("fast") is None:
        return "llama"

    def standin_backend(settings: Any, sink: Any, loop: Any, log: Any) -> StandIn:
        return StandIn(settings, sink, loop, log, **standin_options)

    monkeypatch.setattr("jupyter_llmchat.server.assembly.llama_backend", standin_backend)
    return "stand-in"


@pytest.fixture
def jp_server_config(
    llmchat_config: dict[str, Any], jp_server_config_extra: dict[str, Any], tmp_path: Any, model_backend: str
) -> dict[str, Any]:
    return {
        "ServerApp": {
            # the terminals extension pytest-jupyter adds by default is of no use here
            "jpserver_extensions": {"jupyter_llmchat": True, "jupyter_server_terminals": False},
            "identity_provider_class": TokenUsers,
            **jp_server_config_extra,
        },
        "LLMChat": {"history_path": str(tmp_path / "history.sqlite"), **BASE_CONFIG, **llmchat_config},
    }


@pytest.fixture
def jp_nbconvert_templates() -> None:
    """pytest-jupyter copies nbconvert's templates for every server; no test here converts."""


@pytest.fixture
def chat_server(jp_serverapp: Any, http_server_client: Any, jp_asyncio_loop: Any) -> Any:
    """The running server's LLMChat extension, once its model (or stand-in) is loaded or failed."""
    (app,) = jp_serverapp.extension_manager.extension_apps["jupyter_llmchat"]
    jp_asyncio_loop.run_until_complete(app.backend.wait_loaded(timeout=TIMEOUT))
    return app


class ChatClient:
    """A llmchat.v1 client for tests: send frames, read frames with timeouts."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.ws = connection
        self._ids = 0

    def next_id(self, prefix: str = "r") -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    async def send(self, type_: str, data: dict[str, Any] | None = None, **envelope: Any) -> str:
        request_id = envelope.pop("id", None) or self.next_id(type_.lower())
        frame = {"type": type_, "id": request_id, **envelope, "data": data if data is not None else {}}
        await self.ws.write_message(json.dumps(frame))
        return request_id

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        assert raw is not None, f"socket closed: {self.ws.close_code} {self.ws.close_reason}"
        return json.loads(raw)

    async def recv_type(self, *types: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Next frame of one of `types`, skipping others (e.g. Presence)."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] in types:
                return frame

    async def answer(self, message_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every Token of one answer, up to and including the final one."""
        tokens = []
        while True:
            frame = await self.recv_type("Token", timeout=timeout)
            if frame["data"]["message_id"] == message_id:
                tokens.append(frame)
                if frame["data"]["is_final"]:
                    return tokens

    async def join(self, room: str, **data: Any) -> dict[str, Any]:
        request_id = await self.send("Join", data, room=room)
        joined = await self.recv_type("Joined")
        assert joined["id"] == request_id
        return joined

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Read until the server closes the socket; returns (code, reason)."""
        async def drain() -> None:
            while await self.ws.read_message() is not None:
                pass

        await asyncio.wait_for(drain(), timeout)
        return self.ws.close_code, self.ws.close_reason

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def ws_url(jp_http_port: int, jp_base_url: str) -> str:
    return f"ws://127.0.0.1:{jp_http_port}{jp_base_url}llmchat/ws"


@pytest.fixture
def connect(ws_url: str) -> Any:
    """`await connect("tok-ada")` opens a socket as that user and reads its Welcome."""
    opened: list[ChatClient] = []

    async def _connect(
        token: str | None = "tok-ada", *, headers: dict[str, str] | None = None, welcome: bool = True, **kwargs: Any
    ) -> ChatClient:
        all_headers = dict(headers or {})
        if token:
            all_headers.setdefault("Authorization", f"token {token}")
        request = tornado.httpclient.HTTPRequest(ws_url, headers=all_headers, connect_timeout=30)
        connection = await tornado.websocket.websocket_connect(
            request, subprotocols=["llmchat.v1"], **kwargs
        )
        client = ChatClient(connection)
        opened.append(client)
        if welcome:
            frame = await client.recv()
            assert frame["type"] == "Welcome", frame
            client.welcome = frame
        return client

    yield _connect
    for client in opened:
        client.close()


@pytest.fixture
def api(jp_fetch: Any) -> Any:
    """`await api("GET", "rooms")` → (status, json) as the user of `token`."""

    async def _api(method: str, *path: str, body: Any = None, token: str = "tok-ada", **params: Any) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "headers": {"Authorization": f"token {token}"}, "raise_error": False}
        if body is not None:
            kwargs["body"] = json.dumps(body) if not isinstance(body, (bytes, str)) else body
        if params:
            kwargs["params"] = params
        response = await jp_fetch("llmchat", "api", *path, **kwargs)
        text = response.body.decode() if response.body else ""
        return response.code, (json.loads(text) if text.startswith(("{", "[")) else text)

    return _api
