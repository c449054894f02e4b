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


async def count_job(
    redis: Redis, failed: bool, publish: tuple[str, str] | None = None
) -> None:
    """One job run finished (a failed run counts as processed too, as in Sidekiq); in the
    same round trip, publish the job's (channel, message) if it has one."""
    now = int(time.time())
    async with redis.pipeline(transaction=False) as pipe:
        if publish is not None:
            pipe.publish(*publish)
        pipe.incr(PROCESSED)
        if failed:
            pipe.incr(FAILED)
        pipe.incr(SECOND_PREFIX + str(now))
        pipe.expire(SECOND_PREFIX + str(now), 120)
        pipe.incr(MINUTE_PREFIX + str(now // 60))
        pipe.expire(MINUTE_PREFIX + str(now // 60), 2 * 3600)
        await pipe.execute()


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
