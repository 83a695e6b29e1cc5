"""Per-user rate limiting: a token bucket, refilled continuously."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` events per second on average and bursts of up to `burst` events."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False means the caller is over its rate."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def full(self, now: float) -> bool:
        """True once refilled to `burst`: the bucket is no different from a new one."""
        return self._tokens + (now - self._stamp) * self.rate >= self.burst
