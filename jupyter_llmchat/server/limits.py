"""Per-user rate limiting: a token bucket per user, refilled continuously."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows `rate` events per second on average and bursts of up to `burst` events."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        """Spend one token; False means the caller is over its rate."""
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def full_by(self, now: float) -> bool:
        """True once the bucket has refilled: it is then the same as a new one."""
        return self.rate <= 0 or self._tokens + (now - self._stamp) * self.rate >= self.burst


class RateLimiter:
    """One bucket per user; a bucket that has refilled is forgotten (`prune`), so the table
    holds only the users active in the last `burst / rate` seconds."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, user: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def prune(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for user in [user for user, bucket in self._buckets.items() if bucket.full_by(now)]:
            del self._buckets[user]

    def __len__(self) -> int:
        return len(self._buckets)
