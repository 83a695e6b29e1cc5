"""How many threads to decode with, from what the rest of the machine uses right now.

A notebook machine is busy and idle by turns: kernels compute, then sit. Decoding with
more threads than there are free cores collapses (measured: 2 threads on 2 busy cores
decode over 5x slower than 1), while one thread on a quiet machine leaves cores unused
(55 vs 85 tok/s with 8 streams on 2 cores). So before a decode step, at most every
`INTERVAL` seconds, the engine reads how much CPU the *other* processes used since the
last look (`/proc/stat` for the machine minus this process's own CPU time) and decodes with
the cores they left free, never more: with one of two cores busy it uses one thread.
Reading costs a few microseconds against a step of tens of milliseconds.

After the engine sat idle (no step for more than `STALE` seconds), an average since the
last look describes the past: a kernel that started a second ago is diluted in minutes of
quiet, or minutes of work now finished still count. Then the first decision comes from
what is runnable right now on the machine and not in this process (`/proc/loadavg`'s
count of runnable tasks minus this process's runnable threads), and the average takes
over one interval later. Without this a burst of requests after a pause decoded its first
interval (prompt evaluation and first tokens: most of a short answer) with a thread count
chosen from stale figures.
"""

from __future__ import annotations

import os
import time
from typing import Callable

INTERVAL = 0.25  # seconds between two looks at the machine
STALE = 1.0  # seconds without a look after which the average is not trusted
HEADROOM = 0.25  # a core counts as free when others use at most HEADROOM of it


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


def runnable_elsewhere() -> int | None:
    """Threads of other processes that are runnable right now (None where /proc is missing)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            machine = int(fh.read().split()[3].split("/")[0])  # "0.52 0.58 0.59 3/201 1234"
        tids = os.listdir("/proc/self/task")
    except (OSError, IndexError, ValueError):
        return None
    mine = 0
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as fh:
                mine += fh.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
    return max(0, machine - mine)


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
        runnable: Callable[[], int | None] = runnable_elsewhere,
    ) -> None:
        self.fixed = max(0, int(fixed))
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = max(1, cores)
        self._clock, self._machine, self._own, self._runnable = clock, machine, own, runnable
        self.threads = self.fixed or 1  # start like the fixed default until there is a reading
        self.others = 0.0  # cores the other processes used over the last interval (or run now)
        self._last: tuple[float, float, float] | None = None

    @property
    def adaptive(self) -> bool:
        return self.fixed == 0

    def choose(self) -> int:
        """The thread count for the next step (changes at most every INTERVAL seconds)."""
        if not self.adaptive:
            return self.threads
        now = self._clock()
        if self._last is not None and now - self._last[0] < INTERVAL:
            return self.threads
        machine, own = self._machine(), self._own()
        if machine is None:
            return self.threads
        if self._last is None or now - self._last[0] > STALE:
            running = self._runnable()  # idle until now: what runs at this moment, not the past
            if running is not None:
                self.others = float(running)
                self.threads = self._fit(self.others)
        else:
            then, machine_then, own_then = self._last
            elapsed = max(now - then, 1e-6)
            self.others = max(0.0, (machine - machine_then) - (own - own_then)) / elapsed
            self.threads = self._fit(self.others)
        self._last = (now, machine, own)
        return self.threads

    def _fit(self, others: float) -> int:
        """The cores the others leave free (a core used less than HEADROOM counts as free)."""
        return max(1, min(self.cores, int(self.cores - others + HEADROOM)))
