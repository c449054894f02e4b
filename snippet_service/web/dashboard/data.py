"""What the dashboard shows, read from Redis only (right with many web and worker processes).

Every listing reads one page of a sorted set; nothing loads a whole set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from snippet_service import deadset

PAGE_SIZE = 25
FILTER_SCAN_LIMIT = 20_000


@dataclass
class JobView:
    """One job as the dashboard lists it."""

    job_id: str
    function: str = "?"
    args: list[Any] = field(default_factory=list)
    enqueued_at: float | None = None
    run_at: float | None = None
    tries: int = 0
    state: str = "unknown"
    failure: deadset.FailedJob | None = None
    result: Any = None
    success: bool | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class Page:
    items: list[Any]
    number: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def page_bounds(number: int) -> tuple[int, int]:
    start = (max(1, number) - 1) * PAGE_SIZE
    return start, start + PAGE_SIZE - 1


def _payload(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"f": "(not JSON)"}
    return data if isinstance(data, dict) else {}


async def _with_payloads(redis: ArqRedis, scored: list[tuple[bytes, float]]) -> list[JobView]:
    if not scored:
        return []
    raws = await redis.mget([job_key_prefix + job_id.decode() for job_id, _ in scored])
    views = []
    for (job_id, score), raw in zip(scored, raws, strict=True):
        data = _payload(raw)
        views.append(JobView(
            job_id=job_id.decode(), function=str(data.get("f", "?")), args=data.get("a", []),
            enqueued_at=(data["et"] / 1000) if "et" in data else None, run_at=score / 1000,
            tries=int(data.get("t") or 0),
        ))
    return views


async def scheduled(redis: ArqRedis, queue: str, number: int) -> Page:
    """Deferred jobs (and jobs waiting to retry), soonest first."""
    now_ms = int(time.time() * 1000)
    start, _ = page_bounds(number)
    scored = await redis.zrangebyscore(queue, f"({now_ms}", "+inf", start=start,
                                       num=PAGE_SIZE, withscores=True)
    total = await redis.zcount(queue, f"({now_ms}", "+inf")
    return Page(await _with_payloads(redis, scored), number, int(total))


async def queue_stats(redis: ArqRedis, queue: str) -> dict[str, Any]:
    """Size, ready jobs and latency (age of the oldest ready job) of a queue."""
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue)
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zrangebyscore(queue, "-inf", now_ms, start=0, num=1, withscores=True)
        size, ready, oldest = await pipe.execute()
    latency = (now_ms - oldest[0][1]) / 1000 if oldest else 0.0
    return {"name": queue, "size": int(size), "ready": int(ready),
            "deferred": int(size) - int(ready), "latency": max(0.0, latency)}


async def retries(redis: ArqRedis, number: int) -> Page:
    start, _ = page_bounds(number)
    return Page(await deadset.retrying_jobs(redis, start, PAGE_SIZE), number,
                int(await redis.zcard(deadset.RETRY_SET)))


async def dead(redis: ArqRedis, number: int, function: str = "", text: str = "") -> Page:
    """A page of dead jobs, newest first, optionally filtered (a bounded scan)."""
    start, _ = page_bounds(number)
    if not function and not text:
        return Page(await deadset.dead_jobs(redis, start, PAGE_SIZE), number,
                    await deadset.dead_count(redis))
    matches: list[deadset.FailedJob] = []
    needle = text.lower()
    for offset in range(0, FILTER_SCAN_LIMIT, 500):
        chunk = await deadset.dead_jobs(redis, offset, 500)
        matches.extend(job for job in chunk if (not function or job.function == function)
                       and (not needle or needle in f"{job.error_class}: {job.error}".lower()))
        if len(chunk) < 500:
            break
    return Page(matches[start:start + PAGE_SIZE], number, len(matches))


async def job_detail(redis: ArqRedis, queue: str, job_id: str) -> JobView | None:
    """Everything Redis knows about one job, or None."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(job_key_prefix + job_id)
        pipe.zscore(queue, job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.get(result_key_prefix + job_id)
        pipe.get(retry_key_prefix + job_id)
        pipe.hget(deadset.RETRY_DATA, job_id)
        pipe.hget(deadset.DEAD_DATA, job_id)
        payload, score, running, result, tries, retry_raw, dead_raw = await pipe.execute()
    if not any((payload, score, result, retry_raw, dead_raw)):
        return None
    data, outcome = _payload(payload), _payload(result)
    source = data or outcome
    view = JobView(job_id=job_id, function=str(source.get("f", "?")), args=source.get("a", []),
                   enqueued_at=(source["et"] / 1000) if "et" in source else None,
                   run_at=score / 1000 if score else None,
                   tries=int(tries or outcome.get("t") or 0))
    if outcome:
        view.result, view.success = outcome.get("r"), bool(outcome.get("s"))
        view.started_at, view.finished_at = outcome.get("st", 0) / 1000, outcome.get("ft", 0) / 1000
    if dead_raw:
        view.state, view.failure = "dead", deadset.FailedJob.loads(dead_raw)
        view.function, view.args = view.failure.function, view.failure.args
    elif running:
        view.state = "running"
    elif retry_raw and score:
        view.state, view.failure = "retrying", deadset.FailedJob.loads(retry_raw)
    elif score:
        view.state = "scheduled" if score > time.time() * 1000 else "queued"
    elif outcome:
        aborted = not view.success and str(view.result).startswith("CancelledError")
        view.state = "aborted" if aborted else "complete" if view.success else "failed"
    return view


async def server_info(redis: ArqRedis) -> dict[str, Any]:
    """Version, memory, clients and uptime of the Redis/Valkey server."""
    info = await redis.info()
    return {
        "server": "Valkey" if "valkey_version" in info else "Redis",
        "version": info.get("valkey_version") or info.get("redis_version", "?"),
        "memory": info.get("used_memory_human", "?"),
        "clients": info.get("connected_clients", 0),
        "uptime": int(info.get("uptime_in_seconds", 0)),
    }
