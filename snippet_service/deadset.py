"""Failure records in Redis, shared by every process: jobs waiting to retry and dead jobs.

Dead jobs live in a sorted set (score: failed-at) with their details in a hash, capped
like Sidekiq's: 10,000 entries and 180 days.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

DEAD_SET = "snippets:dead"
DEAD_DATA = "snippets:dead:data"
RETRY_SET = "snippets:retrying"
RETRY_DATA = "snippets:retrying:data"
FAILURES_PREFIX = "snippets:failures:"
DEAD_MAX_ENTRIES = 10_000
DEAD_MAX_AGE_SECONDS = 180 * 24 * 3600
FAILURES_TTL_SECONDS = 30 * 24 * 3600

# Drop entries older than ARGV[1] and beyond the newest ARGV[2], with their details.
_TRIM = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local excess = {}
local size = redis.call('ZCARD', KEYS[1]) - #old
if size > tonumber(ARGV[2]) then
  excess = redis.call('ZRANGE', KEYS[1], #old, #old + size - tonumber(ARGV[2]) - 1)
end
for _, list in ipairs({old, excess}) do
  for i = 1, #list, 500 do
    local chunk = {unpack(list, i, math.min(i + 499, #list))}
    redis.call('ZREM', KEYS[1], unpack(chunk))
    redis.call('HDEL', KEYS[2], unpack(chunk))
  end
end
return #old + #excess
"""


@dataclass
class FailedJob:
    """One failure of a job, as the dashboard shows it."""

    job_id: str
    function: str
    args: list[Any]
    error_class: str
    error: str
    traceback: str
    tries: int
    retries: int
    failed_at: float
    next_at: float | None = None
    queue: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> FailedJob:
        return cls(**json.loads(raw))


async def count_failures(redis: Redis, job_id: str) -> int:
    """Add one to the job's failure count and return it."""
    key = FAILURES_PREFIX + job_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, FAILURES_TTL_SECONDS)
        count, _ = await pipe.execute()
    return int(count)


async def record_retry(redis: Redis, job: FailedJob) -> None:
    """Show a job as waiting to retry at ``job.next_at``."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(RETRY_SET, {job.job_id: job.next_at or job.failed_at})
        pipe.hset(RETRY_DATA, job.job_id, job.dumps())
        await pipe.execute()


def forget_commands(job_id: str) -> list[list[str]]:
    """The Redis commands of :func:`forget_job`, as data."""
    return [["ZREM", RETRY_SET, job_id], ["HDEL", RETRY_DATA, job_id],
            ["DEL", FAILURES_PREFIX + job_id]]


async def forget_job(redis: Redis, job_id: str) -> None:
    """The job finished: drop its retry record and failure count."""
    async with redis.pipeline(transaction=True) as pipe:
        for parts in forget_commands(job_id):
            pipe.execute_command(*parts)
        await pipe.execute()


async def record_dead(redis: Redis, job: FailedJob) -> None:
    """Move a job to the dead set and trim the set to its caps."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(RETRY_SET, job.job_id)
        pipe.hdel(RETRY_DATA, job.job_id)
        pipe.delete(FAILURES_PREFIX + job.job_id)
        pipe.zadd(DEAD_SET, {job.job_id: job.failed_at})
        pipe.hset(DEAD_DATA, job.job_id, job.dumps())
        await pipe.execute()
    await trim_dead(redis)


async def trim_dead(
    redis: Redis, max_entries: int = DEAD_MAX_ENTRIES, max_age: float = DEAD_MAX_AGE_SECONDS
) -> int:
    """Drop dead jobs past the caps; return how many went."""
    cutoff = time.time() - max_age
    removed = await redis.eval(  # type: ignore[misc]
        _TRIM, 2, DEAD_SET, DEAD_DATA, str(cutoff), str(max_entries)
    )
    return int(removed)


async def dead_count(redis: Redis) -> int:
    return int(await redis.zcard(DEAD_SET))


async def dead_jobs(redis: Redis, offset: int = 0, limit: int = 25) -> list[FailedJob]:
    """A page of dead jobs, newest first."""
    ids = await redis.zrevrange(DEAD_SET, offset, offset + limit - 1)
    return await _load(redis, DEAD_DATA, ids)


async def get_dead(redis: Redis, job_id: str) -> FailedJob | None:
    raw = await redis.hget(DEAD_DATA, job_id)  # type: ignore[misc]
    return FailedJob.loads(raw) if raw else None


async def get_retrying(redis: Redis, job_id: str) -> FailedJob | None:
    raw = await redis.hget(RETRY_DATA, job_id)  # type: ignore[misc]
    return FailedJob.loads(raw) if raw else None


async def remove_dead(redis: Redis, job_id: str) -> bool:
    """Delete one dead job; False if it was not there."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(DEAD_SET, job_id)
        pipe.hdel(DEAD_DATA, job_id)
        removed, _ = await pipe.execute()
    return bool(removed)


async def retrying_jobs(redis: Redis, offset: int = 0, limit: int = 25) -> list[FailedJob]:
    """A page of jobs waiting to retry, soonest first."""
    ids = await redis.zrange(RETRY_SET, offset, offset + limit - 1)
    return await _load(redis, RETRY_DATA, ids)


async def _load(redis: Redis, data_key: str, ids: list[bytes]) -> list[FailedJob]:
    if not ids:
        return []
    raws = await redis.hmget(data_key, ids)  # type: ignore[misc]
    return [FailedJob.loads(raw) for raw in raws if raw]
