"""The jobs dashboard at /jobs: Sidekiq's Web UI for our arq queue."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import aiohttp_jinja2
from aiohttp import web

from snippet_service.web.dashboard.access import AUTH_FAILURES_PER_MINUTE, describe
from snippet_service.web.dashboard.views import setup_dashboard_routes
from snippet_service.web.throttle import FailureWindow
from snippet_service.web.typedefs import AUTH_FAILURES, CONFIG

logger = logging.getLogger("snippet_service.web.dashboard")


def _when(epoch: float | None) -> str:
    if not epoch:
        return "–"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.1f} s"


def setup_dashboard(app: web.Application) -> None:
    """Routes and template filters of the dashboard (aiohttp_jinja2 must be set up)."""
    env = aiohttp_jinja2.get_env(app)
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["tojson_text"] = lambda value: json.dumps(value, ensure_ascii=False)
    setup_dashboard_routes(app)
    app[AUTH_FAILURES] = FailureWindow(AUTH_FAILURES_PER_MINUTE, 60.0)
    app.on_startup.append(_log_access_rule)


async def _log_access_rule(app: web.Application) -> None:
    logger.info("%s", describe(app[CONFIG]))
