"""Threads' KV states saved to disk and restored by the next engine, with the real model:
the same greedy answer as evaluating the whole thread, a bad file skipped, a cleared room's
states gone. Generations are kept short (2 cores)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from pathlib import Path

import pytest

from jupyter_llmchat.engine import ChatTurn, Engine, EngineSettings, GenerationRequest, SamplingConfig, TokenEvent
from jupyter_llmchat.engine.kv_files import SUFFIX

TIMEOUT = 120.0
GREEDY = SamplingConfig(max_tokens=8, temperature=0.0, repeat_penalty=1.0)
SYSTEM = "You are a helpful assistant. Answer briefly."
NOTES = (
    "Notes on the project: the build uses make, the tests run with pytest, the docs are in Markdown, "
    "and every release is tagged in git. "
) * 12  # a long first question: the thread is past the size worth saving


class Run:
    """An engine on a private loop, the events it delivered, and its log lines."""

    def __init__(self, kv_dir: Path, kv_bytes: int = 1 << 30, before_start: tuple[str, ...] = ()):
        self.loop = asyncio.new_event_loop()
        self.events: dict[str, list[TokenEvent]] = defaultdict(list)
        self.log = logging.getLogger(f"kvtest.{id(self)}")
        self.lines: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        self.log.addHandler(handler)
        settings = EngineSettings(n_ctx=4096, parallel=2, max_tokens=8, n_threads=2, kv_cache_dir=str(kv_dir), kv_cache_bytes=kv_bytes)
        self.engine = Engine(settings, self._sink, self.loop, self.log)
        for room in before_start:  # a room cleared while the model was loading
            self.engine.forget(room)
        self.engine.start()
        assert self.loop.run_until_complete(self.engine.wait_loaded(TIMEOUT)), self.engine.load_error
        self._n = 0

    def _sink(self, events: list[TokenEvent]) -> None:
        for ev in events:
            self.events[ev.message_id].append(ev)

    def ask(self, turns: list[ChatTurn], room: str = "r", holds: tuple[str, ...] = ("q1",)) -> tuple[str, TokenEvent]:
        return self.wait(self.submit(turns, room, holds))

    def submit(self, turns: list[ChatTurn], room: str = "r", holds: tuple[str, ...] = ("q1",)) -> str:
        self._n += 1
        mid = f"m{self._n}"
        self.engine.submit(GenerationRequest(mid, turns, GREEDY, f"{room}\nada", persist=True, room=room, holds=holds))
        return mid

    def wait(self, mid: str) -> tuple[str, TokenEvent]:
        async def until_done() -> None:
            deadline = time.monotonic() + TIMEOUT
            while not (self.events[mid] and self.events[mid][-1].is_final):
                assert time.monotonic() < deadline, "no final event"
                await asyncio.sleep(0.01)

        self.loop.run_until_complete(until_done())
        final = self.events[mid][-1]
        assert final.finish_reason in ("stop", "length"), final.error
        return "".join(e.text for e in self.events[mid]), final

    def flush(self) -> None:
        disk = self.engine._disk
        assert disk is not None and disk.flush()

    def forget_memory(self) -> None:
        """Empty the in-memory prompt cache (the decode thread is idle between questions)."""
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.engine._sched.slots.reset_all()

    def close(self) -> None:
        self.engine.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()


def thread_turns(answer: str) -> tuple[list[ChatTurn], list[ChatTurn]]:
    first = [ChatTurn("system", SYSTEM), ChatTurn("user", NOTES + "What do the tests run with?")]
    second = first + [ChatTurn("assistant", answer), ChatTurn("user", "And where are the docs?")]
    return first, second


def saved(kv_dir: Path) -> list[Path]:
    return sorted(kv_dir.glob("*" + SUFFIX))


@pytest.fixture(scope="module")
def kv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kv")


@pytest.fixture(scope="module")
def before_restart(kv_dir: Path) -> dict:
    """A first server: one thread's two turns, warm (the second reuses memory)."""
    run = Run(kv_dir)
    try:
        answer1, final1 = run.ask(thread_turns("")[0])
        run.flush()
        files_after_first = {f: f.stat().st_size for f in saved(kv_dir)}
        _, second = thread_turns(answer1)
        stats = run.engine.stats()
        warm, warm_final = run.ask(second, holds=("q1", "a1", "q2"))
        run.flush()
        return {
            "answer1": answer1, "final1": final1, "files_after_first": files_after_first, "warm": warm,
            "warm_final": warm_final, "second": second, "stats_after_first": stats["kv_disk"],
        }
    finally:
        run.close()


@pytest.fixture(scope="module")
def after_restart(kv_dir: Path, before_restart: dict):
    run = Run(kv_dir)
    yield run
    run.close()


