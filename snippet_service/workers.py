"""The registry of live worker processes in Redis: heartbeats, for health checks and the
dashboard. Each worker names its host (``HOSTNAME``, else the machine's name) and pid, and
says how long its beat stays good (``WORKER_LIVE_WITHIN``, 30 s by default; it beats every
sixth of that). A worker that stops beating drops out when its record expires in Redis, so
the readers (any web process, ``--check``) need no setting and no clock of their own."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis

WORKERS = "snippets:workers"
WORKER_PREFIX = "snippets:worker:"
LIVE_WITHIN = 30.0
BEATS_PER_WINDOW = 6  # a beat every 5 s with the default window
KEEP_IDS_SECONDS = 3600


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
    live_within: float = LIVE_WITHIN

    @property
    def beat_seconds(self) -> float:
        """How often this worker beats."""
        return self.live_within / BEATS_PER_WINDOW


def new_worker_info(max_jobs: int, queue: str, host: str,
                    live_within: float = LIVE_WITHIN) -> WorkerInfo:
    """This process's record, as ``host`` (the configured host name)."""
    pid, now = os.getpid(), time.time()
    return WorkerInfo(f"{host}:{pid}:{int(now)}", host, pid, now, max_jobs, queue,
                      live_within=live_within)


async def heartbeat(redis: Redis, info: WorkerInfo) -> None:
    """Say this worker is alive (and what it runs) for the next ``info.live_within``
    seconds, by Redis's clock."""
    info.seen_at = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(WORKERS, {info.worker_id: info.seen_at})
        pipe.set(WORKER_PREFIX + info.worker_id, json.dumps(asdict(info)),
                 px=int(info.live_within * 1000))
        pipe.zremrangebyscore(WORKERS, "-inf", info.seen_at - KEEP_IDS_SECONDS)
        await pipe.execute()


async def unregister(redis: Redis, worker_id: str) -> None:
    """This worker is stopping."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(WORKERS, worker_id)
        pipe.delete(WORKER_PREFIX + worker_id)
        await pipe.execute()


async def live_workers(redis: Redis) -> list[WorkerInfo]:
    """Workers whose last beat is still good, by host and pid (the records of the workers
    seen in the last hour that have not expired)."""
    ids = await redis.zrange(WORKERS, 0, -1)
    if not ids:
        return []
    raws = await redis.mget([WORKER_PREFIX + worker_id.decode() for worker_id in ids])
    found = []
    for raw in raws:
        if raw:
            data = json.loads(raw)
            data["running"] = [RunningJob(**job) for job in data.get("running", [])]
            found.append(WorkerInfo(**data))
    return sorted(found, key=lambda info: (info.host, info.pid))
