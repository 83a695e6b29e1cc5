"""ChatWidget's Python side: traits, validation, send/ask/cancel through the kernel's own
client (and the front-end fallback), and the kernel relay.

The first tests need no server (fast tier); the last ones use real `jupyter server`
processes: a kernel started by a server posts with no front end at all, and the relay
carries a (simulated) front end's frames to a real server and back. (Front-end behaviour
is covered by js/test and js/e2e.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import traitlets
from support.kernels import Member, last_json, llmchat_server, run_cell, server_kernel

import jupyter_llmchat.kernel.api as kernel_api
from jupyter_llmchat.kernel.errors import ModelUnavailable, ServerNotFound
from jupyter_llmchat.kernel.context import describe_all
from jupyter_llmchat.kernel.relay import NO_SERVER_FROM_KERNEL, RELAY_QUEUE, KernelRelay
from jupyter_llmchat.kernel.widget import _STATIC as STATIC
from jupyter_llmchat.kernel.widget import NO_ERROR_NOTICE, ChatWidget

Sent = list[dict[str, Any]]


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What ipywidgets would put on the comm (from any thread)."""
    sent: Sent = []
    monkeypatch.setattr(ChatWidget.__mro__[1], "send", lambda self, content, buffers=None: sent.append(content))
    return sent


class FakeClient:
    """Stands in for the kernel's default `ChatClient`."""

    def broadcast(self, room: str, content: str, author_name: str | None = None) -> dict[str, Any]:
        self.calls.append(("broadcast", room, content, author_name))
        return {"message_id": f"m-{len(self.calls)}", "seq": len(self.calls)}

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse: Exception | None = None

    def generate(self, room: str, prompt: str, **config: Any) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(("generate", room, prompt, config))
        return {"message_id": f"m-{len(self.calls)}", "queue_position": 0}


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(kernel_api, "_default", fake)
    return fake


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel finds no server (VS Code, Colab...)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ServerNotFound("no running Jupyter server found")

    monkeypatch.setattr(kernel_api, "_default", None)
    monkeypatch.setattr(kernel_api, "connect", refuse)


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def relayed(sent: Sent, cid: str | None = None) -> list[dict[str, Any]]:
    return [m["frame"] for m in list(sent) if m.get("kind") == "relay" and m.get("cid") == cid]


