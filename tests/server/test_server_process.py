"""The extension in a real `jupyter server` process: auto-enabled, configured from the
command line, and its history surviving a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error

import pytest
import websocket

from support.servers import running_server


def test_the_extension_is_enabled_on_install():
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True, text=True, timeout=60,
    )
    output = listing.stdout + listing.stderr
    assert "jupyter_llmchat" in output and "enabled" in output.split("jupyter_llmchat", 1)[1].splitlines()[0]


def _next_frame(ws: websocket.WebSocket) -> dict:
    """The next frame, past any `Stats` the server pushes while its model settles (docs/protocol.md)."""
    while True:
        frame = json.loads(ws.recv())
        if frame["type"] != "Stats":
            return frame


def _frames_until(ws: websocket.WebSocket, kind: str) -> list[dict]:
    frames = []
    while True:
        frames.append(_next_frame(ws))
        if frames[-1]["type"] == kind:
            return frames


def test_history_and_seq_survive_a_restart(tmp_path):
    args = [f"--LLMChat.history_path={tmp_path / 'chat.sqlite'}", "--LLMChat.parallel=2", "--LLMChat.n_ctx=2048"]
    with running_server(tmp_path, args) as server:
        assert server.wait_for_model()["loaded"]
        assert server.get("llmchat/api/stats")["model"]["parallel"] == 2  # the command line reached the traits
        server.post("llmchat/api/rooms/keep/messages", {"content": "remember me"})
        ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=60)
        ws.recv()  # Welcome
        ws.send(json.dumps({"type": "Join", "room": "keep", "data": {}}))
        joined = _frames_until(ws, "Joined")[-1]
        ws.send(json.dumps({"type": "Generate", "room": "keep", "data": {"prompt": "Hi", "config": {"max_tokens": 4}}}))
        while True:
            frame = json.loads(ws.recv())
            if frame["type"] == "Token" and frame["data"]["is_final"]:
                break
        head_before, epoch_before = frame["seq"], joined["data"]["epoch"]
        ws.close()
    with running_server(tmp_path, args) as server:
        server.wait_for_model()
        history = server.get("llmchat/api/rooms/keep/messages")
        contents = [(m["data"]["author"]["kind"], m["data"]["content"]) for m in history["messages"]]
        assert contents[0] == ("bot", "remember me")
        assert [kind for kind, _ in contents] == ["bot", "user", "assistant"]
        assert history["head_seq"] >= head_before
        ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=60)
        ws.recv()
        ws.send(json.dumps({"type": "Join", "room": "keep", "data": {"since": head_before, "epoch": epoch_before}}))
        frames = _frames_until(ws, "History")
        assert [f["type"] for f in frames] == ["Joined", "Reset", "History"]
        assert frames[0]["data"]["epoch"] != epoch_before
        presence = _next_frame(ws)
        assert presence["type"] == "Presence" and presence["seq"] > head_before
        ws.close()


def test_an_answer_cut_by_a_shutdown_is_stored_as_far_as_it_got(tmp_path):
    """SIGTERM mid-answer: after the restart the room's history has the partial answer, marked."""
    args = [f"--LLMChat.history_path={tmp_path / 'chat.sqlite'}"]
    with running_server(tmp_path, args) as server:
        assert server.wait_for_model()["loaded"]
        ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=60)
        ws.recv()  # Welcome
        ws.send(json.dumps({"type": "Join", "room": "cut", "data": {}}))
        _frames_until(ws, "Joined")
        config = {"max_tokens": 1000, "temperature": 0.8, "seed": 7}
        ws.send(json.dumps({"type": "Generate", "id": "g", "room": "cut", "data": {"prompt": "Tell me a long story.", "config": config}}))
        streamed = ""
        while len(streamed) < 20:
            frame = json.loads(ws.recv())
            if frame["type"] == "Token":
                assert not frame["data"]["is_final"], "the answer ended before the shutdown"
                streamed += frame["data"]["text"]
        server.stop()  # SIGTERM while the answer is still running
        ws.close()
    with running_server(tmp_path, args) as server:
        stored = server.get("llmchat/api/rooms/cut/messages")["messages"][-1]["data"]
        assert stored["author"]["kind"] == "assistant"
        assert stored["finish_reason"] == "error" and stored["error"] == "server shutting down"
        assert stored["content"].startswith(streamed)


