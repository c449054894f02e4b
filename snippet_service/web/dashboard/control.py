"""The dashboard's control of the queue: pause and resume (buttons on the Queues page), the
Breaker tab (the highlighter's circuit breaker: state, probes, history; open or close it by
hand), and the banner every dashboard page shows while a queue is paused or the breaker is
open. Every POST is CSRF-checked (web/csrf.py, like every form POST) and logged."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from jinja2.runtime import Context

from snippet_service import control, jobops
from snippet_service.control import ControlState
from snippet_service.web.dashboard.access import ACCESS
from snippet_service.web.dashboard.pages import base_context
from snippet_service.web.typedefs import CONFIG, DB, DONE, REDIS

logger = logging.getLogger("snippet_service.web.dashboard")

HISTORY_SHOWN = 100


def _who(request: web.Request) -> str:
    how = "authenticated" if request.get(ACCESS) == "password" else "loopback, no password"
    return f"dashboard, {request.remote} ({how})"


@jinja2.pass_context
def control_state(context: Context) -> ControlState:
    """``{{ control_state() }}`` in templates: paused queues and the breaker as this web
    process last read them (kept current through the done channel)."""
    request: web.Request = context["request"]
    return request.app[DONE].control


async def _changed(request: web.Request) -> None:
    """This process shows the change at once (the others hear of it on the channel)."""
    await request.app[DONE].control.refresh(request.app[REDIS])


async def _queue_field(request: web.Request) -> str:
    form = await request.post()
    queue = form.get("queue")
    if queue != request.app[CONFIG].queue_name:
        raise web.HTTPNotFound(text="No such queue.")
    return queue


async def pause(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/queues/pause`` with ``queue``: workers stop claiming its jobs."""
    queue, who = await _queue_field(request), _who(request)
    logger.info("dashboard action pause %s by %s", queue, who)
    await control.pause(request.app[REDIS], queue, by=who)
    await _changed(request)
    raise web.HTTPSeeOther(location=request.app.router["jobs_queues"].url_for())


async def resume(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/queues/resume`` with ``queue``."""
    queue = await _queue_field(request)
    logger.info("dashboard action resume %s by %s", queue, _who(request))
    await control.resume(request.app[REDIS], queue)
    await _changed(request)
    raise web.HTTPSeeOther(location=request.app.router["jobs_queues"].url_for())


@aiohttp_jinja2.template("jobs/breaker.html")
async def breaker(request: web.Request) -> dict[str, Any]:
    """``GET /jobs/breaker``: the breaker's state, its rules and its history."""
    redis, config = request.app[REDIS], request.app[CONFIG]
    return {**base_context(request, "breaker"), "config": config,
            "breaker": await control.breaker_state(redis),
            "history": await control.breaker_history(redis, HISTORY_SHOWN),
            "paused_by": await control.paused_by(redis)}


async def breaker_action(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/breaker/open`` holds highlight jobs back until a probe or an operator
    closes it; ``POST /jobs/breaker/close`` releases them (and re-queues, once, the jobs
    that went dead during the outage)."""
    redis, verb, who = request.app[REDIS], request.match_info["action"], _who(request)
    await request.post()
    logger.info("dashboard action breaker/%s by %s", verb, who)
    if verb == "open":
        await control.open_breaker(redis, "opened from the dashboard", by=who)
    else:
        opened_at = await control.close_breaker(redis, "closed from the dashboard", by=who)
        if opened_at is not None:
            lookback = control.outage_lookback(request.app[CONFIG].breaker_window)
            await jobops.requeue_outage_deaths(redis, request.app[DB], opened_at, lookback)
    await _changed(request)
    raise web.HTTPSeeOther(location=request.app.router["jobs_breaker"].url_for())


def setup_control_routes(app: web.Application) -> None:
    """The routes above, and ``control_state()`` for the templates."""
    aiohttp_jinja2.get_env(app).globals["control_state"] = control_state
    router = app.router
    router.add_post("/jobs/queues/pause", pause, name="jobs_pause")
    router.add_post("/jobs/queues/resume", resume, name="jobs_resume")
    router.add_get("/jobs/breaker", breaker, name="jobs_breaker")
    router.add_post("/jobs/breaker/{action:open|close}", breaker_action,
                    name="jobs_breaker_action")