def test_a_long_turn_saves_the_prefix_its_next_turn_shares(before_restart, kv_dir):
    ((file, size),) = before_restart["files_after_first"].items()
    prompt_tokens = before_restart["final1"].usage["prompt_tokens"]
    assert prompt_tokens > 300
    stats = before_restart["stats_after_first"]
    assert stats["files"] == 1 and stats["bytes"] == size
    # ~9 KB a token, every prompt token but the answer's opening
    assert 5_000 * (prompt_tokens - 8) < stats["bytes"] < 25_000 * prompt_tokens
    # the second turn's own state replaced the first's (it extends it): one file per thread
    assert len(saved(kv_dir)) == 1 and not file.exists()


def test_after_a_restart_the_thread_is_restored_not_evaluated_and_answers_the_same(before_restart, after_restart):
    second = before_restart["second"]
    # the first turn's state is what a restarted server finds for the second turn
    run = after_restart
    before = run.engine.stats()
    restored, final = run.ask(second, holds=("q1", "a1", "q2"))
    after = run.engine.stats()
    evaluated = after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"]
    assert after["kv_disk"]["hits"] == before["kv_disk"]["hits"] + 1
    assert evaluated < 60 and final.usage["prompt_tokens"] > 300
    assert restored == before_restart["warm"]

    # evaluated in full (no memory, no disk): the same greedy answer
    run.forget_memory()
    run.engine._sched.slots.reuse_prefix = False
    try:
        cold, cold_final = run.ask(second, holds=("q1", "a1", "q2"))
    finally:
        run.engine._sched.slots.reuse_prefix = True
    assert cold == restored and cold_final.usage == final.usage


def test_a_corrupt_file_is_skipped_deleted_and_the_answer_is_the_same(before_restart, after_restart, kv_dir):
    run = after_restart
    run.flush()
    files = saved(kv_dir)
    assert files
    corrupted = {}
    for file in files:  # flip one byte in the middle of each state
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        file.write_bytes(bytes(data))
        corrupted[file] = bytes(data)
    run.forget_memory()
    run.lines.clear()
    hits = run.engine.stats()["kv_disk"]["hits"]
    answer, _ = run.ask(before_restart["second"], holds=("q1", "a1", "q2"))
    assert answer == before_restart["warm"]
    assert run.engine.stats()["kv_disk"]["hits"] == hits
    assert [line for line in run.lines if "skipped and deleted" in line and "checksum" in line]
    # deleted, and saved again, whole, by the evaluation that replaced it
    assert all(not f.exists() or f.read_bytes() != data for f, data in corrupted.items())


def test_clearing_the_room_removes_its_saved_states(after_restart, kv_dir):
    run = after_restart
    run.flush()
    assert saved(kv_dir)  # the last question saved its thread again
    run.engine.forget("other-room")
    run.flush()
    assert saved(kv_dir)
    run.engine.forget("r", message_id="not-in-it")
    run.flush()
    assert saved(kv_dir)
    run.engine.forget("r", message_id="a1")
    run.flush()
    assert not saved(kv_dir)
    stats = run.engine.stats()["kv_disk"]
    assert stats["files"] == 0 and stats["bytes"] == 0 and set(stats) == {"bytes", "files", "hits", "misses"}


def test_two_engines_on_one_directory_each_restore_the_others_state(after_restart, kv_dir):
    from jupyter_llmchat.engine.kv_files import read_header

    first = after_restart
    second = Run(kv_dir)
    try:
        threads = {run: [ChatTurn("system", SYSTEM), ChatTurn("user", f"{NOTES} ({name}) What is tagged in git?")]
                   for run, name in ((first, "one"), (second, "two"))}
        mids = {run: run.submit(turns, room=f"room-{id(run)}") for run, turns in threads.items()}  # both at once
        for run, mid in mids.items():
            run.wait(mid)
        for run in [*mids, *mids]:  # each wrote its own, then read the directory again (else within RESCAN_SECONDS)
            run.flush()
        files = saved(kv_dir)
        assert len(files) >= 2
        for f in files:  # every file whole: written under a temporary name, then renamed
            header, _ = read_header(f)
            assert header["n_tokens"] > 256
        assert not list(kv_dir.glob("*.tmp"))
        # each engine restores the state the other one saved
        for run, other in ((first, second), (second, first)):
            run.forget_memory()
            hits = run.engine.stats()["kv_disk"]["hits"]
            run.ask(threads[other], room=f"room-{id(other)}")
            assert run.engine.stats()["kv_disk"]["hits"] == hits + 1
    finally:
        second.close()


def test_a_room_cleared_while_the_model_loads_loses_its_states_once_it_has_loaded(after_restart, kv_dir):
    from jupyter_llmchat.engine.kv_files import read_header

    rooms = {read_header(f)[0]["room"] for f in saved(kv_dir)}
    assert len(rooms) >= 2
    gone, *kept = sorted(rooms)
    run = Run(kv_dir, before_start=(gone,))
    try:
        run.flush()
        assert {read_header(f)[0]["room"] for f in saved(kv_dir)} == set(kept)
    finally:
        run.close()
