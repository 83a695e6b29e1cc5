"""A hook installer for the benches (`--LLMChat.hooks=bench.probe:install`, with this
checkout on PYTHONPATH): every 10 ms it writes to the file named by $LLMCHAT_PROBE what
the server's `Stats` do not show, the bytes all rooms' replay buffers hold now and the
most they held so far, beside the `replay_memory` limit."""

from __future__ import annotations

import json
import os
from typing import Any

from tornado.ioloop import PeriodicCallback


def install(service: Any) -> None:
    path = os.environ["LLMCHAT_PROBE"]
    budget = service.bus.budget
    peak = 0

    def sample() -> None:
        nonlocal peak
        peak = max(peak, budget.used)
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump({"replay_bytes": budget.used, "replay_peak": peak, "replay_memory": budget.limit}, out)
        os.replace(path + ".tmp", path)

    service._bench_probe = PeriodicCallback(sample, 10)
    service._bench_probe.start()
