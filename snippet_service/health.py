"""``GET /healthz``: Redis, SQLite and live workers, as JSON (503 when any is down)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from snippet_service import db, workers
from snippet_service.typedefs import DB, REDIS

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(db.ping(request.app[DB]), CHECK_TIMEOUT)
        checks["sqlite"] = "ok"
    except (TimeoutError, OSError, Exception) as exc:
        checks["sqlite"] = f"error: {exc!r}"
    try:
        redis = request.app[REDIS]
        await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT)
        checks["redis"] = "ok"
        live = await asyncio.wait_for(workers.live_workers(redis), CHECK_TIMEOUT)
        checks["workers"] = len(live)
    except (TimeoutError, RedisError, OSError) as exc:
        checks["redis"] = f"error: {exc!r}"
        checks["workers"] = 0
    healthy = checks["sqlite"] == "ok" and checks["redis"] == "ok" and checks["workers"] > 0
    body = {"status": "ok" if healthy else "unhealthy", "checks": checks}
    return web.json_response(body, status=200 if healthy else 503)
