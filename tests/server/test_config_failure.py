"""A bad `LLMChat` setting in a real `jupyter server` process: the extension does not start,
every llmchat route says why (HTTP 503, the socket's `Error 503`), the kernel client and
`jupyter llmchat status` show that reason, and the server still stops on the first signal."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import websocket

from support.servers import ServerProcess, running_server

ROUTES = ["llmchat/api/stats", "llmchat/api/rooms", "llmchat/api/rooms/r", "llmchat/api/rooms/r/messages", "llmchat/api/rooms/r/generate"]


def _answer_raw(server: ServerProcess, path: str, method: str = "GET", token: bool = True) -> tuple[int, bytes]:
    headers = {"Authorization": f"token {server.token}"} if token else {}
    body = json.dumps({"content": "hi", "prompt": "hi"}).encode() if method in ("POST", "PUT") else None
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _answer(server: ServerProcess, path: str, method: str = "GET", token: bool = True) -> tuple[int, dict]:
    status, raw = _answer_raw(server, path, method, token)
    return status, json.loads(raw or b"null")


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _stops_on(server: ServerProcess, signum: int, timeout: float = 20.0) -> float:
    """Seconds from the signal to the process's exit (fails if it is still running after `timeout`)."""
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signum)
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the server did not stop on {signal.Signals(signum).name}:\n{server.log_path.read_text()[-3000:]}") from None
    return time.monotonic() - started


def test_a_malformed_setting_leaves_every_route_answering_why(tmp_path):
    history = tmp_path / "never.sqlite"
    with running_server(tmp_path, [f"--LLMChat.history_path={history}", "--LLMChat.max_tokens=abc"]) as server:
        for path in ROUTES:
            for method in ("GET", "POST", "PUT", "DELETE"):
                status, body = _answer(server, path, method)
                assert status == 503, (method, path, status, body)
                assert "max_tokens" in body["error"] and "'abc'" in body["error"], body
                assert body["message"] == body["error"] and body["code"] == 503
        assert _answer(server, "llmchat/api/stats", token=False)[0] == 403  # a stranger learns nothing

        ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], subprotocols=["llmchat.v1"], timeout=10)
        frame = json.loads(ws.recv())
        assert frame["type"] == "Error" and frame["data"]["code"] == 503 and "max_tokens" in frame["data"]["message"], frame
        opcode, close = ws.recv_data_frame()
        assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(close.data[:2], "big") == 1011
        ws.close()

        from jupyter_llmchat import ExtensionNotStarted, connect

        client = connect(server.url, server.token)
        for call in (client.stats, lambda: client.ask("r", "hi")):
            with pytest.raises(ExtensionNotStarted, match="max_tokens"):
                call()

        status = subprocess.run(
            [sys.executable, "-m", "jupyter", "llmchat", "status", "--url", server.url, "--token", server.token],
            capture_output=True, text=True, timeout=60,
        )
        assert status.returncode == 1, status
        assert "not started" in status.stdout and "max_tokens" in status.stdout and "enable" not in status.stdout, status.stdout
        assert _stops_on(server, signal.SIGTERM) < 15
        log = server.log_path.read_text()
    assert not history.exists()
    assert "llmchat is not started: invalid setting: The 'max_tokens' trait" in log
    assert "Traceback" not in log and "AttributeError" not in log, log[-3000:]


@pytest.mark.parametrize(
    ("setting", "named", "signum"),
    [
        ("--LLMChat.n_ctx=-5", "'n_ctx'", signal.SIGINT),  # Ctrl-C, once (no terminal: no confirmation asked)
        ("--LLMChat.max_tokenz=5", "LLMChat.max_tokenz", signal.SIGTERM),
    ],
)
def test_an_out_of_range_or_unknown_setting_is_named_and_the_server_stops_on_the_first_signal(tmp_path, setting, named, signum):
    with running_server(tmp_path, [setting]) as server:
        status, raw = _answer_raw(server, "llmchat/api/stats")
        assert _stops_on(server, signum) < 15
        log = server.log_path.read_text()
    assert "Traceback" not in log and "AttributeError" not in log, log[-3000:]
    assert status == 503 and named in json.loads(raw)["error"], (status, raw)


def test_ctrl_c_twice_in_a_terminal_stops_a_server_whose_llmchat_did_not_start(tmp_path):
    """In a terminal Jupyter asks to confirm the first Ctrl-C; the second stops it (it used to hang)."""
    server = ServerProcess(tmp_path, ["--LLMChat.max_tokenz=5"])
    terminal, tty = pty.openpty()
    with open(server.log_path, "ab") as log:
        server.process = subprocess.Popen(server.command, stdin=tty, stdout=log, stderr=subprocess.STDOUT, env=server.env, cwd=tmp_path)
    os.close(tty)
    try:
        _wait(lambda: _answer_raw(server, "api/status")[0] == 200, 60, "the server answers")
        server.process.send_signal(signal.SIGINT)
        _wait(lambda: "Shut down this Jupyter server" in server.log_path.read_text(), 20, "the confirmation question")
        assert _stops_on(server, signal.SIGINT) < 15
        log_text = server.log_path.read_text()
        assert "Traceback" not in log_text and "AttributeError" not in log_text, log_text[-3000:]
    finally:
        server.stop()
        os.close(terminal)
