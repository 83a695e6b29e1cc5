"""The docs/protocol.md figures on Jupyter Server's own `/metrics` (Prometheus).

A collector reads `ChatService.stats()` at scrape time, so nothing is updated on the
token hot path. It is registered once per process and reports every live service.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_services: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False

_COUNTERS = ("messages_received", "messages_sent", "bytes_received", "bytes_sent")
_GAUGES = ("active_connections", "uptime_seconds")
_MODEL_COUNTERS = ("tokens_generated", "prompt_tokens_evaluated", "prompt_tokens_cached")
_MODEL_GAUGES = (
    "active_sequences", "queue_depth", "tokens_per_second", "tokens_per_second_per_sequence", "parallel", "n_ctx", "n_threads",
)

# The saved KV states on disk (engine/kv_disk.py): what is there, and restores used or not.
_KV_DISK = (("bytes", GaugeMetricFamily), ("files", GaugeMetricFamily), ("hits", CounterMetricFamily), ("misses", CounterMetricFamily))


class ChatCollector(Collector):
    """Turns each service's stats dict into Prometheus families prefixed `llmchat_`."""

    def collect(self) -> Iterator[Any]:
        all_stats = [service.stats() for service in list(_services)]
        for name in _COUNTERS:
            family = CounterMetricFamily(f"llmchat_{name}", f"llmchat {name.replace('_', ' ')}")
            family.add_metric([], sum(stats[name] for stats in all_stats))
            yield family
        for name in _GAUGES:
            family = GaugeMetricFamily(f"llmchat_{name}", f"llmchat {name.replace('_', ' ')}")
            family.add_metric([], sum(stats[name] for stats in all_stats))
            yield family
        rooms = GaugeMetricFamily("llmchat_rooms", "live llmchat rooms")
        rooms.add_metric([], sum(stats["rooms"]["count"] for stats in all_stats))
        yield rooms
        members = GaugeMetricFamily("llmchat_room_members", "members per room", labels=["room"])
        for stats in all_stats:
            for room, count in stats["rooms"]["members"].items():
                members.add_metric([room], count)
        yield members
        loaded = GaugeMetricFamily("llmchat_model_loaded", "1 when the model is loaded", labels=["model"])
        for stats in all_stats:
            loaded.add_metric([str(stats["model"].get("name", ""))], 1 if stats["model"].get("loaded") else 0)
        yield loaded
        for name in _MODEL_COUNTERS:
            family = CounterMetricFamily(f"llmchat_model_{name}", f"llmchat model {name.replace('_', ' ')}")
            family.add_metric([], sum(stats["model"].get(name, 0) for stats in all_stats))
            yield family
        for name in _MODEL_GAUGES:
            family = GaugeMetricFamily(f"llmchat_model_{name}", f"llmchat model {name.replace('_', ' ')}")
            family.add_metric([], sum(stats["model"].get(name, 0) for stats in all_stats))
            yield family
        for name, kind in _KV_DISK:
            family = kind(f"llmchat_model_kv_disk_{name}", f"llmchat saved KV states: {name}")
            family.add_metric([], sum((stats["model"].get("kv_disk") or {}).get(name, 0) for stats in all_stats))
            yield family


def forget(service: Any) -> None:
    """Stop reporting a service (its server is stopping)."""
    _services.discard(service)


def expose(service: Any) -> None:
    """Report this service on /metrics (registering the collector on first use)."""
    global _registered
    _services.add(service)
    if not _registered:
        REGISTRY.register(ChatCollector())
        _registered = True
