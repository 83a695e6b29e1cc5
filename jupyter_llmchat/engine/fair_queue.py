"""The engine's waiting requests, served round-robin between users instead of first come.

One user who queues many answers must not make everyone else wait behind all of them: the
next request to start is the oldest one of the user served least recently (a user never
served, or not among the last 1,024 served, goes first; ties in arrival order).
A flood of 60 requests from one user and one question from another: the other's starts at
the next free slot, not after the 60.

Pure Python, used under the engine's lock; no llama.cpp.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Iterator

from .job import Job
from .types import EngineSettings

REMEMBERED = 1024  # users whose last turn is remembered


def owner_reserve(settings: EngineSettings) -> int:
    """Queue places only the owner's requests may take: `owner_queue_reserve`, at most
    half of `max_queue` (a small queue stays open to everyone)."""
    return min(max(0, int(settings.owner_queue_reserve)), max(0, int(settings.max_queue)) // 2)


def queue_full(settings: EngineSettings, depth: int, waiting: int, owner: bool) -> str | None:
    """Why a request that would take queue place `depth` (0: it starts now) is refused, or None."""
    max_queue = max(0, int(settings.max_queue))
    reserve = 0 if owner else owner_reserve(settings)
    if depth <= max_queue - reserve:
        return None
    kept = f", the last {reserve} kept for the server's owner" if reserve else ""
    return f"{waiting} requests already waiting (max_queue={max_queue}{kept})"


class FairQueue:
    """Waiting jobs by user; `pop` gives the next one in round-robin order."""

    def __init__(self) -> None:
        self._by_user: dict[str, deque[tuple[int, Job]]] = {}
        self._served: dict[str, int] = {}  # user -> number of the turn they were last served at
        self._arrivals = itertools.count()
        self._turns = itertools.count()
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[Job]:
        """Every waiting job, in the order they would start."""
        return iter(self._order())

    def push(self, job: Job) -> int:
        """Queue `job`; return how many waiting jobs would start before it."""
        self._by_user.setdefault(job.request.user, deque()).append((next(self._arrivals), job))
        self._n += 1
        return self._order().index(job)

    def pop(self) -> Job:
        """The next job to start (IndexError when none waits)."""
        if not self._n:
            raise IndexError("pop from an empty FairQueue")
        user = min(self._by_user, key=self._rank)
        jobs = self._by_user[user]
        _, job = jobs.popleft()
        if not jobs:
            del self._by_user[user]
        self._n -= 1
        self._served.pop(user, None)  # re-inserted last: the table stays in serving order
        self._served[user] = next(self._turns)
        self._forget_old_turns()
        return job

    def remove(self, job: Job) -> bool:
        """Take a waiting job out (cancelled); False when it is not waiting."""
        user = job.request.user
        jobs = self._by_user.get(user)
        if not jobs:
            return False
        for i, (_, queued) in enumerate(jobs):
            if queued is job:
                del jobs[i]
                if not jobs:
                    del self._by_user[user]
                self._n -= 1
                return True
        return False

    def drain(self) -> list[Job]:
        """Every waiting job, removed (shutdown)."""
        jobs = self._order()
        self._by_user.clear()
        self._n = 0
        return jobs

    # -- order ----------------------------------------------------------------------------

    def _rank(self, user: str) -> tuple[int, int]:
        """Who goes first: least recently served, then whoever has waited longest."""
        return self._served.get(user, -1), self._by_user[user][0][0]

    def _order(self) -> list[Job]:
        """The waiting jobs in the order `pop` would give them: one per user per round, the
        users in `_rank` order (a user served now goes to the back of the next round)."""
        users = sorted(self._by_user, key=self._rank)
        queues = [self._by_user[u] for u in users]
        order: list[Job] = []
        for depth in range(max((len(q) for q in queues), default=0)):
            order.extend(q[depth][1] for q in queues if depth < len(q))
        return order

    def _forget_old_turns(self) -> None:
        """Remember only the last `REMEMBERED` users served (the table is in serving order):
        one served longer ago ranks as a newcomer, which is where its mark put it anyway."""
        while len(self._served) > REMEMBERED:
            del self._served[next(iter(self._served))]
