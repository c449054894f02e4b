"""The History and Finished pages of /jobs: processed and failed jobs over 1 hour, 1 day
or 7 days, with each function's run times, and the jobs finished within
FINISHED_JOBS_WINDOW, newest first."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from snippet_service import stats
from snippet_service.web.dashboard.data import PAGE_SIZE, Page, page_bounds
from snippet_service.web.dashboard.pages import base_context, page_number
from snippet_service.web.typedefs import CONFIG, REDIS

GRAPH_WIDTH = 720
SPAN_LABELS = {"1h": "1 hour, per minute", "1d": "1 day, per 10 minutes",
               "7d": "7 days, per hour"}


@aiohttp_jinja2.template("jobs/history.html")
async def history(request: web.Request) -> dict[str, Any]:
    """``GET /jobs/history?span=1h|1d|7d``."""
    span = request.query.get("span", "1h")
    if span not in stats.SPANS:
        span = "1h"
    redis = request.app[REDIS]
    points = await stats.history(redis, span)
    return {
        **base_context(request, "history"),
        "span": span,
        "spans": SPAN_LABELS,
        "points": points,
        "peak": max([point.processed for point in points] + [1]),
        "bar": GRAPH_WIDTH / len(points),
        "width": GRAPH_WIDTH,
        "processed": sum(point.processed for point in points),
        "failed": sum(point.failed for point in points),
        "functions": await stats.duration_table(redis, span),
    }


@aiohttp_jinja2.template("jobs/finished.html")
async def finished(request: web.Request) -> dict[str, Any]:
    """``GET /jobs/finished``: a page of the jobs finished within the window."""
    window = request.app[CONFIG].finished_jobs_window
    number = page_number(request)
    start, _ = page_bounds(number)
    jobs, total = await stats.finished(request.app[REDIS], window, start, PAGE_SIZE)
    return {**base_context(request, "finished"), "page": Page(jobs, number, total),
            "window": window}


def setup_history_routes(app: web.Application) -> None:
    app.router.add_get("/jobs/history", history, name="jobs_history")
    app.router.add_get("/jobs/finished", finished, name="jobs_finished")
