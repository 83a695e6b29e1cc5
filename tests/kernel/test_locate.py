"""Finding the user's llmchat service: its discovery file, the locks, the order (no model, no server).

The processes themselves (autostart, idle exit, hand-over) are tested in test_autostart.py
and tests/server/test_standalone.py; here the files and the choices, in milliseconds.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_llmchat.kernel.discovery import running_services
from jupyter_llmchat.kernel.errors import ExtensionNotEnabled, ServerNotFound
from jupyter_llmchat.kernel.locate import autostart_enabled, locate
from jupyter_llmchat.runtime_secret import write_secret
from jupyter_llmchat.service_file import SERVICE_LOCK, LockBusy, held, read_service_files, write_service_file

pytestmark = pytest.mark.fast


def a_service(runtime: Path, pid: int | None = None, port: int = 1) -> Path:
    """A discovery file and secret as a running service writes them (this process's pid by default)."""
    path = write_service_file(runtime, {"url": f"http://127.0.0.1:{port}/", "port": port, "history_path": ""})
    write_secret(runtime)
    if pid is not None:  # pretend another process wrote it
        moved = path.with_name(f"llmchat-service-{pid}.json")
        info = json.loads(path.read_text())
        info["pid"] = pid
        moved.write_text(json.dumps(info))
        path.unlink()
        return moved
    return path


def test_the_discovery_file_is_the_users_own_and_read_back(tmp_path: Path) -> None:
    path = a_service(tmp_path)
    assert path.name == f"llmchat-service-{os.getpid()}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [found] = running_services(str(tmp_path))
    assert (found.pid, found.url, found.service, found.found_by) == (os.getpid(), "http://127.0.0.1:1/", True, "the llmchat service")
    assert found.authorization and found.authorization.startswith("llmchat-secret ")


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to give a file to another user")
def test_another_users_service_is_never_used(tmp_path: Path) -> None:
    path = a_service(tmp_path)
    os.chown(path, 4242, 4242)
    assert read_service_files(tmp_path) == [] and running_services(str(tmp_path)) == []


def test_a_service_that_died_is_not_used(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    a_service(tmp_path, pid=int(dead))
    assert running_services(str(tmp_path)) == []


def test_a_lock_held_by_another_process_is_busy_and_names_it(tmp_path: Path) -> None:
    code = (
        "import sys, time; from jupyter_llmchat.service_file import held\n"
        f"with held({str(tmp_path)!r}, {SERVICE_LOCK!r}):\n    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy, match=rf"held by pid {holder.pid}"):
            with held(tmp_path, SERVICE_LOCK, wait=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with held(tmp_path, SERVICE_LOCK):  # released with its holder
        assert (tmp_path / SERVICE_LOCK).read_text() == str(os.getpid())


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("yes", True), ("0", False), ("false", False), ("OFF", False)])
def test_the_autostart_switch(value: str | None, on: bool) -> None:
    assert autostart_enabled({} if value is None else {"LLMCHAT_AUTOSTART": value}) is on


def test_a_ready_service_is_used_and_nothing_is_started(tmp_path: Path) -> None:
    a_service(tmp_path, port=4321)
    asked: list[str] = []

    def probe(server: Any) -> dict[str, Any]:
        asked.append(server.url)
        return {"model": {"loaded": True}}

    found = locate(None, None, probe, environ={"LLMCHAT_AUTOSTART": "0"}, directory=str(tmp_path), on_start=lambda: asked.append("start"))
    assert found.url == "http://127.0.0.1:4321/" and asked == ["http://127.0.0.1:4321/"]


def test_without_autostart_nothing_is_started_and_the_error_says_what_to_do(tmp_path: Path) -> None:
    started: list[bool] = []
    with pytest.raises(ServerNotFound, match="LLMCHAT_AUTOSTART=off keeps one from being started"):
        locate(None, None, lambda s: {}, environ={"LLMCHAT_AUTOSTART": "off"}, directory=str(tmp_path), on_start=lambda: started.append(True))
    assert started == [] and not list(tmp_path.glob("llmchat-service-*.json"))


def test_an_explicit_url_is_used_as_given(tmp_path: Path) -> None:
    def probe(server: Any) -> dict[str, Any]:
        raise AssertionError("an explicit URL is not probed")

    found = locate("http://example.invalid:9/lab", "t0k", probe, environ={}, directory=str(tmp_path))
    assert (found.url, found.token, found.found_by) == ("http://example.invalid:9/lab/", "t0k", "given URL")


def test_a_server_without_llmchat_is_passed_over_for_one_with_it(tmp_path: Path) -> None:
    """The kernel's own server (here: the parent process's) has no llmchat; another one has."""
    for pid, port in ((os.getppid(), 1111), (os.getpid(), 2222)):
        info = {"pid": pid, "port": port, "hostname": "127.0.0.1", "base_url": "/", "token": "t", "secure": False}
        (tmp_path / f"jpserver-{pid}.json").write_text(json.dumps(info))

    def probe(server: Any) -> dict[str, Any]:
        if server.pid == os.getppid():
            raise ExtensionNotEnabled("404")
        return {"model": {"loaded": True}}

    found = locate(None, None, probe, environ={"LLMCHAT_AUTOSTART": "0"}, directory=str(tmp_path))
    assert (found.pid, found.url, found.found_by) == (os.getpid(), "http://127.0.0.1:2222/", "the newest running server with llmchat")
