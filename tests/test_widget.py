"""ChatWidget's Python side: traits, validation, the messages it sends its front end, and
the kernel-relay stub. (Front-end behaviour is covered by js/test and js/e2e.)

Meant for tests/test_widget.py; no server, kernel or browser needed.
"""

from __future__ import annotations

from typing import Any

import pytest
import traitlets

from jupyter_llmchat.widget import ChatWidget


@pytest.fixture
def widget(monkeypatch: pytest.MonkeyPatch) -> tuple[ChatWidget, list[dict[str, Any]]]:
    w = ChatWidget(room="general")
    sent: list[dict[str, Any]] = []
    # Capture what ipywidgets would put on the comm.
    monkeypatch.setattr(ChatWidget.__mro__[1], "send", lambda self, content, buffers=None: sent.append(content))
    return w, sent


def test_defaults_and_read_only_state() -> None:
    w = ChatWidget()
    assert w.room == "general"
    assert w.status == "connecting"
    assert w.last_seq == 0
    assert w.members == []
    assert w.ask_mode is True
    assert w.transport == "auto"
    assert len(w._uid) == 32
    assert ChatWidget()._uid != w._uid  # initialize() and render() meet through it


def test_front_end_bundle_is_wired() -> None:
    w = ChatWidget()
    esm = str(w._esm)
    assert "initialize" in esm and "render" in esm


@pytest.mark.parametrize("bad", ["", "-x", "has space", "x" * 129, "é"])
def test_room_names_are_validated(bad: str) -> None:
    with pytest.raises(traitlets.TraitError):
        ChatWidget(room=bad)
    w = ChatWidget(room="a.b:c-d_1")
    with pytest.raises(traitlets.TraitError):
        w.room = bad
    assert w.room == "a.b:c-d_1"


def test_send_and_ask_post_through_the_front_end(widget: tuple[ChatWidget, list[dict[str, Any]]]) -> None:
    w, sent = widget
    tid = w.send("hello")
    gid = w.ask("Say hi", max_tokens=8, temperature=0)
    w.cancel(gid)
    w.reconnect()
    assert sent == [
        {"kind": "send", "id": tid, "text": "hello"},
        {"kind": "ask", "id": gid, "prompt": "Say hi", "config": {"max_tokens": 8, "temperature": 0}},
        {"kind": "cancel", "id": gid},
        {"kind": "retry"},
    ]
    assert tid != gid and len(gid) <= 128
    # never a user name: the server knows who is asking
    assert all("name" not in m and "author" not in m for m in sent)


def test_bad_requests_are_refused(widget: tuple[ChatWidget, list[dict[str, Any]]]) -> None:
    w, sent = widget
    with pytest.raises(ValueError):
        w.send("   ")
    with pytest.raises(ValueError):
        w.ask("")
    with pytest.raises(TypeError, match="unknown generation setting"):
        w.ask("x", temprature=0.1)
    with pytest.raises(TypeError):
        ChatWidget(config={"bogus": 1})
    assert sent == []


def test_widget_send_still_accepts_ipywidgets_content(widget: tuple[ChatWidget, list[dict[str, Any]]]) -> None:
    w, sent = widget
    assert w.send({"kind": "anything"}) is None
    assert sent == [{"kind": "anything"}]


def test_kernel_relay_stub_answers_with_an_error(widget: tuple[ChatWidget, list[dict[str, Any]]]) -> None:
    w, sent = widget
    w._on_front_end_msg(w, {"kind": "relay", "frame": {"type": "Join", "id": "j1", "room": "general", "data": {}}}, [])
    w._on_front_end_msg(w, {"kind": "relay", "frame": {"type": "Ping", "id": "p1", "data": {}}}, [])
    w._on_front_end_msg(w, {"kind": "other"}, [])
    assert sent == [
        {"kind": "relay", "frame": {"type": "Error", "id": "j1", "data": {"message": "kernel relay not available yet", "code": 501}}},
        {"kind": "relay", "frame": {"type": "Pong", "id": "p1", "data": {}}},
    ]


def test_kernel_relay_handler_is_pluggable(widget: tuple[ChatWidget, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    w, sent = widget
    seen: list[dict[str, Any]] = []

    def relay(widget: ChatWidget, frame: dict[str, Any]) -> None:
        seen.append(frame)
        widget.relay_to_front_end({"type": "Joined", "id": frame["id"], "room": "general", "data": {"seq": 0, "epoch": "e", "members": []}})

    monkeypatch.setattr(ChatWidget, "relay_handler", relay)
    w._on_front_end_msg(w, {"kind": "relay", "frame": {"type": "Join", "id": "j2", "room": "general", "data": {}}}, [])
    assert seen == [{"type": "Join", "id": "j2", "room": "general", "data": {}}]
    assert sent[0]["frame"]["type"] == "Joined"
