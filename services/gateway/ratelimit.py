"""Per-project rate limits, shared by every gateway process: one atomic counter per minute in Redis."""

from __future__ import annotations

import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.gateway.publisher import unavailable
from shared.keys import Project
from shared.web import ApiError

WINDOW_MS = 60_000

# INCRBY and the window's expiry in one step, so concurrent gateways never lose an update.
_SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def limit_of(project: Project) -> int | None:
    value = project.settings.get("rate_limit_per_minute")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def rate_limited(limit: int, retry_after: int) -> ApiError:
    """429 carrying every protocol's way of saying when to come back."""
    return ApiError(
        429,
        f"Rate limit of {limit} notices per minute exceeded; retry in {retry_after}s",
        headers={
            "Retry-After": str(retry_after),
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Delay": str(retry_after),  # Airbrake notifiers
            "X-Sentry-Rate-Limits": f"{retry_after}::project:rate_limited",  # Sentry SDKs
        },
    )


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_SCRIPT)

    async def check(self, project: Project, n: int) -> int | None:
        """Count n notices against the project's limit; 429 when over. Returns what remains (None: no limit)."""
        limit = limit_of(project)
        if limit is None or n <= 0:
            return None
        window = time.time_ns() // 1_000_000 // WINDOW_MS
        key = f"{self._prefix}:rl:{project.id}:{window}"
        try:
            count, ttl = await self._script(keys=[key], args=[n, WINDOW_MS])
        except (RedisError, OSError) as e:
            raise unavailable("Queue unavailable; retry later") from e
        if count > limit:
            raise rate_limited(limit, max(1, math.ceil(int(ttl) / 1000)))
        return limit - int(count)
