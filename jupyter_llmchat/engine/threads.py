"""How many threads to decode with, from what the rest of the machine uses right now.

A notebook machine is busy and idle by turns: kernels compute, then sit. Decoding with
more threads than there are free cores collapses (measured: 2 threads on 2 busy cores
decode over 5x slower than 1), while one thread on a quiet machine leaves cores unused
(55 vs 85 tok/s with 8 streams on 2 cores). So every `INTERVAL` seconds the engine reads
how much CPU the *other* processes used since the last look (`/proc/stat` for the machine
minus this process's own CPU time) and decodes with the cores they leave free.

A core counts as free while the others use at most `HEADROOM` of it. llama.cpp's threads
wait for each other at every operation, so a thread that shares its core stalls the rest;
measured on 2 cores (bench/threads_crossover.py, raw batched decoding beside a process
busy for a share of every 10 or 100 ms), 2 threads still beat 1 while the other process
uses 60 % of a core (8 streams 1.10x, 1 stream 1.21x) and lose from about 75-85 %
(8 streams 0.83-0.95x at 80 %; a whole core: 0.65x). So with one core busy it uses one
thread, never two.

The engine keeps looking while it is idle (the decode thread wakes every `IDLE_INTERVAL`):
the first step of a burst of requests then decodes with a count chosen from the last tenth
of a second, not from an average over the whole pause (minutes of quiet would hide a kernel
that started a second ago, minutes of work would hide that it just ended) nor from a
snapshot of what happens to run at that instant (the process that sent the request). One
look reads two small files (~13 us): idle, ten a second are 0.013 % of a core; decoding,
one per 0.25 s is under 0.1 % of the steps it serves.
"""

from __future__ import annotations

import os
import time
from typing import Callable

INTERVAL = 0.25  # seconds between two looks at the machine while decoding
IDLE_INTERVAL = 0.1  # ...and while idle: the first step of a burst uses a reading this fresh
HEADROOM = 0.6  # a core counts as free while the others use at most this share of it


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (None where /proc is missing)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def own_busy_seconds() -> float:
    """CPU seconds this process (every thread: decoding and the server) has used."""
    times = os.times()
    return times.user + times.system


class ThreadPolicy:
    """Chooses the decode thread count; `fixed` (a positive `n_threads`) always wins."""

    def __init__(
        self,
        fixed: int,
        cores: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        machine: Callable[[], float | None] = machine_busy_seconds,
        own: Callable[[], float] = own_busy_seconds,
    ) -> None:
        self.fixed = max(0, int(fixed))
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = max(1, cores)
        self._clock, self._machine, self._own = clock, machine, own
        self.threads = self.fixed or 1  # start like the fixed default until there is a reading
        self.others = 0.0  # cores the other processes used over the last interval
        self._last: tuple[float, float, float] | None = None

    @property
    def adaptive(self) -> bool:
        return self.fixed == 0

    @property
    def idle_wait(self) -> float | None:
        """How long the idle decode thread may sleep before it looks at the machine again."""
        return IDLE_INTERVAL if self.adaptive else None

    def choose(self) -> int:
        """The thread count for the next step (changes at most every INTERVAL seconds)."""
        return self._look(INTERVAL)

    def look_while_idle(self) -> None:
        """Called by the idle decode thread after each `idle_wait`: keeps the reading fresh."""
        self._look(0.0)

    def _look(self, gap: float) -> int:
        if not self.adaptive:
            return self.threads
        now = self._clock()
        if self._last is not None and now - self._last[0] < gap:
            return self.threads
        machine, own = self._machine(), self._own()
        if machine is None:
            return self.threads
        if self._last is not None:
            then, machine_then, own_then = self._last
            elapsed = max(now - then, 1e-6)
            self.others = max(0.0, (machine - machine_then) - (own - own_then)) / elapsed
            self.threads = self._fit(self.others)
        self._last = (now, machine, own)
        return self.threads

    def _fit(self, others: float) -> int:
        """The cores the others leave free (a core they use at most HEADROOM of counts as free)."""
        return max(1, min(self.cores, int(self.cores - others + HEADROOM)))