def test_a_setting_given_twice_stops_the_extension_and_names_it(tmp_path):
    # Jupyter itself logs the error and runs the extension on all defaults (writing the
    # default history file, say): the extension refuses to start instead.
    history = tmp_path / "never.sqlite"
    args = [f"--LLMChat.history_path={history}", "--LLMChat.max_tokens=8", "--LLMChat.max_tokens=12"]
    with running_server(tmp_path, args) as server:
        try:
            server.get("llmchat/api/stats")
        except urllib.error.HTTPError as error:  # the routes answer why (test_config_failure.py)
            assert error.code == 503, error
            assert "max_tokens only accepts one value" in json.loads(error.read())["error"]
        else:
            raise AssertionError("the extension started anyway")
        log = server.log_path.read_text()
        assert "llmchat is not started: invalid setting: max_tokens only accepts one value" in log, log[-2000:]
    assert not history.exists()


def test_unknown_malformed_and_out_of_range_settings_are_refused_by_name():
    from traitlets import TraitError
    from traitlets.config import Config

    from jupyter_llmchat.server.extension import ConfigError, LLMChat

    app = LLMChat(config=Config({"LLMChat": {"max_tokenz": 8, "n_ctx": 2048}}))
    try:
        app.check_config()
    except ConfigError as error:
        assert "LLMChat.max_tokenz" in str(error) and "n_ctx" not in str(error)
    else:
        raise AssertionError("an unknown setting was accepted")
    for name, value in [("top_p", 2.0), ("n_ctx", 16), ("max_connections", 0), ("n_ctx", "lots")]:
        try:
            LLMChat(config=Config({"LLMChat": {name: value}}))
        except TraitError as error:
            assert name in str(error)
        else:
            raise AssertionError(f"{name}={value!r} was accepted")


@pytest.mark.fast
def test_a_prompt_budget_beyond_the_context_is_refused_by_name():
    from traitlets.config import Config

    from jupyter_llmchat.server.extension import ConfigError, LLMChat

    with pytest.raises(ConfigError, match=r"prompt_budget=4096 is more than n_ctx=2048"):
        LLMChat(config=Config({"LLMChat": {"n_ctx": 2048, "prompt_budget": 4096}})).check_config()
    LLMChat(config=Config({"LLMChat": {"n_ctx": 2048, "prompt_budget": 2048}})).check_config()


def test_a_second_server_on_the_same_history_file_is_refused_and_told_why(tmp_path):
    # Two servers numbering one room's seqs each on their own lost acknowledged posts.
    args = [f"--LLMChat.history_path={tmp_path / 'shared.sqlite'}"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a", args) as first, running_server(tmp_path / "b", args) as second:
        assert first.get("llmchat/api/rooms") == {"rooms": []}
        try:
            second.get("llmchat/api/stats")
        except urllib.error.HTTPError as error:
            assert error.code == 503 and "in use by another running Jupyter server" in json.loads(error.read())["error"]
        else:
            raise AssertionError("two servers own one history file")
        log = second.log_path.read_text()
        assert f"in use by another running Jupyter server (pid {first.process.pid})" in log, log[-2000:]
        for i in range(20):
            first.post("llmchat/api/rooms/one/messages", {"content": f"post {i}"})
        history = first.get("llmchat/api/rooms/one/messages?limit=100")["messages"]
        assert [m["data"]["content"] for m in history] == [f"post {i}" for i in range(20)]
