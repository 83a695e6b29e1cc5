"""What the Redis room bus's calls make of a Redis that is away or failing, and its times in ms."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Awaitable, Callable, TypeVar

from redis.exceptions import RedisError

from ..protocol import ChatError

T = TypeVar("T")


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def redis_errors_as_503(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A Redis that is away or failing becomes `ChatError(503)` with the reason (`self.where`:
    which Redis)."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except (RedisError, OSError, asyncio.TimeoutError) as error:  # TimeoutError: no subscription confirmed
            reason = str(error) or "no answer in time"
            raise ChatError(503, f"the room bus (Redis at {self.where}) is unavailable: {reason}") from None

    return wrapper
