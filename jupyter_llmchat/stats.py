"""Server-wide traffic counters (docs/protocol.md), shared by the socket, REST and /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
