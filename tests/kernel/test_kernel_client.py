"""The kernel-side client: cells of a real kernel, started by a real server, post into rooms
and ask the model; discovery finds the right server; the runtime secret authenticates
where there is no token."""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.kernels import Member, last_json, llmchat_server, run_cell, server_kernel

from jupyter_llmchat.kernel.client import ChatClient, connect
from jupyter_llmchat.kernel.discovery import find_server, running_servers
from jupyter_llmchat.kernel.errors import AuthenticationFailed, ServerNotFound
from jupyter_llmchat.runtime_secret import secret_path

GREEDY = "max_tokens=6, temperature=0, repeat_penalty=1.0"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, runtime: Path):
    """Two servers sharing one runtime directory, as two `jupyter lab` of one user would."""
    root = tmp_path_factory.mktemp("servers")
    with llmchat_server(root / "a", runtime) as a, llmchat_server(root / "b", runtime) as b:
        for server in (a, b):
            assert server.wait_for_model()["loaded"]
        yield a, b


@pytest.fixture(scope="module")
def kernel_a(servers):
    with server_kernel(servers[0]) as kernel:
        yield kernel


def test_broadcast_from_a_cell_reaches_the_room(servers, kernel_a):
    server = servers[0]
    member = Member(server, "class")
    try:
        output = run_cell(
            kernel_a,
            """
            import json, jupyter_llmchat as chat
            first = chat.broadcast("class", "Hint: look at exercise 3 again", author_name="Teacher")
            second = chat.broadcast("class", "40% done")
            print(json.dumps([first, second, chat.connect().server.pid]))
            """,
        )
        first, second, pid = last_json(output)
        assert pid == server.pid
        texts = [member.next(lambda f: f["type"] == "Text") for _ in range(2)]
    finally:
        member.close()
    owner = getpass.getuser()  # the server's OS user: the kernel authenticated as the server's owner
    assert [t["data"]["author"] for t in texts] == [
        {"username": owner, "name": "Teacher", "kind": "bot"},
        {"username": owner, "name": "notebook", "kind": "bot"},
    ]
    assert [t["data"]["content"] for t in texts] == ["Hint: look at exercise 3 again", "40% done"]
    assert [(t["seq"], t["data"]["message_id"]) for t in texts] == [
        (first["seq"], first["message_id"]),
        (second["seq"], second["message_id"]),
    ]


def test_ask_from_a_cell_streams_the_answer_to_the_room(servers, kernel_a):
    member = Member(servers[0], "class")
    try:
        output = run_cell(
            kernel_a,
            f"""
            import asyncio, json, jupyter_llmchat as chat
            loop_running = asyncio.get_event_loop().is_running()  # the kernel's own loop: ask must not need one
            answer = chat.ask("class", "Say hello to the class.", {GREEDY})
            pieces = list(answer)
            print(json.dumps({{"pieces": pieces, "message_id": answer.message_id,
                              "finish": answer.finish_reason, "usage": answer.usage, "loop": loop_running}}))
            """,
        )
        result = last_json(output)
        prompt = member.next(lambda f: f["type"] == "Text")
        tokens = member.answer(result["message_id"])
    finally:
        member.close()
    assert prompt["data"]["content"] == "Say hello to the class."
    assert prompt["data"]["author"]["username"] == getpass.getuser()
    assert result["pieces"], "the answer streamed nothing"
    assert all(result["pieces"])
    assert result["pieces"] == [t["data"]["text"] for t in tokens if t["data"]["text"]]
    assert result["finish"] == tokens[-1]["data"]["finish_reason"] in ("stop", "length")
    assert 0 < result["usage"]["completion_tokens"] <= 6


def test_aask_with_top_level_await_in_a_cell(kernel_a):
    output = run_cell(
        kernel_a,
        f"""
        import json, jupyter_llmchat as chat
        pieces = [piece async for piece in chat.aask(None, "Count to three.", {GREEDY})]
        text = await chat.aask(None, "Count to three.", {GREEDY})
        print(json.dumps({{"pieces": pieces, "text": text}}))
        """,
    )
    result = last_json(output)
    assert result["pieces"] and "".join(result["pieces"]) == result["text"]  # greedy: the same answer twice


