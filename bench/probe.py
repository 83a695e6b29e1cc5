"""A hook installer for the benches (`--LLMChat.hooks=bench.probe:install`, with this
checkout on PYTHONPATH): every 10 ms it writes to the file named by $LLMCHAT_PROBE what
the server's `Stats` do not show, the bytes all rooms' replay buffers hold now and the
most they held so far, beside the `replay_memory` limit.

With $LLMCHAT_TRACEMALLOC set it also traces Python allocations: each time the bench
creates `<probe>.want`, a snapshot is taken and its growth since the previous one, by
source line, is written to `<probe>.top` (the `.want` file is then removed)."""

from __future__ import annotations

import json
import os
import tracemalloc
from typing import Any

from tornado.ioloop import PeriodicCallback


def install(service: Any) -> None:
    path = os.environ["LLMCHAT_PROBE"]
    budget = service.bus.budget
    peak = 0
    snapshots: list[tracemalloc.Snapshot] = []
    if os.environ.get("LLMCHAT_TRACEMALLOC"):
        tracemalloc.start(8)

    def sample() -> None:
        nonlocal peak
        peak = max(peak, budget.used)
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump({"replay_bytes": budget.used, "replay_peak": peak, "replay_memory": budget.limit}, out)
        os.replace(path + ".tmp", path)
        if tracemalloc.is_tracing() and os.path.exists(path + ".want"):
            snapshots.append(tracemalloc.take_snapshot())
            if len(snapshots) > 1:
                growth = snapshots[-1].compare_to(snapshots[-2], "lineno")
                with open(path + ".top", "w", encoding="utf-8") as out:
                    out.write(f"total {sum(line.size_diff for line in growth)} bytes\n")
                    out.write("\n".join(str(line) for line in growth[:30]))
            os.remove(path + ".want")

    service._bench_probe = PeriodicCallback(sample, 10)
    service._bench_probe.start()