def frame_of(sent: Sent, cid: str, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    return wait_for(lambda: next((f for f in relayed(sent, cid) if wanted(f)), None), what=what)


def relay(widget: ChatWidget, cid: str, frame: dict[str, Any]) -> None:
    widget._on_front_end_msg(widget, {"kind": "relay", "cid": cid, "frame": frame}, [])


# ---- traits -------------------------------------------------------------------------------


@pytest.mark.fast
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


@pytest.mark.fast
def test_front_end_bundle_is_the_built_module_anywidget_can_run(tmp_path: Path) -> None:
    """The widget ships the bundle built from js/ (not the "not built" notice), and that ES
    module, run by Node, default-exports what anywidget calls: a factory giving each widget
    model its own `initialize` and `render`."""
    esm = str(ChatWidget()._esm)
    built = STATIC / "widget.js"
    assert built.is_file() and esm == built.read_text(encoding="utf-8")
    module = tmp_path / "widget.mjs"
    module.write_text(esm, encoding="utf-8")
    probe = (
        "const { default: factory } = await import(process.argv[1]);"
        "const [one, two] = [factory(), factory()];"
        "console.log(JSON.stringify({ factory: typeof factory, apart: one !== two,"
        " initialize: typeof one.initialize, render: typeof one.render }));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", probe, module.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"factory": "function", "apart": True, "initialize": "function", "render": "function"}


@pytest.mark.fast
def test_highlighter_ships_beside_the_widget_not_inside_it() -> None:
    """The front end imports it only when a code block appears (docs/widget.md)."""
    w = ChatWidget()
    assert "registerLanguage" in w._highlighter_esm and "highlight" in w._highlighter_esm
    assert "registerLanguage" not in str(w._esm)
    assert "_highlighter_esm" in w.keys  # synced with the model, as a string


@pytest.mark.fast
@pytest.mark.parametrize("bad", ["", "-x", "has space", "x" * 129, "é"])
def test_room_names_are_validated(bad: str) -> None:
    with pytest.raises(traitlets.TraitError):
        ChatWidget(room=bad)
    w = ChatWidget(room="a.b:c-d_1")
    with pytest.raises(traitlets.TraitError):
        w.room = bad
    assert w.room == "a.b:c-d_1"


# ---- send / ask / cancel ------------------------------------------------------------------


@pytest.mark.fast
def test_send_and_ask_post_through_the_kernel_client(capture: Sent, fake_client: FakeClient) -> None:
    w = ChatWidget(room="general", config={"max_tokens": 32, "temperature": 0.5})
    assert w.send("hello") == "m-1"
    assert w.send("done", author_name="Training job") == "m-2"
    assert w.ask("Say hi", temperature=0) == "m-3"  # the call's settings over the trait's
    assert fake_client.calls == [
        ("broadcast", "general", "hello", None),
        ("broadcast", "general", "done", "Training job"),
        ("generate", "general", "Say hi", {"max_tokens": 32, "temperature": 0}),
    ]
    assert capture == []  # nothing through the front end: no view needed, never posted twice
    assert w.fallback_reason == ""


@pytest.mark.fast
def test_without_a_reachable_server_send_and_ask_fall_back_to_the_front_end(capture: Sent, no_server: None) -> None:
    w = ChatWidget(room="general")
    tid = w.send("hello")
    gid = w.ask("Say hi", max_tokens=8, temperature=0)
    assert w.cancel(gid) is None
    w.reconnect()
    assert capture == [
        {"kind": "send", "id": tid, "text": "hello"},
        {"kind": "ask", "id": gid, "prompt": "Say hi", "config": {"max_tokens": 8, "temperature": 0}},
        {"kind": "cancel", "id": gid},
        {"kind": "retry"},
    ]
    assert tid != gid and len(gid) <= 128
    assert "no running Jupyter server" in w.fallback_reason
    # never a user name: the server knows who is asking
    assert all("name" not in m and "author" not in m for m in capture)


@pytest.mark.fast
def test_bad_requests_are_refused_before_anything_is_sent(capture: Sent, fake_client: FakeClient) -> None:
    w = ChatWidget(room="general")
    with pytest.raises(ValueError):
        w.send("   ")
    with pytest.raises(ValueError):
        w.ask("")
    with pytest.raises(TypeError, match="unknown generation setting"):
        w.ask("x", temprature=0.1)
    with pytest.raises(TypeError):
        ChatWidget(config={"bogus": 1})
    with pytest.raises(ValueError):
        w.cancel("")
    assert capture == [] and fake_client.calls == []


@pytest.fixture
def fail_a_cell(monkeypatch: pytest.MonkeyPatch) -> Callable[[], ZeroDivisionError]:
    """Leave what IPython leaves after a failing cell: sys.last_type/value/traceback (and last_exc).

    Called inside the test: pytest clears sys.last_* itself just before running it.
    """

    def fail() -> ZeroDivisionError:
        try:
            1 / 0
        except ZeroDivisionError as error:
            caught = error
        monkeypatch.setattr(sys, "last_type", type(caught), raising=False)
        monkeypatch.setattr(sys, "last_value", caught, raising=False)
        monkeypatch.setattr(sys, "last_traceback", caught.__traceback__, raising=False)
        monkeypatch.setattr(sys, "last_exc", caught, raising=False)
        return caught

    return fail


@pytest.fixture
def no_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        monkeypatch.delattr(sys, name, raising=False)


def press_ask_error(w: ChatWidget) -> None:
    w._on_front_end_msg(w, {"kind": "ask_error", "id": "e-1"}, [])


@pytest.mark.fast
def test_ask_about_the_last_error_sends_it_as_an_attachment(capture: Sent, fake_client: FakeClient, fail_a_cell: Callable[[], ZeroDivisionError]) -> None:
    last_error = fail_a_cell()
    w = ChatWidget(room="general", config={"max_tokens": 64})
    press_ask_error(w)
    [(what, room, prompt, options)] = fake_client.calls
    assert (what, room) == ("generate", "general")
    assert prompt.startswith("What does this error mean") and "ZeroDivisionError: division by zero" in prompt
    assert options["max_tokens"] == 64
    assert options["context"] == [last_error]  # described by kernel_context in the client
    [attachment] = describe_all(options["context"])
    assert attachment["kind"] == "error" and attachment["label"] == "ZeroDivisionError"
    assert "1 / 0" in attachment["text"] and attachment["text"].rstrip().endswith("ZeroDivisionError: division by zero")
    assert capture == [{"kind": "ask_error_done"}]  # the button is usable again; nothing else to say


@pytest.mark.fast
def test_ask_about_the_last_error_without_one_says_so(capture: Sent, fake_client: FakeClient, no_last_error: None) -> None:
    w = ChatWidget(room="general")
    assert w.ask_about_last_error() is None
    press_ask_error(w)
    assert fake_client.calls == []
    assert capture == [{"kind": "notice", "text": NO_ERROR_NOTICE, "level": "info"}, {"kind": "ask_error_done"}]


@pytest.mark.fast
def test_ask_about_the_last_error_reports_a_refusal_in_the_widget(capture: Sent, fake_client: FakeClient, fail_a_cell: Callable[[], Any]) -> None:
    fail_a_cell()
    fake_client.refuse = ModelUnavailable(503, "model not available: loading")
    w = ChatWidget(room="general")
    press_ask_error(w)  # a button callback: never raises into the comm
    assert capture[0]["kind"] == "notice" and capture[0]["level"] == "error"
    assert "model not available: loading" in capture[0]["text"]
    assert capture[-1] == {"kind": "ask_error_done"}
    with pytest.raises(ModelUnavailable):
        w.ask_about_last_error()  # from Python, the refusal is raised like ask()'s


@pytest.mark.fast
def test_ask_about_the_last_error_falls_back_to_the_front_end(capture: Sent, no_server: None, fail_a_cell: Callable[[], Any]) -> None:
    fail_a_cell()
    w = ChatWidget(room="general")
    press_ask_error(w)
    ask = capture[0]
    assert ask["kind"] == "ask" and "ZeroDivisionError" in ask["prompt"]
    [attachment] = ask["attachments"]
    assert attachment["kind"] == "error" and attachment["label"] == "ZeroDivisionError"
    assert "Traceback" in attachment["text"] and len(attachment["text"]) <= 16 * 1024
    assert capture[-1] == {"kind": "ask_error_done"}


@pytest.mark.fast
def test_ask_passes_context_and_new_thread_to_the_kernel_client(capture: Sent, fake_client: FakeClient) -> None:
    w = ChatWidget(room="general")
    table = {"a": [1, 2]}
    w.ask("Describe these", context=[table, "a note"], new_thread=True)
    w.ask("Describe this", context=table)  # one object need not be in a list
    w.ask("Plain")
    assert [call[3] for call in fake_client.calls] == [
        {"context": [table, "a note"], "new_thread": True},
        {"context": [table]},
        {},
    ]


@pytest.mark.fast
def test_widget_send_still_accepts_ipywidgets_content(capture: Sent, fake_client: FakeClient) -> None:
    w = ChatWidget()
    assert w.send({"kind": "anything"}) is None
    assert capture == [{"kind": "anything"}]
    assert fake_client.calls == []


# ---- the kernel relay, without a server -----------------------------------------------------


@pytest.mark.fast
def test_kernel_relay_handler_is_pluggable(capture: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake(widget: ChatWidget, frame: dict[str, Any]) -> None:
        seen.append(frame)
        widget.relay_to_front_end({"type": "Joined", "id": frame["id"], "room": "general", "data": {"seq": 0, "epoch": "e", "members": []}})

    monkeypatch.setattr(ChatWidget, "relay_handler", fake)
    w = ChatWidget()
    relay(w, "k1", {"type": "Join", "id": "j2", "room": "general", "data": {}})
    assert seen == [{"type": "Join", "id": "j2", "room": "general", "data": {}}]
    assert capture == [{"kind": "relay", "frame": {"type": "Joined", "id": "j2", "room": "general", "data": {"seq": 0, "epoch": "e", "members": []}}}]
    assert w._relay is None  # the kernel relay is never started


@pytest.mark.fast
def test_kernel_relay_passes_on_the_reason_of_a_server_whose_llmchat_did_not_start(capture: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers (503: a bad setting stopped llmchat) is reachable: its reason, not "no server"."""
    import jupyter_llmchat.kernel.relay as relay_module
    from jupyter_llmchat.kernel.errors import ExtensionNotStarted

    reason = "llmchat is not started: invalid setting: The 'max_tokens' trait of a LLMChat instance expected an int, not the str 'abc'."

    def not_started(**_: Any) -> Any:  # whatever the relay passes (on_start, …)
        raise ExtensionNotStarted(503, reason)

    monkeypatch.setattr(relay_module, "open_kernel_socket", not_started)
    w = ChatWidget(room="general")
    relay(w, "k1", {"type": "Join", "id": "j1", "room": "general", "data": {}})
    error = frame_of(capture, "k1", lambda f: f["type"] == "Error", "the relay's Error")
    assert error["id"] == "j1" and error["data"] == {"code": 503, "message": reason}
    w.close()


@pytest.mark.fast
def test_kernel_relay_without_a_server_answers_503(capture: Sent, no_server: None) -> None:
    w = ChatWidget(room="general")
    relay(w, "k1", {"type": "Join", "id": "j1", "room": "general", "data": {}})
    w._on_front_end_msg(w, {"kind": "other"}, [])
    error = frame_of(capture, "k1", lambda f: f["type"] == "Error", "the relay's Error")
    assert error["id"] == "j1"
    assert error["data"]["code"] == 503
    assert error["data"]["message"].startswith(NO_SERVER_FROM_KERNEL)
    assert "no running Jupyter server found" in error["data"]["message"]
    # Each new attempt (the UI's Retry) looks for a server again.
    relay(w, "k2", {"type": "Join", "id": "j2", "room": "general", "data": {}})
    assert frame_of(capture, "k2", lambda f: f["type"] == "Error", "second Error")["id"] == "j2"
    w.close()


@pytest.mark.fast
def test_kernel_relay_queue_is_bounded(capture: Sent) -> None:
    release = threading.Event()

    def slow_connect() -> Any:
        release.wait(10)
        raise ServerNotFound("gone")

    w = ChatWidget(room="general")
    kernel_relay = KernelRelay(w._send_to_front_end, w.relay_to_front_end, connect=slow_connect)
    for n in range(RELAY_QUEUE + 1):
        kernel_relay.handle({"type": "Ping", "id": f"p{n}", "data": {}}, "k1")
    full = relayed(capture, "k1")
    assert full == [{"type": "Error", "id": f"p{RELAY_QUEUE}", "data": {"message": "kernel relay: too many frames waiting for the server", "code": 429}}]
    release.set()
    wait_for(lambda: len(relayed(capture, "k1")) == RELAY_QUEUE + 1, what="503 for every queued frame")
    kernel_relay.close()


# ---- with real servers ----------------------------------------------------------------------


def test_a_kernel_posts_and_asks_with_no_front_end(tmp_path: Path) -> None:
    """A kernel started by a real server: no browser, no view; a plain socket sees the posts."""
    with llmchat_server(tmp_path / "root", tmp_path / "runtime", ["--LLMChat.max_tokens=64"]) as server:
        assert server.wait_for_model()["loaded"]
        member = Member(server, "nofe")
        try:
            with server_kernel(server) as kernel:
                output = run_cell(
                    kernel,
                    """
                    import json
                    from jupyter_llmchat import ChatWidget
                    w = ChatWidget(room="nofe")          # never displayed
                    sent = w.send("x")
                    named = w.send("epoch 1 done", author_name="Training job")
                    asked = w.ask("Say hi.", max_tokens=4, temperature=0)
                    print(json.dumps([sent, named, asked, w.fallback_reason]))
                    """,
                )
                sent, named, asked, reason = last_json(output)
                assert reason == ""
                first = member.next(lambda f: f["type"] == "Text")
                assert first["data"]["message_id"] == sent and first["data"]["content"] == "x"
                assert first["data"]["author"]["kind"] == "bot" and first["data"]["author"]["name"] == "notebook"
                second = member.next(lambda f: f["type"] == "Text")
                assert second["data"]["author"]["name"] == "Training job"
                prompt = member.next(lambda f: f["type"] == "Text")
                assert prompt["data"]["content"] == "Say hi." and prompt["data"]["author"]["kind"] == "bot"
                tokens = member.answer(asked)
                assert tokens[-1]["data"]["finish_reason"] in ("stop", "length")
                # Only once, although... there is no view at all: nothing else arrives.
                member.ws.settimeout(1.0)
                with pytest.raises(Exception):
                    member.next(lambda f: f["type"] == "Text")
                member.ws.settimeout(60)

                # Cancel: the kernel may stop its own answers, not a browser user's.
                theirs = Member(server, "nofe")
                theirs.ws.send('{"type":"Generate","id":"g1","room":"nofe","data":{"prompt":"Count to ten.","config":{"max_tokens":8}}}')
                ack = theirs.next(lambda f: f["type"] == "Ack")
                their_id = ack["data"]["message_id"]
                output = run_cell(
                    kernel,
                    f"""
                    import json
                    from jupyter_llmchat import ChatRequestError
                    outcomes = [w.cancel({asked!r})]        # finished already: False
                    for answer_id in ({their_id!r}, "m-unknown"):
                        try:
                            outcomes.append(w.cancel(answer_id))
                        except ChatRequestError as error:
                            outcomes.append(error.code)
                    mine = w.ask("Write a very long story about a dragon.", max_tokens=64, temperature=0)
                    outcomes.append(w.cancel(mine))         # True: it is still running
                    print(json.dumps([outcomes, mine]))
                    """,
                )
                outcomes, mine = last_json(output)
                assert outcomes == [False, 403, 404, True]
                assert member.answer(mine)[-1]["data"]["finish_reason"] == "cancelled"
                theirs.close()

                # "Ask about the last error": IPython's own sys.last_* after a failing cell.
                with pytest.raises(AssertionError, match="ZeroDivisionError"):
                    run_cell(kernel, "ratio = 1 / 0")
                output = run_cell(kernel, "print(json.dumps(w.ask_about_last_error(max_tokens=8, temperature=0)))")
                about = last_json(output)
                question = member.next(lambda f: f["type"] == "Text" and "What does this error mean" in f["data"]["content"])
                assert "ZeroDivisionError: division by zero" in question["data"]["content"]
                [attached] = question["data"]["attachments"]
                assert attached["kind"] == "error" and attached["label"] == "ZeroDivisionError" and attached["chars"] > 0
                assert "text" not in attached  # the room shows what was attached, not the traceback
                assert member.answer(about)[-1]["data"]["finish_reason"] in ("stop", "length")
        finally:
            member.close()


def test_kernel_relay_to_a_real_server(tmp_path: Path, capture: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay as a kernel runs it: discovery + runtime secret, frames both ways, drops, no server."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("LLMCHAT_URL", raising=False)
    monkeypatch.delenv("LLMCHAT_TOKEN", raising=False)
    monkeypatch.setattr(kernel_api, "_default", None)
    w = ChatWidget(room="relay")
    with llmchat_server(tmp_path / "root", runtime) as server:
        member = Member(server, "relay")
        try:
            relay(w, "k1", {"type": "Join", "id": "j1", "room": "relay", "data": {}})
            welcome = frame_of(capture, "k1", lambda f: f["type"] == "Welcome", "Welcome")
            assert relayed(capture, "k1")[0] is welcome  # first, as on a socket of its own
            owner = welcome["data"]["user"]["username"]
            joined = frame_of(capture, "k1", lambda f: f["type"] == "Joined", "Joined")
            assert joined["id"] == "j1" and owner in [m["username"] for m in joined["data"]["members"]]
            frame_of(capture, "k1", lambda f: f["type"] == "History", "History")

            # front end → server → every member, and server → front end
            relay(w, "k1", {"type": "Text", "id": "t1", "room": "relay", "data": {"content": "from the page"}})
            text = member.next(lambda f: f["type"] == "Text")
            assert text["data"]["content"] == "from the page" and text["data"]["author"]["username"] == owner
            assert text["data"]["author"]["kind"] == "user"  # relayed from a widget: the user's own, not a bot post
            server.post("llmchat/api/rooms/relay/messages", {"content": "from REST"})
            frame_of(capture, "k1", lambda f: f["type"] == "Text" and f["data"]["content"] == "from REST", "REST post")
            relay(w, "k1", {"type": "Ping", "id": "p1", "data": {}})
            assert frame_of(capture, "k1", lambda f: f["type"] == "Pong", "Pong")["id"] == "p1"
            last_seq = max(f.get("seq") or 0 for f in relayed(capture, "k1"))

            # A socket that dies is reported to its front end, which comes back with since.
            w._relay.drop_sockets()
            closed = wait_for(lambda: [m for m in list(capture) if m.get("kind") == "relay_closed"], what="relay_closed")
            assert closed[0]["cid"] == "k1" and isinstance(closed[0]["code"], int)
            server.post("llmchat/api/rooms/relay/messages", {"content": "missed"})
            relay(w, "k1", {"type": "Ping", "id": "late", "data": {}})  # a late frame of the dead connection: dropped
            relay(w, "k2", {"type": "Join", "id": "j2", "room": "relay", "data": {"since": last_seq, "epoch": joined["data"]["epoch"]}})
            missed = frame_of(capture, "k2", lambda f: f["type"] == "Text" and f["data"]["content"] == "missed", "replay")
            assert missed["seq"] == last_seq + 1 or missed["seq"] > last_seq
            assert not [f for f in relayed(capture, "k1") if f.get("id") == "late"]
            assert not [f for f in relayed(capture, "k2") if f["type"] == "History"]  # resumed, not reloaded

            # The front end closing its connection closes the kernel's socket.
            w._on_front_end_msg(w, {"kind": "relay_close", "cid": "k2"}, [])
            wait_for(lambda: w._relay.connections == 0, what="relay socket closed")
        finally:
            member.close()
    # No server any more: a clear 503, and the UI stops trying.
    relay(w, "k3", {"type": "Join", "id": "j3", "room": "relay", "data": {}})
    error = frame_of(capture, "k3", lambda f: f["type"] == "Error", "503 without a server")
    assert error["id"] == "j3" and error["data"]["code"] == 503
    assert error["data"]["message"].startswith(NO_SERVER_FROM_KERNEL)
    w.close()
