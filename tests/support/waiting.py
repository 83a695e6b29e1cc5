"""`until`: the one bounded wait of the tests, for a condition that another task or process makes true."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


async def until(condition: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0, what: str = "the condition") -> Any:
    """Wait until `condition()` (a plain or async callable) is truthy and return its value;
    fail the test after `timeout` seconds, naming `what` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.01)
