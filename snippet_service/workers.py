"""The registry of live worker processes in Redis: heartbeats, for health checks and the
dashboard. A worker that stops beating drops out within ``LIVE_WITHIN`` seconds."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis

WORKERS = "snippets:workers"
WORKER_PREFIX = "snippets:worker:"
HEARTBEAT_SECONDS = 5.0
LIVE_WITHIN = 30.0


@dataclass
class RunningJob:
    """A job a worker is running."""

    job_id: str
    started_at: float
    job_try: int


@dataclass
class WorkerInfo:
    """What one worker process says about itself at each heartbeat."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    max_jobs: int
    queue: str
    running: list[RunningJob] = field(default_factory=list)
    seen_at: float = 0.0


def new_worker_info(max_jobs: int, queue: str) -> WorkerInfo:
    host, pid = socket.gethostname(), os.getpid()
    return WorkerInfo(f"{host}:{pid}:{int(time.time())}", host, pid, time.time(), max_jobs, queue)


async def heartbeat(redis: Redis, info: WorkerInfo) -> None:
    """Say this worker is alive (and what it runs) for the next LIVE_WITHIN seconds."""
    info.seen_at = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(WORKERS, {info.worker_id: info.seen_at})
        pipe.set(WORKER_PREFIX + info.worker_id, json.dumps(asdict(info)), ex=int(LIVE_WITHIN))
        pipe.zremrangebyscore(WORKERS, "-inf", info.seen_at - 3600)
        await pipe.execute()


async def unregister(redis: Redis, worker_id: str) -> None:
    """This worker is stopping."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(WORKERS, worker_id)
        pipe.delete(WORKER_PREFIX + worker_id)
        await pipe.execute()


async def live_workers(redis: Redis) -> list[WorkerInfo]:
    """Workers that beat within LIVE_WITHIN seconds."""
    ids = await redis.zrangebyscore(WORKERS, time.time() - LIVE_WITHIN, "+inf")
    if not ids:
        return []
    raws = await redis.mget([WORKER_PREFIX + worker_id.decode() for worker_id in ids])
    found = []
    for raw in raws:
        if raw:
            data = json.loads(raw)
            data["running"] = [RunningJob(**job) for job in data.get("running", [])]
            found.append(WorkerInfo(**data))
    return found
