"""`jupyter llmchat` against a live server: tables, --json, discovery, clear errors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.kernels import NO_CLIENT_ENV, llmchat_server

from jupyter_llmchat.kernel.cli import main


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-runtime")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, runtime: Path):
    with llmchat_server(tmp_path_factory.mktemp("cli-server"), runtime) as server:
        assert server.wait_for_model()["loaded"]
        yield server


@pytest.fixture
def cli(server, runtime: Path, monkeypatch: pytest.MonkeyPatch):
    """`cli("rooms", "--json")` -> (exit status, stdout, stderr), discovering `server`."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    for name in NO_CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(list(argv), out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    return run


def test_status_names_the_server_and_the_model(cli, server):
    status, out, _ = cli("status")
    assert status == 0
    assert f"{server.url} (pid {server.pid}), the only running server" in out
    assert "llmchat" in out and "enabled" in out
    assert "gemma-3-270m" in out and "(loaded," in out
    status, out, _ = cli("--json")  # no command: status
    assert status == 0 and json.loads(out)["model"]["loaded"] is True


def test_broadcast_then_rooms_and_history(cli):
    status, out, err = cli("broadcast", "cli-room", "Exam starts in 10 minutes", "--name", "Teacher")
    assert status == 0 and out.startswith("posted to cli-room as seq ")
    assert err.startswith("server: ")
    status, out, _ = cli("rooms")
    header, *rows = out.splitlines()
    assert header.split() == ["ROOM", "MEMBERS", "HEAD_SEQ"]
    assert any(row.split()[0] == "cli-room" for row in rows)
    status, out, _ = cli("history", "cli-room")
    assert status == 0 and "Teacher (bot)" in out and "Exam starts in 10 minutes" in out
    status, out, _ = cli("history", "cli-room", "--json", "--limit", "5")
    (message,) = json.loads(out)
    assert message["data"]["author"]["name"] == "Teacher" and message["data"]["author"]["kind"] == "bot"
    status, out, _ = cli("--json", "rooms")  # options before or after the command
    assert {"room": "cli-room", "members": 0, "head_seq": message["seq"]} in json.loads(out)


def test_stats_as_a_table_and_as_json(cli):
    status, out, _ = cli("stats")
    assert status == 0 and "model.loaded" in out and "active_connections" in out
    status, out, _ = cli("stats", "--json")
    figures = json.loads(out)
    assert {"active_connections", "messages_received", "uptime_seconds", "rooms", "model"} <= set(figures)


def test_ask_streams_the_answer(cli):
    status, out, _ = cli("ask", "cli-ask", "Say hi.", "--max-tokens", "4", "--temperature", "0", "--json")
    answer = json.loads(out)
    assert status == 0 and answer["text"] and answer["finish_reason"] in ("stop", "length")
    status, out, _ = cli("history", "cli-ask", "--json")
    assert [m["data"]["author"]["kind"] for m in json.loads(out)] == ["bot", "assistant"]  # a script, not a person


