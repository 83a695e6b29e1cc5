"""The `Stats` figures (docs/protocol.md), shared by the socket, REST and /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..protocol import ModelSummary, RoomCounts, Stats


@dataclass
class TrafficCounters:
    """Monotonic counters; the live gauges (connections, rooms, model) are read where they live."""

    started: float = field(default_factory=time.monotonic)
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0

    @property
    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self.started, 3)


def model_summary(backend: Any) -> ModelSummary:
    """`Welcome.model`: the model's name, whether it is loaded, its size, and how far it is.

    A backend that brings in a model by reference (`managed_model.ManagedModel`) says its own
    `status()`; for the others (an OpenAI-compatible server) it follows from `loaded`/`load_error`.
    """
    loaded = bool(backend and backend.loaded)
    status = backend.status() if hasattr(backend, "status") else None
    if status is None:
        error = backend.load_error if backend is not None and backend.load_error else None
        state = "loaded" if loaded else "failed" if error else "loading"
        status = {"reference": getattr(backend, "reference", ""), "state": state, "progress": None,
                  "detail": "" if loaded else error or "the model is loading", "error": None if loaded else error}
    return ModelSummary(
        name=getattr(backend, "model_name", "") or "unknown",
        loaded=loaded,
        n_ctx=getattr(backend, "n_ctx", 0),
        parallel=getattr(backend, "parallel", 0),
        **status,
    )


def server_stats(counters: TrafficCounters, connections: int, bus: Any, backend: Any) -> Stats:
    """The whole `Stats` reply: traffic, rooms on this server (members connected here), and the model backend's figures."""
    live = bus.live_rooms()
    return Stats(
        active_connections=connections,
        messages_received=counters.messages_received,
        messages_sent=counters.messages_sent,
        bytes_received=counters.bytes_received,
        bytes_sent=counters.bytes_sent,
        uptime_seconds=counters.uptime_seconds,
        rooms=RoomCounts(count=len(live), members={name: bus.local_member_count(name) for name in live}),
        # The summary, then whatever the backend reports (open: another backend has other figures).
        model={**msgspec.to_builtins(model_summary(backend)), **(backend.stats() if backend is not None else {})},
    )
