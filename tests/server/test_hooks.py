"""Server-side hooks and the server-side API: installed from the `LLMChat.hooks` trait and
from entry points, isolated from each other and from the connection, and `broadcast`.
The server's model is the stand-in (fast tier)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from jupyter_llmchat.server.hooks import ENTRY_POINT_GROUP, HookRegistry, install_hooks

pytestmark = pytest.mark.fast

EVENTS: list[tuple[Any, ...]] = []


# --- installers, found by import string ("test_hooks:...") or entry point


def install_broken(service: Any) -> None:
    """A hook of every kind that raises, sync and async."""

    @service.on_connect
    def on_connect(service: Any, connection: Any) -> None:
        raise RuntimeError("bug in an on_connect hook")

    async def on_message(service: Any, connection: Any, kind: str, envelope: Any, data: Any) -> None:
        raise RuntimeError("bug in an async on_message hook")

    service.on_message(on_message)
    service.on_message(lambda *args: 1 / 0)
    service.on_disconnect(lambda *args: [][1])
    service.on_custom("poll", lambda *args: {}["missing"])


def install_recorder(service: Any) -> None:
    """Well-behaved hooks, registered after the broken ones: they must still run."""
    service.on_connect(lambda s, connection: EVENTS.append(("connect", connection.user.username)))
    service.on_message(lambda s, connection, kind, envelope, data: EVENTS.append(("message", kind)))
    service.on_disconnect(lambda s, connection: EVENTS.append(("disconnect", connection.user.username)))

    @service.on_custom("poll")
    async def tally(s: Any, connection: Any, room: str | None, kind: str, payload: Any) -> None:
        EVENTS.append(("poll", room, payload))
        await s.broadcast_to_room(room, f"vote for {payload['choice']} counted", username="poll-bot", author_name="Poll")


def install_failing(service: Any) -> None:
    raise RuntimeError("bug in an installer")


def install_from_entry_point(service: Any) -> None:
    @service.on_custom("echo")
    def echo(s: Any, connection: Any, room: str | None, kind: str, payload: Any) -> None:
        s.send_to(connection.client_id, "Custom", {"kind": "echo", "payload": payload})


# --- trait-installed hooks, through a real server


@pytest.fixture
def llmchat_config() -> dict[str, Any]:
    EVENTS.clear()
    return {
        "hooks": [
            "test_hooks:install_broken",
            "test_hooks:install_failing",
            "no_such_module:install",
            "test_hooks:install_recorder",
        ]
    }


async def test_hooks_that_raise_do_not_break_the_room(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("hooks")
    await bob.join("hooks")
    await ada.send("Text", {"content": "still here?"}, room="hooks")
    text = await bob.recv_type("Text")
    assert text["data"]["content"] == "still here?"
    await ada.send("Custom", {"kind": "poll", "payload": {"choice": "B"}}, room="hooks")
    # The hooks run before the Custom is relayed, so the tally's Text comes first.
    tallied, relayed = await bob.recv_type("Text", "Custom"), await bob.recv_type("Text", "Custom")
    assert relayed["type"] == "Custom" and relayed["data"]["payload"] == {"choice": "B"}
    assert relayed["data"]["author"]["username"] == "ada"
    assert tallied["data"]["author"] == {"username": "poll-bot", "name": "Poll", "kind": "bot"}
    ada.close()
    left = await bob.recv_type("Presence")
    assert [person["username"] for person in left["data"]["left"]] == ["ada"]
    await bob.send("Ping")
    assert (await bob.recv_type("Pong"))["type"] == "Pong"  # the socket is fine after all that
    assert ("connect", "ada") in EVENTS and ("connect", "bob") in EVENTS
    assert ("message", "Text") in EVENTS and ("message", "Custom") in EVENTS
    assert ("poll", "hooks", {"choice": "B"}) in EVENTS
    assert ("disconnect", "ada") in EVENTS


async def test_broadcast_reaches_every_live_room(chat_server, connect):
    ada, bob = await connect("tok-ada"), await connect("tok-bob")
    await ada.join("room-1")
    await bob.join("room-2")
    posted = await chat_server.service.broadcast("Server restarts in 5 minutes", username="admin", author_name="Admin")
    assert set(posted) >= {"room-1", "room-2"}
    for client, room in ((ada, "room-1"), (bob, "room-2")):
        text = await client.recv_type("Text")
        assert (text["room"], text["seq"]) == (room, posted[room][1])
        assert text["data"]["author"] == {"username": "admin", "name": "Admin", "kind": "bot"}


# --- entry points


@pytest.fixture
def entry_point_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path that declares a `jupyter_llmchat.hooks` entry point."""
    dist = tmp_path / "llmchat_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llmchat-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\necho = test_hooks:install_from_entry_point\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("llmchat_config", [{}])
async def test_entry_point_hooks_are_installed(entry_point_dir, chat_server, connect):
    ada = await connect("tok-ada")
    await ada.send("Custom", {"kind": "echo", "payload": [1, 2]})
    echoed = await ada.recv_type("Custom")
    assert echoed["data"] == {"kind": "echo", "payload": [1, 2]}


@pytest.mark.parametrize("llmchat_config", [{"hook_entry_points": False}])
async def test_entry_points_can_be_switched_off(entry_point_dir, chat_server):
    assert "echo" not in chat_server.service.hooks.custom


# --- the registry and the installer loop themselves


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _logger() -> tuple[logging.Logger, ListHandler]:
    log = logging.getLogger(f"llmchat-test-{id(object())}")
    log.propagate = False
    handler = ListHandler()
    log.addHandler(handler)
    return log, handler


def test_failing_installers_are_logged_and_skipped():
    log, handler = _logger()
    specs = ["test_hooks:install_failing", "no_such_module:x", "test_hooks.install_nothing"]
    installed = install_hooks(object(), specs, use_entry_points=False, log=log)
    assert installed == ["LLMChat.hooks 'test_hooks.install_nothing'"]
    assert len([m for m in handler.messages if "failed; skipping it" in m]) == 2


def install_nothing(service: Any) -> None:
    pass


async def test_async_hooks_run_and_their_failures_are_logged():
    log, handler = _logger()
    registry = HookRegistry(log)
    seen: list[int] = []

    async def good(value: int) -> None:
        seen.append(value)

    async def bad(value: int) -> None:
        raise RuntimeError("async bug")

    registry.on_message.extend([bad, good, lambda value: 1 / 0])
    registry.run(registry.on_message, 7)
    await asyncio.sleep(0.05)
    assert seen == [7]
    assert sum("failed; ignoring it" in m for m in handler.messages) == 2
