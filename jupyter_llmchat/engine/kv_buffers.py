"""The buffers the decode thread copies KV states into, made ready by the writer thread.

Copying into fresh memory costs a page fault per 4 KiB: 23-49 ms for a 12 MB state on a
busy 2-core machine, against well under a ms into a buffer used before. So the decode
thread never allocates: it takes a ready buffer large enough, or skips that snapshot (the
thread's next turn is saved) and the writer makes `BUFFERS` of the new size, touching
every page there. A coming snapshot's size is announced while its prompt is evaluated
(`expect`), so the buffers are usually ready when it is taken.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

BUFFERS = 2  # states copied and not yet written at once; one more is skipped (the disk is behind)
_PAGE = 4096
_TOUCH = 1 << 20


class CopyBuffers:
    """`take`/`give_back` on the decode thread; `recycle`/`grow` on the writer thread."""

    def __init__(self, ask_writer: Callable[[Callable[[], None]], None], start_size: int = 0):
        self._ask_writer = ask_writer  # runs a job on the writer thread
        self._lock = threading.Lock()
        self._free: list[bytearray] = []
        self._in_flight = 0  # taken and not yet written
        self._want = 0  # the size ready buffers are made for: the largest state seen or expected
        self._growing = False  # the writer has been asked for bigger ones
        if start_size:
            self._need(start_size)

    def take(self, size: int) -> bytearray | None:
        """A ready buffer of at least `size` bytes, or None (then bigger ones are made)."""
        with self._lock:
            fits = [b for b in self._free if len(b) >= size]
            if fits:
                buf = min(fits, key=len)
                self._free = [b for b in self._free if b is not buf]
                self._in_flight += 1
                return buf
        self._need(size)
        return None

    def expect(self, size: int) -> None:
        """A snapshot of about `size` bytes is coming: have buffers that large made now."""
        with self._lock:
            if size <= self._want or any(len(b) >= size for b in self._free):
                return
        self._need(size)

    def give_back(self, buf: bytearray) -> None:
        """A taken buffer that was not used."""
        with self._lock:
            self._in_flight -= 1
            self._free.append(buf)

    def recycle(self, buf: bytearray) -> None:
        """A written buffer back to the ready ones, unless states have outgrown it (writer)."""
        with self._lock:
            self._in_flight -= 1
            if len(buf) >= self._want:
                self._free.append(buf)
                return
        self.grow()

    def grow(self) -> None:
        """Make `BUFFERS` buffers of the wanted size (and a quarter) ready, every page
        touched here, on the writer thread."""
        with self._lock:
            want = self._want + self._want // 4
            self._free = [b for b in self._free if len(b) >= self._want]
            missing = BUFFERS - len(self._free) - self._in_flight
        fresh = []
        for _ in range(max(0, missing)):
            buf = bytearray(want)
            for start in range(0, want, _TOUCH):  # a MiB at a time: the GIL is never held long
                buf[start : start + _TOUCH : _PAGE] = bytes(len(range(start, min(want, start + _TOUCH), _PAGE)))
                time.sleep(0)
            fresh.append(buf)
        with self._lock:
            self._free.extend(fresh)
            self._growing = False

    def _need(self, size: int) -> None:
        with self._lock:
            self._want = max(self._want, size)
            ask = not self._growing
            self._growing = True
        if ask:
            self._ask_writer(self.grow)
