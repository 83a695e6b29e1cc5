"""Saved KV state files without a model: every check on reading, the byte bound (least
recently used out), two servers on one directory, forgetting a room or a message."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from jupyter_llmchat.engine.kv_disk import KVDisk
from jupyter_llmchat.engine.kv_files import MAGIC, SUFFIX, BadFile, prefix_key, read_header, read_state

pytestmark = pytest.mark.fast

PAYLOAD = bytes(range(256)) * 40  # 10 KiB stands for a state


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log() -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(f"kvfiles.{id(object())}")
    handler = Lines()
    logger.addHandler(handler)
    return logger, handler


def disk(path: Path, log, max_bytes: int = 1 << 30, identity: str = "123-model") -> KVDisk:
    return KVDisk(path, max_bytes, identity, log[0])


def toks(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


def file_of(d: KVDisk, tokens: list[int]) -> Path:
    return d.dir / (prefix_key(d.identity, tokens) + SUFFIX)


def test_a_saved_state_reads_back_and_every_kind_of_damage_is_refused(tmp_path, log):
    d = disk(tmp_path, log)
    tokens = toks(300)
    d.put(tokens, PAYLOAD, room="r", holds=("q1",), thread="r\nada")
    assert d.flush()
    path = file_of(d, tokens)
    assert read_state(path, d.identity, tokens) == PAYLOAD
    header, _ = read_header(path)
    assert header["n_tokens"] == 300 and header["room"] == "r" and header["holds"] == ["q1"]
    assert {"format", "llama_cpp", "model", "crc32", "saved_at"} <= set(header)
    good = path.read_bytes()

    def refused(data: bytes, tokens: list[int] = tokens, identity: str = d.identity) -> str:
        path.write_bytes(data)
        with pytest.raises(BadFile) as info:
            read_state(path, identity, tokens)
        return str(info.value)

    assert "truncated" in refused(good[: len(good) - 100])
    flipped = bytearray(good)
    flipped[-5] ^= 1
    assert "checksum" in refused(bytes(flipped))
    assert "another model" in refused(good, identity="999-other")
    assert "not a saved KV state" in refused(b"GGUF" + good[4:])
    head_len = int.from_bytes(good[len(MAGIC) : len(MAGIC) + 4], "little")
    header_raw = good[len(MAGIC) + 4 : len(MAGIC) + 4 + head_len]
    for field, value, says in (("llama_cpp", "0.0.1", "llama.cpp"), ("format", 99, "format")):
        changed = json.dumps({**json.loads(header_raw), field: value}).encode()
        assert says in refused(MAGIC + len(changed).to_bytes(4, "little") + changed + good[len(MAGIC) + 4 + head_len :])
    other = list(tokens)
    other[-1] += 1
    assert "token count" in refused(good, tokens=tokens[:-1])
    assert "tokens differ" in refused(good, tokens=other)
    d.close()


def test_a_bad_file_met_by_a_lookup_is_skipped_with_one_line_and_deleted(tmp_path, log):
    d = disk(tmp_path, log)
    tokens = toks(400)
    d.put(tokens, PAYLOAD, room="r")
    assert d.flush()
    path = file_of(d, tokens)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    prompt = tokens + [7, 8, 9]
    # ctx is never touched: the file is refused before llama.cpp would see it
    assert d.restore(None, 0, prompt, len(prompt) - 1, 0) == 0
    assert not path.exists()
    assert [line for line in log[1].lines if "skipped and deleted" in line] == [
        f"saved KV state {path.stem} skipped and deleted: checksum mismatch"
    ]
    assert d.stats() == {"bytes": 0, "files": 0, "hits": 0, "misses": 1}
    d.close()


def test_files_of_an_older_llama_cpp_are_deleted_and_another_models_are_kept(tmp_path, log):
    d = disk(tmp_path, log)
    d.put(toks(300), PAYLOAD)
    assert d.flush()
    d.close()
    (path,) = tmp_path.glob("*" + SUFFIX)
    other_model = disk(tmp_path, log, identity="456-another")
    assert path.exists() and other_model.stats()["files"] == 1  # waits for a switch back, counts against the bound
    other_model.close()
    good = path.read_bytes()
    head_len = int.from_bytes(good[len(MAGIC) : len(MAGIC) + 4], "little")
    header = json.loads(good[len(MAGIC) + 4 : len(MAGIC) + 4 + head_len])
    changed = json.dumps({**header, "llama_cpp": "0.0.1"}).encode()
    path.write_bytes(MAGIC + len(changed).to_bytes(4, "little") + changed + good[len(MAGIC) + 4 + head_len :])
    again = disk(tmp_path, log)
    assert not path.exists() and again.stats()["files"] == 0
    assert any("llama.cpp '0.0.1'" in line for line in log[1].lines)
    again.close()


def test_the_directory_stays_within_its_bytes_least_recently_used_first(tmp_path, log):
    probe = disk(tmp_path / "probe", log)
    probe.put(toks(300), PAYLOAD)
    assert probe.flush()
    size = probe.stats()["bytes"]
    probe.close()
    d = disk(tmp_path / "kv", log, max_bytes=3 * size + size // 2)  # room for three
    prefixes = [toks(300, start=1000 * i) for i in range(4)]
    for p in prefixes[:3]:
        d.put(p, PAYLOAD)
    assert d.flush()
    d.snapshot(None, 0, prefixes[0], None, (), None)  # already saved: used again, nothing copied
    d.put(prefixes[3], PAYLOAD)
    assert d.flush()
    kept = {p[0] for p in prefixes if file_of(d, p).exists()}
    assert kept == {0, 2000, 3000}  # the second went: least recently used, not the oldest
    on_disk = sum(f.stat().st_size for f in d.dir.glob("*" + SUFFIX))
    assert d.stats()["bytes"] == on_disk <= d.max_bytes and d.stats()["files"] == 3
    d.close()
    # the recency is the product's own, kept across a restart (not the files' times)
    again = disk(tmp_path / "kv", log, max_bytes=3 * size + size // 2)
    again.put(toks(300, start=9000), PAYLOAD)
    assert again.flush()
    assert not file_of(again, prefixes[2]).exists() and file_of(again, prefixes[0]).exists()
    again.close()


def test_a_thread_keeps_only_its_newest_state(tmp_path, log):
    d = disk(tmp_path, log)
    first, second = toks(300), toks(500)
    d.put(first, PAYLOAD, thread="r\nada")
    d.put(toks(300, start=5), PAYLOAD, thread="r\nbob")
    d.put(second, PAYLOAD, thread="r\nada")
    assert d.flush()
    assert not file_of(d, first).exists() and file_of(d, second).exists()
    assert d.stats()["files"] == 2
    cut = toks(400, start=50)  # the thread cut at a later cut point: it starts differently
    d.put(cut, PAYLOAD, thread="r\nada")
    assert d.flush()
    assert not file_of(d, second).exists() and file_of(d, cut).exists() and d.stats()["files"] == 2
    d.close()


def test_two_servers_on_one_directory_never_see_a_torn_file(tmp_path, log):
    a, b = disk(tmp_path, log), disk(tmp_path, log)
    shared = [toks(300, start=100 * i) for i in range(6)]
    big = PAYLOAD * 50  # 500 KiB: a write takes long enough to overlap

    def write(d: KVDisk) -> None:
        for p in shared:
            d.put(p, big, room="r")

    torn: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for p in shared:
                try:
                    read_state(file_of(a, p), a.identity, p)
                except FileNotFoundError:
                    pass
                except BadFile as exc:
                    torn.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(d,)) for d in (a, b)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert a.flush() and b.flush()
    stop.set()
    reader.join()
    assert torn == []
    assert sorted(tmp_path.glob("*" + SUFFIX)) == sorted(file_of(a, p) for p in shared)
    assert not list(tmp_path.glob("*.tmp"))
    # each sees the other's files; clearing the room on one removes them for both
    b.put(toks(300, start=7000), PAYLOAD, room="other")
    assert b.flush() and a.flush()  # (a rescans every RESCAN_SECONDS anyway)
    assert a.stats()["files"] == 7
    a.forget("r")
    assert a.flush()
    assert [f.name for f in tmp_path.glob("*" + SUFFIX)] == [file_of(a, toks(300, start=7000)).name]
    assert b.flush() and b.stats()["files"] == 1
    a.close()
    b.close()


def test_forgetting_a_message_removes_only_the_states_that_hold_it(tmp_path, log):
    d = disk(tmp_path, log)
    d.put(toks(300), PAYLOAD, room="r", holds=("q1", "a1"))
    d.put(toks(300, start=1), PAYLOAD, room="r", holds=("q2",))
    d.put(toks(300, start=2), PAYLOAD, room="s", holds=("q1",))
    d.forget("r", "q1")  # queued after the saves: removed from the index at once, from disk in order
    assert d.flush()
    left = {tuple(read_header(f)[0]["holds"]) for f in tmp_path.glob("*" + SUFFIX)}
    assert left == {("q2",), ("q1",)}
    d.forget("r")
    assert d.flush()
    assert [read_header(f)[0]["room"] for f in tmp_path.glob("*" + SUFFIX)] == ["s"]
    d.close()


def test_the_decode_thread_copies_only_into_buffers_the_writer_made_ready(tmp_path, log):
    d = disk(tmp_path, log)
    buffers = d.buffers
    assert buffers.take(1000) is None  # none yet: this snapshot is skipped, the writer makes some
    assert d.flush()
    first, second = buffers.take(1000), buffers.take(1000)
    assert first is not None and second is not None and len(first) >= 1000
    assert buffers.take(1000) is None  # both being written: the next snapshot is skipped
    buffers.recycle(first)
    assert buffers.take(900) is first
    buffers.expect(5000)  # a bigger state is coming: made off the decode thread
    buffers.recycle(second)
    buffers.recycle(first)
    assert d.flush()
    grown = buffers.take(5000)
    assert grown is not None and len(grown) >= 5000 and np.frombuffer(grown, dtype=np.uint8).max() == 0
    d.close()
    # a restarted server makes them ready for the largest state already on disk
    d = disk(tmp_path, log)
    d.put(toks(300), PAYLOAD)
    assert d.flush()
    d.close()
    again = disk(tmp_path, log)
    assert again.flush() and again.buffers.take(len(PAYLOAD)) is not None
    again.close()
