"""The `Stats` figures (docs/protocol.md), shared by the socket, REST and /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


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


def model_summary(backend: Any) -> dict[str, Any]:
    """`Welcome.model`: the model's name, whether it is loaded, its size."""
    summary = {
        "name": getattr(backend, "model_name", "") or "unknown",
        "loaded": bool(backend and backend.loaded),
        "n_ctx": getattr(backend, "n_ctx", 0),
        "parallel": getattr(backend, "parallel", 0),
    }
    if backend is not None and backend.load_error:
        summary["error"] = backend.load_error
    return summary


def server_stats(counters: TrafficCounters, connections: int, bus: Any, backend: Any) -> dict[str, Any]:
    """The whole `Stats` reply: traffic, rooms on this server, and the model backend's figures."""
    live = bus.live_rooms()
    return {
        "active_connections": connections,
        "messages_received": counters.messages_received,
        "messages_sent": counters.messages_sent,
        "bytes_received": counters.bytes_received,
        "bytes_sent": counters.bytes_sent,
        "uptime_seconds": counters.uptime_seconds,
        "rooms": {"count": len(live), "members": {name: len(bus.members(name)) for name in live}},
        "model": {**model_summary(backend), **(backend.stats() if backend is not None else {})},
    }
