"""A short fuzz run against a real server (the long one is bench/fuzz.py): every frame is
answered, no traceback in the log, no connection dropped without a close frame, every Error
carries the id the frame had, and a normal question is still answered afterwards."""

from __future__ import annotations

from pathlib import Path

from support import fuzzing
from support.servers import running_server

SIZE_LIMIT = 64 * 1024


def test_a_few_thousand_fuzz_frames_are_each_answered(tmp_path: Path):
    args = [
        f"--LLMChat.history_path={tmp_path}/history.sqlite", "--LLMChat.n_threads=1", "--LLMChat.max_tokens=2",
        "--LLMChat.rate_limit=0", f"--LLMChat.message_size_limit={SIZE_LIMIT}", "--LLMChat.ping_interval=0",
    ]
    with running_server(tmp_path, args) as server:
        server.wait_for_model()
        users = [{"Authorization": f"token {server.token}"}, server.login()]
        found = fuzzing.run(server.ws_url, users, 3000, connections=4, seed=11, size_limit=SIZE_LIMIT)
        finish, _ = fuzzing.ask(server.ws_url, users[0])
        log = server.log_path.read_text(errors="replace")
    assert found.problems == []
    assert fuzzing.tracebacks(log) == []
    assert found.frames == 3000 and sum(found.errors.values()) > 1000
    assert finish in ("stop", "length")
