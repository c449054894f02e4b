"""Job counters in Redis for the dashboard: processed and failed totals, and per-second and
per-minute buckets of processed jobs (for "jobs per second now" and the hourly graph)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

PROCESSED = "snippets:stats:processed"
FAILED = "snippets:stats:failed"
SECOND_PREFIX = "snippets:stats:sec:"
MINUTE_PREFIX = "snippets:stats:min:"
RATE_WINDOW_SECONDS = 10


class JobCounter:
    """A worker process's counts since its last flush to Redis (a per-process resource in
    the worker's ctx, like its connection pools): counting costs no round trip per job."""

    def __init__(self) -> None:
        self._per_second: dict[int, int] = {}
        self._failed = 0

    def count(self, failed: bool) -> None:
        """One job run finished (a failed run counts as processed too, as in Sidekiq)."""
        second = int(time.time())
        self._per_second[second] = self._per_second.get(second, 0) + 1
        self._failed += failed

    async def flush(self, redis: Redis) -> None:
        """Add the counts to Redis in one round trip (kept for a retry if that fails)."""
        if not self._per_second:
            return
        per_second, failed = self._per_second, self._failed
        self._per_second, self._failed = {}, 0
        per_minute: dict[int, int] = {}
        for second, count in per_second.items():
            per_minute[second // 60] = per_minute.get(second // 60, 0) + count
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.incrby(PROCESSED, sum(per_second.values()))
                if failed:
                    pipe.incrby(FAILED, failed)
                for second, count in per_second.items():
                    pipe.incrby(SECOND_PREFIX + str(second), count)
                    pipe.expire(SECOND_PREFIX + str(second), 120)
                for minute, count in per_minute.items():
                    pipe.incrby(MINUTE_PREFIX + str(minute), count)
                    pipe.expire(MINUTE_PREFIX + str(minute), 2 * 3600)
                await pipe.execute()
        except BaseException:
            for second, count in per_second.items():
                self._per_second[second] = self._per_second.get(second, 0) + count
            self._failed += failed
            raise


async def totals(redis: Redis) -> tuple[int, int]:
    """(processed, failed) since the counters began."""
    processed, failed = await redis.mget([PROCESSED, FAILED])
    return int(processed or 0), int(failed or 0)


async def jobs_per_second(redis: Redis) -> float:
    """Processed jobs per second over the last few whole seconds."""
    now = int(time.time())
    keys = [SECOND_PREFIX + str(now - offset) for offset in range(1, RATE_WINDOW_SECONDS + 1)]
    return sum(int(value or 0) for value in await redis.mget(keys)) / RATE_WINDOW_SECONDS


async def last_hour(redis: Redis) -> list[tuple[int, int]]:
    """(minute start epoch, processed jobs) for each of the last 60 minutes, oldest first."""
    minute = int(time.time()) // 60
    minutes = list(range(minute - 59, minute + 1))
    values = await redis.mget([MINUTE_PREFIX + str(m) for m in minutes])
    return [(m * 60, int(value or 0)) for m, value in zip(minutes, values, strict=True)]