def test_errors_in_a_cell_are_clear(kernel_a):
    output = run_cell(
        kernel_a,
        """
        import jupyter_llmchat as chat
        from jupyter_llmchat import ChatRequestError
        for bad in (lambda: chat.broadcast("no spaces allowed", "x"), lambda: chat.ask("class", "hi", colour="red")):
            try:
                bad()
            except (ValueError, TypeError) as error:
                print(type(error).__name__)
        try:
            chat.history("never-used-room")
        except ChatRequestError as error:
            print(error.code)
        """,
    )
    assert output.split() == ["ValueError", "TypeError", "404"]


def test_each_kernel_finds_the_server_that_started_it(servers):
    a, b = servers
    with server_kernel(b) as kernel_b:
        output = run_cell(
            kernel_b,
            """
            import json, jupyter_llmchat as chat
            client = chat.connect()
            chat.broadcast("only-on-b", "hello b")
            print(json.dumps([client.server.pid, client.server.found_by]))
            """,
        )
    pid, found_by = last_json(output)
    assert pid == b.pid and "JPY_PARENT_PID" in found_by
    assert b.get("llmchat/api/rooms/only-on-b/messages")["messages"][0]["data"]["content"] == "hello b"
    assert "only-on-b" not in {room["room"] for room in a.get("llmchat/api/rooms")["rooms"]}


def test_outside_a_kernel_two_servers_are_ambiguous(servers, runtime):
    a, b = servers
    with pytest.raises(ServerNotFound, match="2 Jupyter servers are running"):
        find_server(environ={}, directory=str(runtime))
    assert find_server(environ={}, directory=str(runtime), newest=True).pid == b.pid  # started last
    assert find_server(environ={"JPY_PARENT_PID": str(a.pid)}, directory=str(runtime)).pid == a.pid
    # An explicit URL wins, and borrows the local server's credentials.
    chosen = find_server(f"http://localhost:{a.port}", environ={"JPY_PARENT_PID": str(b.pid)}, directory=str(runtime))
    assert (chosen.url, chosen.pid, bool(chosen.secret)) == (f"http://localhost:{a.port}/", a.pid, True)
    assert ChatClient(chosen).stats()["model"]["loaded"]
    # LLMCHAT_URL and LLMCHAT_TOKEN, as in a kernel that runs elsewhere.
    env = {"LLMCHAT_URL": a.url, "LLMCHAT_TOKEN": a.token}
    chosen = find_server(environ=env, directory=str(runtime / "nothing-here"))
    assert (chosen.url, chosen.authorization) == (a.url, f"token {a.token}")
    ChatClient(chosen).broadcast("via-env", "hi")
    assert [s.pid for s in running_servers(str(runtime))] == [b.pid, a.pid]


def test_a_password_only_server_is_reached_with_the_runtime_secret(tmp_path):
    runtime = tmp_path / "runtime"
    from jupyter_server.auth import passwd

    args = [f"--PasswordIdentityProvider.hashed_password={passwd('pw')}"]
    with llmchat_server(tmp_path / "root", runtime, args, token=False, env={"JUPYTERHUB_USER": "hub-ada"}) as server:
        path = secret_path(runtime, server.pid)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        found = find_server(environ={}, directory=str(runtime))
        assert (found.pid, found.token, found.authorization.split()[0]) == (server.pid, "", "llmchat-secret")
        client = ChatClient(found)
        posted = client.broadcast("hub", "from the owner")
        (message,) = client.history("hub")
        assert message["data"]["author"] == {"username": "hub-ada", "name": "notebook", "kind": "bot"}
        assert message["seq"] == posted["seq"]
        # The secret opens llmchat only, not the rest of Jupyter.
        with pytest.raises(OSError, match="403"):
            _get(server.url + "api/kernels", f"llmchat-secret {found.secret}")
        # Wrong or missing credentials: refused, over REST and over the socket.
        for wrong in (found.__class__(url=found.url, secret="nope"), found.__class__(url=found.url)):
            with pytest.raises(AuthenticationFailed):
                ChatClient(wrong).rooms()
            with pytest.raises(AuthenticationFailed):
                ChatClient(wrong).ask("hub", "hi")
    assert not path.exists(), "the secret is removed when the server stops"


