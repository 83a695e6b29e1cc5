"""The Generate ids (and REST `Idempotency-Key`s) each user sent recently, for idempotent retries.

A retry of a request whose answer still runs gets the first `Ack` (its tokens are on their
way); once that answer has ended, a retry gets `Error 409` rather than an `Ack` that nothing
follows. Each id is remembered for `window` seconds (`generate_id_window`), at most
`capacity` ids in all, oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from ..protocol import Ack, ChatError

Key = tuple[str, str]  # (username, request id)


class RequestIds:
    """Recent request ids of every user, with their first `Ack`."""

    def __init__(self, window: float, capacity: int = 4096) -> None:
        self.window = window
        self.capacity = capacity
        self._acks: OrderedDict[Key, tuple[Ack, float]] = OrderedDict()  # oldest first

    def key(self, username: str, request_id: str | None) -> Key | None:
        """The key a request is remembered by; None when it is not (no id, or window 0)."""
        return (username, request_id) if request_id and self.window > 0 else None

    def retried(self, key: Key, running: Callable[[str], bool], now: float | None = None) -> Ack | None:
        """The first Ack of `key` while its answer runs; `Error 409` once it has ended; None
        for an id not seen within the window."""
        now = time.monotonic() if now is None else now
        while self._acks and now - next(iter(self._acks.values()))[1] > self.window:
            self._acks.popitem(last=False)
        seen = self._acks.get(key)
        if seen is None:
            return None
        ack = seen[0]
        if running(ack.message_id):
            return ack
        raise ChatError(
            409, f"request id {key[1]!r} was already answered (message {ack.message_id}); send a new id to ask again"
        )

    def remember(self, key: Key, ack: Ack) -> None:
        self._acks[key] = (ack, time.monotonic())
        while len(self._acks) > self.capacity:
            self._acks.popitem(last=False)

    def forget(self, key: Key) -> None:
        """A request that failed before anything was asked: its retry asks again."""
        self._acks.pop(key, None)
