"""With no Jupyter server, the kernel side starts the user's llmchat service and shares it.

As a user meets it: a plain `python -c` asks and gets an answer; two processes asking at
once share one service (one model); a widget's relay says "starting the model service…"
while it starts and posts as the user. Real processes, real model, temporary Jupyter dirs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.services import Service, alive, service_env, service_files, stop_services

import jupyter_llmchat.kernel.api as kernel_api
from jupyter_llmchat.kernel.relay import STARTING_SERVICE
from jupyter_llmchat.kernel.widget import ChatWidget

ASK = (
    "import json, jupyter_llmchat as l\n"
    "from jupyter_llmchat.kernel.api import default_client\n"
    "text = ''.join(l.ask(None, 'Say hello.', max_tokens=8))\n"
    "print(json.dumps({'text': text, 'pid': default_client().server.pid, 'found_by': default_client().server.found_by}))\n"
)


def test_two_plain_pythons_with_no_server_start_one_service_and_share_it(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    started = time.monotonic()
    # Two processes race to start it: both use the one the first of them starts. Then the
    # documented one-liner finds it running.
    racers = [
        subprocess.Popen([sys.executable, "-c", ASK], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
        for _ in range(2)
    ]
    try:
        results = []
        for racer in racers:
            out, err = racer.communicate(timeout=240)
            assert racer.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        first_answers = time.monotonic() - started
        one_liner = subprocess.run(
            [sys.executable, "-c", "import jupyter_llmchat as l; print(''.join(l.ask(None, 'Name a colour.', max_tokens=6)))"],
            env=env, capture_output=True, timeout=120, cwd=tmp_path,
        )
        assert one_liner.returncode == 0 and one_liner.stdout.strip(), one_liner.stderr.decode()[-2000:]

        (path,) = service_files(env)  # one service, one model, for every process of the user
        service = Service(path)
        assert {r["pid"] for r in results} == {service.pid} and all(r["text"].strip() for r in results)
        assert {r["found_by"] for r in results} <= {"the llmchat service", "the llmchat service started for this user"}
        status, stats = service.request("GET", "llmchat/api/stats")
        assert status == 200 and stats["model"]["loaded"]
        assert alive(service.pid)  # detached: it outlives the processes that started it
        print(f"autostart: first answers after {first_answers:.1f} s")
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
        stop_services(env)


def test_a_widget_relay_starts_the_service_says_so_and_posts_as_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = service_env(tmp_path)
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "LLMCHAT_AUTOSTART", "LLMCHAT_URL", "LLMCHAT_TOKEN"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setattr(kernel_api, "_default", None)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(ChatWidget.__mro__[1], "send", lambda self, content, buffers=None: sent.append(content))
    widget = ChatWidget(room="autostart")
    try:
        widget._on_front_end_msg(widget, {"kind": "relay", "cid": "k1", "frame": {"type": "Join", "id": "j1", "room": "autostart", "data": {}}}, [])
        joined = _wait(lambda: next((m for m in list(sent) if m.get("kind") == "relay" and m["frame"]["type"] == "Joined"), None), 240)
        kinds = [m.get("kind") for m in sent]
        assert {"kind": "relay_status", "text": STARTING_SERVICE} in sent
        assert kinds.index("relay_status") < kinds.index("relay")  # said before anything else came back
        assert not [m for m in sent if m.get("kind") == "relay" and m["frame"]["type"] == "Error"]
        assert joined["frame"]["id"] == "j1"

        text = {"type": "Text", "id": "t1", "room": "autostart", "data": {"content": "typed in the widget"}}
        widget._on_front_end_msg(widget, {"kind": "relay", "cid": "k1", "frame": text}, [])
        echoed = _wait(lambda: next((m["frame"] for m in list(sent) if m.get("kind") == "relay" and m["frame"]["type"] == "Text"), None), 30)
        assert echoed["data"]["author"]["kind"] == "user"  # the user's own words, not a bot post
    finally:
        widget.close()
        stop_services(env)


def _wait(condition: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
