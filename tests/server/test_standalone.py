"""`jupyter llmchat serve`: the service in a process of its own, as a user runs it.

Real processes, the real model, temporary Jupyter dirs (tests/support/services.py): its settings come
from the same config files as the extension's, only the runtime secret gets in, one runs per
runtime dir, it exits when idle (a REST call is activity), and a Jupyter server that starts
later takes its history file over.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from pathlib import Path

from support.kernels import LLMChatServer
from support.services import alive, service_env, service_files, start_serve, stop_services, terminate, wait_for_service


def test_serve_uses_the_config_files_lets_only_the_secret_in_runs_once_and_exits_when_idle(tmp_path: Path) -> None:
    env = service_env(tmp_path, {"n_ctx": 1536, "parallel": 3})
    process = start_serve(env, "--idle-timeout", "3", "--LLMChat.max_tokens=12")
    try:
        service = wait_for_service(env, process)
        # Discovery file and secret: this user's only.
        runtime = Path(env["JUPYTER_RUNTIME_DIR"])
        for path in (service.path, runtime / f"llmchat-{service.pid}.secret"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert service.pid == process.pid and service.url.startswith("http://127.0.0.1:")
        assert service.info["history_path"] == str((tmp_path / "data" / "llmchat" / "history.sqlite").resolve())

        # The settings of jupyter_server_config.json and of the command line, as for the extension.
        status, stats = service.request("GET", "llmchat/api/stats")
        assert status == 200 and (stats["model"]["n_ctx"], stats["model"]["parallel"]) == (1536, 3)

        # Nobody else: no credentials, a wrong secret, a Jupyter token, a foreign Host header.
        for authorization in (None, "llmchat-secret wrong", "token anything"):
            status, body = service.request("GET", "llmchat/api/stats", authorization=authorization)
            assert status == 403, (authorization, status, body)
        status, posted = service.request("POST", "llmchat/api/rooms/general/messages", {"content": "hello service"})
        assert status == 201 and posted["seq"] >= 1

        # A second service for the same runtime dir refuses to start. Meanwhile REST calls,
        # one every 0.5 s for longer than the idle timeout, keep the first one up: activity.
        second = start_serve(env)
        began = time.monotonic()
        while second.poll() is None or time.monotonic() - began < 5:
            last_call = time.monotonic()  # the service sees the call after this: its idle clock starts later
            assert service.request("GET", "llmchat/api/rooms")[0] == 200
            time.sleep(0.5)
        output = second.stdout.read() if second.stdout else b""
        assert second.returncode == 1 and b"another llmchat service runs" in output, output
        assert process.poll() is None
        # Then idle: it exits on its own, and takes its files with it.
        process.wait(timeout=30)
        waited = time.monotonic() - last_call
        assert process.returncode == 0 and 3 <= waited < 15, waited
        assert not service_files(env) and not (runtime / f"llmchat-{service.pid}.secret").exists()
    finally:
        terminate(process, 10)


def test_a_bad_setting_stops_serve_with_its_name(tmp_path: Path) -> None:
    env = service_env(tmp_path, {"n_ctx": 16})
    process = start_serve(env)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert b"n_ctx" in output, output
    assert not service_files(env)


def test_a_jupyter_server_takes_the_history_over_from_the_service(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    history = tmp_path / "root" / "history.sqlite"  # the file kernels.LLMChatServer gives its server
    process = start_serve(env, "--idle-timeout", "0", f"--LLMChat.history_path={history}")
    server = None
    try:
        service = wait_for_service(env, process)
        assert service.request("POST", "llmchat/api/rooms/handover/messages", {"content": "said to the service"})[0] == 201
        status, ack = service.request("POST", "llmchat/api/rooms/handover/generate", {"prompt": "Say hi", "config": {"max_tokens": 16}})
        assert status == 202
        # A Jupyter server with the extension and the same history file starts: it asks the
        # service to hand over, the service lets its answer finish and exits, the server opens the file.
        server = LLMChatServer(tmp_path / "root", Path(env["JUPYTER_RUNTIME_DIR"]), env=env)
        server.start(timeout=120)
        process.wait(timeout=60)
        assert not service_files(env)
        server.wait_for_model(timeout=120)
        messages = server.get("llmchat/api/rooms/handover/messages")["messages"]
        contents = {m["data"]["message_id"]: m["data"] for m in messages}
        assert any(m["content"] == "said to the service" for m in contents.values())
        answer = contents[ack["message_id"]]
        assert answer["finish_reason"] in ("stop", "length") and answer["content"], answer
    finally:
        if server is not None:
            server.stop()
        terminate(process, 10)
        stop_services(env)


def test_a_service_handing_over_takes_no_new_question_but_finishes_the_running_one(tmp_path: Path) -> None:
    """Only the owner may ask (runtime secret); then new questions get 503 with the reason, the
    running answer is finished and stored (not cut short), and the service exits."""
    env = service_env(tmp_path, {"max_tokens": 64})
    process = start_serve(env, "--idle-timeout", "0")
    try:
        service = wait_for_service(env, process)
        assert service.request("POST", "llmchat/api/service/handover", {}, authorization="token x")[0] == 403
        assert process.poll() is None
        question = {"prompt": "Count from one to twenty in words.", "config": {"max_tokens": 64, "temperature": 0}}
        status, running = service.request("POST", "llmchat/api/rooms/drain/generate", question)
        assert status == 202
        status, reply = service.request("POST", "llmchat/api/service/handover", {})
        assert status == 202 and reply["pid"] == service.pid
        status, refused = service.request("POST", "llmchat/api/rooms/drain/generate", {"prompt": "And another?"})
        assert status == 503 and "handing over" in refused["message"], (status, refused)
        process.wait(timeout=60)
        assert process.returncode == 0 and not alive(service.pid) and not service_files(env)
        history = tmp_path / "data" / "llmchat" / "history.sqlite"
        with sqlite3.connect(history) as db:
            (data,) = db.execute("SELECT data FROM messages WHERE message_id = ?", (running["message_id"],)).fetchone()
        stored = json.loads(data)
        assert stored["finish_reason"] in ("stop", "length") and stored["content"], stored
    finally:
        terminate(process, 10)