def test_the_console_entry_point(server, runtime):
    env = {**os.environ, **NO_CLIENT_ENV, "JUPYTER_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_llmchat", "rooms", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_jupyter_llmchat_subcommand(server, runtime):
    # As a user types it: `jupyter llmchat` finds the installed `jupyter-llmchat` script.
    scripts = os.path.dirname(sys.executable)
    env = {**os.environ, **NO_CLIENT_ENV, "JUPYTER_RUNTIME_DIR": str(runtime), "PATH": f"{scripts}:{os.environ['PATH']}"}
    done = subprocess.run(["jupyter", "llmchat", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"(pid {server.pid})" in done.stdout


def test_errors_are_clear_and_exit_1(cli, server, tmp_path, monkeypatch):
    status, _, err = cli("rooms", "--url", server.url, "--token", "wrong")
    assert status == 1 and "AuthenticationFailed" in err and "403" in err
    status, _, err = cli("history", "never-used")
    assert status == 1 and "404" in err and "unknown room" in err
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    status, _, err = cli("status")
    assert status == 1 and "ServerNotFound" in err and "no running Jupyter server" in err


def test_with_two_servers_the_newest_is_used_and_named(cli, server, runtime, tmp_path):
    """The newest server here has no llmchat: the CLI says which server it used, and why it failed."""
    args = ["--ServerApp.jpserver_extensions=jupyter_llmchat=False"]
    with llmchat_server(tmp_path / "plain", runtime, args) as plain:
        status, out, err = cli("status")
        assert f"server: {plain.url} (pid {plain.pid}), the newest of 2 running servers" in err
        assert status == 1 and "ExtensionNotEnabled" in err and "not enabled" in err
        status, out, _ = cli("servers")
        assert status == 0 and str(server.pid) in out and f"* would be used: {plain.url}" in out
        status, out, _ = cli("status", "--url", server.url)  # an explicit URL wins, with the local credentials
        assert status == 0 and "credentials of the local server" in out


def test_clear_asks_first_then_deletes_the_rooms_messages(cli, monkeypatch):
    seqs = [json.loads(cli("broadcast", "cli-clear", text, "--json")[1])["seq"] for text in ("one", "two")]
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    status, out, err = cli("clear", "cli-clear")
    assert status == 1 and "Delete every stored message of room 'cli-clear'" in err and "not cleared" in err
    assert len(json.loads(cli("history", "cli-clear", "--json")[1])) == 2  # a "no" deletes nothing
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    status, out, err = cli("clear", "cli-clear")
    assert status == 0 and out.strip() == "cleared cli-clear: 2 messages deleted"
    assert json.loads(cli("history", "cli-clear", "--json")[1]) == []
    posted = json.loads(cli("broadcast", "cli-clear", "three", "--json")[1])
    assert posted["seq"] > seqs[-1]  # seq goes on: no client mistakes the new message for an old one
    status, out, _ = cli("clear", "cli-clear", "--yes", "--json")  # no question asked
    assert status == 0 and json.loads(out)["deleted"] == 1


@pytest.mark.fast
async def test_ask_notes_on_stderr_when_the_prompt_was_cut(chat_server, jp_http_port, jp_base_url):
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

    def ask(room: str, prompt: str, *options: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(["ask", room, prompt, "--url", url, "--token", "tok-ada", *options], out=out, err=err)
        return status, out.getvalue(), err.getvalue()

    status, out, err = await asyncio.to_thread(ask, "cut", "x" * 2000)  # over the stand-in's budget
    assert (status, out) == (0, "Hello from the stand-in.\n")
    assert err.splitlines()[-1] == "note: part of the conversation was left out to fit the model's context"
    status, out, err = await asyncio.to_thread(ask, "whole", "Short.", "--json")
    assert json.loads(out)["truncated"] is False and "note" not in err


@pytest.mark.fast
def test_config_lists_every_setting_without_a_server(tmp_path, monkeypatch):
    from jupyter_llmchat.server.extension import LLMChat

    for name, value in {"JUPYTER_RUNTIME_DIR": tmp_path / "no-servers", "JUPYTER_DATA_DIR": tmp_path / "data"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-print-me")
    out, err = io.StringIO(), io.StringIO()
    assert main(["config"], out=out, err=err) == 0, err.getvalue()
    text = out.getvalue()
    expected = LLMChat.class_own_traits(config=True)
    for name, trait in expected.items():
        assert f"--LLMChat.{name}=<" in text and trait.help.splitlines()[0] in text
    assert "--LLMChat.n_ctx=<Int>\n    KV cache cells" in text and "    Default: 8192\n" in text
    assert f"Default: {str(tmp_path / 'data' / 'llmchat' / 'history.sqlite')!r}" in text  # a computed default
    assert "sk-never-print-me" not in text
    out = io.StringIO()
    assert main(["config", "--json"], out=out, err=err) == 0
    settings = {item["name"]: item for item in json.loads(out.getvalue())}
    assert set(settings) >= set(expected) and "log_level" not in settings  # ours, not Jupyter's generic ones
    assert settings["max_tokens"] == {"name": "max_tokens", "type": "Int", "default": 1024, "help": expected["max_tokens"].help}