@pytest.mark.fast
def test_importing_the_package_stays_cheap():
    code = (
        "import sys, jupyter_llmchat as chat\n"
        "heavy = {'llama_cpp', 'jupyter_server', 'tornado', 'anywidget', 'websocket'}\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not heavy, heavy\n"
        "import jupyter_llmchat.server.service\n"  # a server submodule named like a function must not shadow it
        "assert callable(chat.stats) and callable(chat.rooms) and chat.stats.__module__ == 'jupyter_llmchat.kernel.api'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.fast
def test_no_server_is_a_clear_error(tmp_path, monkeypatch):
    """With LLMCHAT_AUTOSTART=0 nothing is started: the error says what to do instead."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("LLMCHAT_AUTOSTART", "0")
    monkeypatch.delenv("LLMCHAT_URL", raising=False)
    with pytest.raises(ServerNotFound, match=r"no Jupyter server with llmchat and no llmchat service .*LLMCHAT_AUTOSTART=0.*jupyter llmchat serve"):
        connect()
    assert not [name for name in os.listdir(tmp_path) if name.startswith("llmchat-service-")]  # none started


def _get(url: str, authorization: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": authorization})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def test_an_answer_closed_early_is_cancelled(servers):
    """Leaving the loop early (or a kernel interrupt) stops the generation for everyone."""
    server = servers[0]
    client = ChatClient(find_server(server.url, server.token))
    member = Member(server, "cancel-me")
    try:
        answer = client.ask("cancel-me", "Write a long story.", max_tokens=8, temperature=0, repeat_penalty=1.0)
        answer.close()
        tokens = member.answer(answer.message_id)
    finally:
        member.close()
    assert tokens[-1]["data"]["finish_reason"] == "cancelled"
    assert answer.done is False  # closed before its end: it never saw the final token


@pytest.mark.fast
async def test_the_runtime_secret_authenticates_as_the_server_owner(chat_server, jp_fetch, connect, jp_runtime_dir):
    """In-process server whose identity provider knows only test tokens: the secret still
    names the server's OS user, counts as a token (no XSRF), and opens llmchat only."""
    secret = secret_path(jp_runtime_dir, os.getpid()).read_text()
    assert secret == chat_server.settings["llmchat_secret"]
    owner = {"Authorization": f"llmchat-secret {secret}"}
    posted = await jp_fetch(
        "llmchat", "api", "rooms", "owner", "messages", method="POST", headers=owner,
        body=json.dumps({"content": "from the owner", "author_name": "Script"}),
    )
    assert posted.code == 201
    history = json.loads((await jp_fetch("llmchat", "api", "rooms", "owner", "messages", headers=owner)).body)
    assert history["messages"][-1]["data"]["author"] == {"username": getpass.getuser(), "name": "Script", "kind": "bot"}
    socket = await connect(None, headers=owner)
    assert socket.welcome["data"]["user"]["username"] == getpass.getuser()
    for headers in ({"Authorization": "llmchat-secret wrong"}, {"Authorization": f"llmchat-secret {secret}x"}):
        refused = await jp_fetch("llmchat", "api", "stats", headers=headers, raise_error=False)
        assert refused.code == 403
    refused = await jp_fetch("api", "kernels", headers=owner, raise_error=False)
    assert refused.code == 403


def test_an_answer_displayed_as_a_cell_result_prints_the_stream(kernel_a):
    output = run_cell(kernel_a, f'import jupyter_llmchat as chat\nchat.ask(None, "Say hi.", {GREEDY})')
    assert output.strip(), "the answer was not printed"


def test_the_module_api_outlives_a_server_restart(tmp_path, monkeypatch):
    """A kernel's cached client whose server restarted (new port, new token) finds the new one."""
    import jupyter_llmchat as chat
    import jupyter_llmchat.kernel.api as api_module

    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("LLMCHAT_URL", raising=False)
    monkeypatch.delenv("LLMCHAT_TOKEN", raising=False)
    monkeypatch.setattr(api_module, "_default", None)
    with llmchat_server(tmp_path / "first", runtime) as first:
        assert chat.broadcast("lab", "before")["seq"] >= 1
        assert api_module._default.server.url == first.url
    with llmchat_server(tmp_path / "second", runtime) as second:
        posted = chat.broadcast("lab", "after the restart")
        assert api_module._default.server.url == second.url
        assert [m["data"]["content"] for m in second.get("llmchat/api/rooms/lab/messages")["messages"]] == ["after the restart"]
        assert posted["message_id"] == second.get("llmchat/api/rooms/lab/messages")["messages"][0]["data"]["message_id"]


# -- issue 14: context from the kernel, threads, room prompts, clearing


def _question(server, room: str, message_id: str | None = None) -> dict:
    """The stored question Text of `room` (the newest, or the one an answer replied to)."""
    messages = server.get(f"llmchat/api/rooms/{room}/messages?limit=200")["messages"]
    if message_id is not None:
        answer = next(m for m in messages if m["data"]["message_id"] == message_id)
        message_id = answer["data"]["in_reply_to"]
        return next(m for m in messages if m["data"]["message_id"] == message_id)["data"]
    return [m for m in messages if m["data"]["author"]["kind"] != "assistant"][-1]["data"]


def test_ask_with_context_gives_the_model_the_objects_and_stores_only_their_sizes(servers, kernel_a):
    server = servers[0]
    output = run_cell(
        kernel_a,
        f"""
        import json, pandas as pd, jupyter_llmchat as chat
        from jupyter_llmchat.kernel.context import describe_all
        visits = pd.DataFrame({{"city": ["Paris", "Lyon", "Nice"], "visitors": [120, 80, 95]}})
        try:
            1 / 0
        except ZeroDivisionError as error:
            err = error
        question = "Which city had the most visitors?"
        bare = chat.ask("ctx-bare", question, {GREEDY})
        bare.text()
        rich = chat.ask("ctx-rich", question, context=[visits, err], {GREEDY})
        rich.text()
        sent = describe_all([visits, err])
        print(json.dumps({{"bare": bare.usage, "rich": rich.usage, "message_id": rich.message_id,
                          "sent": [[a["kind"], a["label"], len(a["text"])] for a in sent]}}))
        """,
    )
    result = last_json(output)
    # The model read the descriptions: the prompt grew by about their size (~4 characters a token).
    described = sum(chars for _, _, chars in result["sent"])
    assert result["rich"]["prompt_tokens"] - result["bare"]["prompt_tokens"] > described // 8
    question = _question(server, "ctx-rich", result["message_id"])
    assert question["content"] == "Which city had the most visitors?"
    assert [[a["kind"], a["label"], a["chars"]] for a in question["attachments"]] == result["sent"]
    assert [a["label"] for a in question["attachments"]] == ["DataFrame 3×2", "ZeroDivisionError"]
    assert "Paris" not in json.dumps(question)  # the room sees what was attached, not the data


def test_new_thread_makes_the_next_question_forget_earlier_exchanges(servers, kernel_a):
    server = servers[0]
    output = run_cell(
        kernel_a,
        f"""
        import json, jupyter_llmchat as chat
        def tokens(room, question, **options):
            answer = chat.ask(room, question, **options, {GREEDY})
            answer.text()
            return answer.usage["prompt_tokens"]
        fresh = tokens("thread-fresh", "Name a colour.")
        tokens("thread-room", "Name a fruit.")
        follow_up = tokens("thread-room", "Name a colour.")          # sees the fruit exchange
        chat.new_thread("thread-room")
        after_new_thread = tokens("thread-room", "Name a colour.")   # sees nothing before it
        next_one = tokens("thread-room", "Name a colour.")           # the new thread goes on
        flagged = tokens("thread-room", "Name a colour.", new_thread=True)
        print(json.dumps([fresh, follow_up, after_new_thread, next_one, flagged]))
        """,
    )
    fresh, follow_up, after_new_thread, next_one, flagged = last_json(output)
    assert follow_up > fresh
    assert after_new_thread == fresh == flagged
    assert next_one > after_new_thread
    questions = [m["data"] for m in server.get("llmchat/api/rooms/thread-room/messages")["messages"]
                 if m["data"]["author"]["kind"] != "assistant"]
    assert [bool(q.get("thread_start")) for q in questions] == [False, False, True, False, True]


def test_reply_to_gives_the_model_that_message(servers, kernel_a):
    server = servers[0]
    output = run_cell(
        kernel_a,
        f"""
        import json, jupyter_llmchat as chat
        note = chat.broadcast("reply-room", "The meeting moved to room 4.12 on Thursday at 10.", author_name="Teacher")
        plain = chat.ask("reply-room", "Where is the meeting?", {GREEDY})
        plain.text()
        reply = chat.ask("reply-room", "Where is the meeting?", reply_to=note["message_id"], new_thread=True, {GREEDY})
        reply.text()
        print(json.dumps([note["message_id"], plain.usage["prompt_tokens"], reply.usage["prompt_tokens"], reply.message_id]))
        """,
    )
    note_id, plain, with_reply, answer_id = last_json(output)
    assert with_reply > plain  # a bot's broadcast is not context by itself; replied to, it is
    assert _question(server, "reply-room", answer_id)["reply_to"] == note_id


def test_a_room_prompt_and_clearing_from_a_cell(servers, kernel_a):
    server = servers[0]
    member = Member(server, "prompt-room")
    try:
        output = run_cell(
            kernel_a,
            """
            import json, jupyter_llmchat as chat
            chat.broadcast("prompt-room", "before the prompt")
            chat.set_room_prompt("prompt-room", "You are a terse tutor. Answer in one sentence.", context="shared")
            print(json.dumps(chat.clear("prompt-room")))
            """,
        )
        cleared = last_json(output)
        texts = [member.next(lambda f: f["type"] == "Text") for _ in range(2)]
        reset = member.next(lambda f: f["type"] in ("Reset", "History"))
        after = member.next(lambda f: f["type"] == "History")
    finally:
        member.close()
    settings = {
        "system_prompt": "You are a terse tutor. Answer in one sentence.", "context": "shared",
        "announce_only": False, "model_answers": True,
    }
    assert texts[1]["data"]["author"]["kind"] == "system" and texts[1]["data"]["settings"] == settings
    assert server.get("llmchat/api/rooms/prompt-room")["settings"] == settings
    assert cleared["deleted"] == 2  # the broadcast and the system message
    assert reset["type"] == "Reset" and after["data"]["messages"] == []
    assert server.get("llmchat/api/rooms/prompt-room/messages")["messages"] == []


@pytest.mark.fast
def test_question_options_are_checked_before_anything_is_sent():
    from jupyter_llmchat.kernel.discovery import ServerInfo

    client = ChatClient(ServerInfo(url="http://127.0.0.1:9/"), timeout=1)  # nothing listens: any request would fail
    with pytest.raises(ValueError, match="at most 8"):
        client.ask("room", "hi", context=list(range(9)))
    with pytest.raises(ValueError, match="private question has no thread"):
        client.ask(None, "hi", new_thread=True)
    with pytest.raises(ValueError, match="reply_to needs a room"):
        client.ask(None, "hi", reply_to="m-1")
    with pytest.raises(ValueError, match="context must be one of"):
        client.set_room_prompt("room", "Be brief.", context="everyone")
    with pytest.raises(ValueError, match="invalid room name"):
        client.clear("no spaces")
    client.new_thread("room")  # remembered locally, sends nothing
    assert client._new_threads == {"room"}
