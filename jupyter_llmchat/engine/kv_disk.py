"""Threads' KV states on disk, so the first question after a restart is not evaluated in full.

The decode thread copies a sequence's state (`llama_state_seq_get_data`, ~2 ms of CPU into a ready
buffer, kv_buffers.py) when its prompt reaches the prefix the thread's next prompt will share
(`PromptBuilder.build`'s `stable`), and hands the bytes to this module's writer thread, which writes
the file (kv_files.py: temporary name, then rename) and keeps the directory within `kv_cache_bytes`,
least recently *used* first. Recency is this index's own (saved and restored times, kept in
`recency.json`), not file times. A prompt whose longest saved prefix is longer than what
the memory cache holds is restored (`llama_state_seq_set_data`) instead of evaluated. Two
servers may share one directory: each rescans it for the other's files every few seconds.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .kv_buffers import CopyBuffers
from .llama_api import llama as _llama
from .kv_files import SUFFIX, BadFile, Entry, check_header, entry_of, prefix_key, read_header, read_state, write_file

RESCAN_SECONDS = 2.0  # how stale this server's view of another server's files may get
STALE_TMP_SECONDS = 3600.0  # a temporary file this old was left by a crash
_RECENCY = "recency.json"


class KVDisk:
    """The saved states of one model in one directory, and the thread that writes them."""

    def __init__(self, directory: str | Path, max_bytes: int, identity: str, log: logging.Logger):
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.identity = identity
        self.log = log
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._index: dict[str, Entry] = {}
        self._lengths: set[int] = set()
        self._scanned = 0.0
        self._recency_dirty = False
        self._doomed: set[str] = set()  # forgotten, not yet deleted by the writer
        self._per_token = 0.0  # the largest bytes per token of a state seen (decode thread)
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._refresh(force=True)
        with self._lock:
            largest = max((e.size for e in self._index.values() if e.model == identity), default=0)
        self.buffers = CopyBuffers(self._jobs.put, largest)  # ready for the largest state on disk
        self._thread = threading.Thread(target=self._write_loop, name="llmchat-kv-writer", daemon=True)
        self._thread.start()

    # -- the decode thread ----------------------------------------------------------------

    def has(self, tokens: list[int]) -> bool:
        return prefix_key(self.identity, tokens) in self._index

    def could_beat(self, better_than: int, limit: int) -> bool:
        """Whether any saved state is long enough to be worth looking for (no hashing)."""
        self._refresh()
        with self._lock:
            return any(better_than < n <= limit for n in self._lengths)

    def prepare(self, ctx: Any, seq: int, n_now: int, n_target: int) -> None:
        """A snapshot of `n_target` tokens is coming (the prompt is being evaluated up to
        it): have the writer make buffers that large ready meanwhile, from the bytes per
        token seen so far, or from what sequence `seq` holds now (`n_now` tokens)."""
        per_token = self._per_token
        if not per_token and n_now > 0:
            per_token = _llama().llama_state_seq_get_size(ctx, seq) / n_now
        if per_token:
            self.buffers.expect(int(per_token * n_target))

    def snapshot(self, ctx: Any, seq: int, tokens: list[int], room: str | None, holds: tuple[str, ...], thread: str | None) -> None:
        """Copy sequence `seq`'s state (it holds exactly `tokens`) for the writer to save."""
        key = prefix_key(self.identity, tokens)
        with self._lock:
            known = self._index.get(key)
            if known is not None:
                known.last_used = time.time()
                self._recency_dirty = True
                return
        llama = _llama()
        size = llama.llama_state_seq_get_size(ctx, seq)
        if size <= 0 or size > self.max_bytes:
            return
        self._per_token = max(self._per_token, size / max(1, len(tokens)))
        buf = self.buffers.take(size)
        if buf is None:
            return  # no buffer ready (kv_buffers.py): skipped, the thread's next turn is saved
        n = llama.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(buf), size, seq)
        if n <= 0:
            self.buffers.give_back(buf)
            return
        self._queue(tokens, buf, n, room, holds, thread)

    def put(self, tokens: list[int], payload: bytes, room: str | None = None, holds: tuple[str, ...] = (), thread: str | None = None) -> None:
        """Save `payload` as the state of `tokens` (the writer thread writes it)."""
        self._queue(tokens, bytearray(payload), len(payload), room, holds, thread, pooled=False)

    def _queue(
        self, tokens: list[int], buf: bytearray, n: int, room: str | None, holds: tuple[str, ...], thread: str | None,
        pooled: bool = True,
    ) -> None:
        key = prefix_key(self.identity, tokens)
        entry = Entry(key, len(tokens), 0, time.time(), room, tuple(holds), thread, self.identity)
        arr = np.asarray(tokens, dtype=np.int32)
        self._jobs.put(lambda: self._save(entry, arr, buf, n, pooled))

    def restore(self, ctx: Any, seq: int, prompt: list[int], limit: int, better_than: int) -> int:
        """Put the longest saved prefix of `prompt` (at most `limit` tokens, more than
        `better_than`) into sequence `seq`; the number of tokens it holds, 0 when none was
        found (`seq` untouched), -1 when llama.cpp refused it (`seq` must be emptied)."""
        self._refresh()
        with self._lock:
            lengths = sorted((n for n in self._lengths if better_than < n <= limit), reverse=True)
        for n in lengths:
            key = prefix_key(self.identity, prompt[:n])
            entry = self._index.get(key)
            if entry is None:
                continue
            try:
                payload = read_state(self.dir / (key + SUFFIX), self.identity, prompt[:n])
            except FileNotFoundError:
                self._drop(key)
                continue
            except (BadFile, OSError) as exc:
                self.log.warning("saved KV state %s skipped and deleted: %s", key, exc)
                self._delete(key)
                continue
            llama = _llama()
            size = len(payload)
            done = llama.llama_state_seq_set_data(ctx, (ctypes.c_uint8 * size).from_buffer(payload), size, seq)
            if done != size:
                self.log.warning("saved KV state %s could not be restored (%d of %d bytes); evaluating instead", key, done, size)
                return -1
            with self._lock:
                entry.last_used = time.time()
                self._recency_dirty = True
            self.hits += 1
            return n
        self.misses += 1
        return 0

    # -- any thread ---------------------------------------------------------------------

    def forget(self, room: str, message_id: str | None = None) -> None:
        """Remove the states of `room` (whose prefix holds `message_id`, if given): at once
        from the index, from the disk on the writer thread (after any save queued before)."""
        def matches(e: Entry) -> bool:
            return e.room == room and (message_id is None or message_id in e.holds)

        with self._lock:
            for key in [k for k, e in self._index.items() if matches(e)]:
                self._forget_key(key)
                self._doomed.add(key)  # a rescan before the writer deletes it must not bring it back

        def job() -> None:
            with self._lock:
                self._doomed.clear()
            self._refresh(force=True)  # another server's files of the room too
            with self._lock:
                keys = [k for k, e in self._index.items() if matches(e)]
            for key in keys:
                self._delete(key)

        self._jobs.put(job)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "bytes": sum(e.size for e in self._index.values()),
                "files": len(self._index),
                "hits": self.hits,
                "misses": self.misses,
            }

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued save and removal is done, and the index has read the
        directory again (tests, bench)."""
        done = threading.Event()

        def job() -> None:
            self._refresh(force=True)
            done.set()

        self._jobs.put(job)
        return done.wait(timeout)

    def close(self) -> None:
        """Finish the queued writes, save the recency, stop the writer."""
        self._jobs.put(None)
        self._thread.join(timeout=60.0)

    # -- the writer thread --------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=RESCAN_SECONDS)
            except queue.Empty:  # idle: another server's files show in the stats too
                self._refresh()
                self._save_recency()
                continue
            if job is None:
                self._save_recency()
                return
            try:
                job()
            except Exception:  # a full disk or a vanished directory must not stop the writer
                self.log.exception("saving KV states failed")

    def _save(self, entry: Entry, tokens: np.ndarray, buf: bytearray, n: int, pooled: bool) -> None:
        try:
            entry.size = write_file(self.dir, entry, self.identity, tokens, memoryview(buf)[:n])
        finally:
            if pooled:
                self.buffers.recycle(buf)
        with self._lock:
            self._add(entry)
            # A thread's older state will not be asked for again: its next prompts extend this
            # one (or, cut at a later cut point, start like this one). One state per thread.
            superseded = [
                e.key for e in self._index.values()
                if e.thread is not None and e.thread == entry.thread and e.model == self.identity and e.key != entry.key
            ]
        for key in superseded:
            self._delete(key)
        self._refresh()
        self._enforce()
        self._save_recency()

    def _enforce(self) -> None:
        """Least recently used out until the directory is within `max_bytes`."""
        while True:
            with self._lock:
                total = sum(e.size for e in self._index.values())
                if total <= self.max_bytes or not self._index:
                    return
                victim = min(self._index.values(), key=lambda e: e.last_used).key
            self._delete(victim)

    # -- the index ------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Bring the index up to the directory (files another server wrote or removed)."""
        now = time.monotonic()
        if not force and now - self._scanned < RESCAN_SECONDS:
            return
        self._scanned = now
        try:
            names = {e.name: e for e in os.scandir(self.dir)}
        except OSError:
            return
        recency = self._read_recency() if force else {}
        on_disk = {n.removesuffix(SUFFIX) for n in names if n.endswith(SUFFIX) and not n.startswith(".")}
        with self._lock:
            for key in [k for k in self._index if k not in on_disk]:
                self._forget_key(key)
            new = [k for k in on_disk if k not in self._index and k not in self._doomed]
        for key in new:
            path = self.dir / (key + SUFFIX)
            try:
                header, _ = read_header(path)
                check_header(header)  # another model's states stay (and count against the bound)
                entry = entry_of(path, header)
            except FileNotFoundError:
                continue
            except (BadFile, OSError) as exc:
                self.log.warning("saved KV state %s skipped and deleted: %s", key, exc)
                path.unlink(missing_ok=True)
                continue
            entry.last_used = max(entry.last_used, recency.get(key, 0.0))
            with self._lock:
                self._add(entry)
        wall = time.time()
        for name, item in names.items():
            if name.endswith(".tmp"):
                try:
                    if wall - item.stat().st_mtime > STALE_TMP_SECONDS:
                        os.unlink(item.path)
                except OSError:
                    pass

    def _add(self, entry: Entry) -> None:
        self._index[entry.key] = entry
        self._lengths.add(entry.n_tokens)

    def _forget_key(self, key: str) -> None:
        """Drop `key` from the index (lock held)."""
        entry = self._index.pop(key, None)
        if entry is not None and not any(e.n_tokens == entry.n_tokens for e in self._index.values()):
            self._lengths.discard(entry.n_tokens)

    def _drop(self, key: str) -> None:
        with self._lock:
            self._forget_key(key)

    def _delete(self, key: str) -> None:
        self._drop(key)
        try:
            (self.dir / (key + SUFFIX)).unlink(missing_ok=True)
        except OSError as exc:
            self.log.warning("cannot delete saved KV state %s: %s", key, exc)
        self._recency_dirty = True

    def _read_recency(self) -> dict[str, float]:
        try:
            data = json.loads((self.dir / _RECENCY).read_text())
            return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def _save_recency(self) -> None:
        """When each state was last used, merged with what another server wrote."""
        if not self._recency_dirty:
            return
        self._recency_dirty = False
        merged = self._read_recency()
        with self._lock:
            for key, entry in self._index.items():
                merged[key] = max(merged.get(key, 0.0), entry.last_used)
            merged = {k: v for k, v in merged.items() if k in self._index}
        tmp = self.dir / f".{_RECENCY}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(merged))
            os.replace(tmp, self.dir / _RECENCY)
        except OSError as exc:
            self.log.warning("cannot save %s: %s", _RECENCY, exc)
