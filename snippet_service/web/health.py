"""``GET /healthz``: Redis, the database, live workers and free disk space, as JSON (503 when any
is missing or the disk is below MIN_FREE_DISK_MB), with this web process's host and pid
and each live worker's host, pid and running jobs, the paused queues and the highlighter's
circuit breaker (neither makes it 503: a pause is an operator's choice, and an open breaker
means the highlighter is down, not this process). Failures show as plain states; what went
wrong is logged."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from snippet_service import control, db, workers
from snippet_service.web.disk import free_mb
from snippet_service.web.typedefs import CONFIG, DB, REDIS

logger = logging.getLogger("snippet_service.web.health")

CHECK_TIMEOUT = 2.0
UNREACHABLE = "unreachable"


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, Any] = {}
    database = request.app[DB]  # reported by its backend's name: sqlite or postgresql
    try:
        await asyncio.wait_for(db.ping(database), CHECK_TIMEOUT)
        checks[database.name] = "ok"
    except Exception as exc:
        logger.warning("health check: %s: %r", database.name, exc)
        checks[database.name] = UNREACHABLE
    try:
        redis = request.app[REDIS]
        await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT)
        checks["redis"] = "ok"
        live = await asyncio.wait_for(workers.live_workers(redis), CHECK_TIMEOUT)
        checks["workers"] = len(live)
        live_workers = [{"host": info.host, "pid": info.pid, "running": len(info.running)}
                        for info in live]
        # An operator's pause and an open breaker (the highlighter is down) are shown,
        # not unhealthy: this web process and its workers are fine.
        paused = await asyncio.wait_for(control.paused(redis), CHECK_TIMEOUT)
        breaker: dict[str, Any] | None = (
            await asyncio.wait_for(control.breaker_state(redis), CHECK_TIMEOUT)).as_dict()
    except (TimeoutError, RedisError, OSError) as exc:
        logger.warning("health check: Redis: %r", exc)
        checks["redis"] = UNREACHABLE
        checks["workers"] = 0
        live_workers = []
        paused, breaker = {}, None
    config = request.app[CONFIG]
    free = None if config.database_url else free_mb(config.db_path)  # (no local file)
    disk_ok = free is None or free >= config.min_free_disk_mb
    disk = {"state": "ok" if disk_ok else "low",
            "free_mb": None if free is None else int(free),
            "min_free_mb": config.min_free_disk_mb}
    healthy = (checks[database.name] == "ok" and checks["redis"] == "ok" and checks["workers"] > 0
               and disk_ok)
    body = {"status": "ok" if healthy else "unhealthy", "checks": checks, "disk": disk,
            "host": config.host_name, "pid": os.getpid(), "workers": live_workers,
            "paused": paused, "breaker": breaker}
    return web.json_response(body, status=200 if healthy else 503)
