"""Creation counters per client in Redis, for the rate limit: every web process shares them,
and the hits of one tick are counted by one script call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from snippet_service.batching import Batcher

KEY_PREFIX = "snippets:ratelimit:"
WINDOW_SECONDS = 60.0
REDIS_TIMEOUT = 1.0

# A fixed window per client: the first hit creates the counter with the window's lifetime,
# later hits count in it. One hit per key (a key may repeat); returns, per hit, the count
# and the milliseconds until the window ends.
HIT_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
    local count = redis.call('INCR', key)
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
        redis.call('PEXPIRE', key, ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    out[#out + 1] = count
    out[#out + 1] = ttl
end
return out
"""


async def hits(
    redis: Redis, clients: Sequence[str], window: float = WINDOW_SECONDS
) -> list[tuple[int, float]]:
    """Count one creation for each client (in one round trip); per client, the count in this
    window and the seconds left."""
    async with asyncio.timeout(REDIS_TIMEOUT):
        flat = await redis.eval(  # type: ignore[misc]
            HIT_SCRIPT, len(clients), *(KEY_PREFIX + client for client in clients),
            str(int(window * 1000)),
        )
    return [(int(flat[i]), int(flat[i + 1]) / 1000) for i in range(0, len(flat), 2)]


class HitCounter:
    """Counts the creations of every request in one tick with one script call."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._batcher: Batcher[str, tuple[int, float]] = Batcher(self._flush, name="ratelimit")

    async def hit(self, client: str) -> tuple[int, float]:
        """Count one creation for client; the count in this window and the seconds left."""
        return await self._batcher.submit(client)

    async def _flush(self, clients: Sequence[str]) -> list[tuple[int, float]]:
        return await hits(self._redis, clients)


