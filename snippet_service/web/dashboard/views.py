"""The dashboard pages and their POST actions (each redirects back, Post/Redirect/Get)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from snippet_service import deadset, stats, workers
from snippet_service import jobops as actions
from snippet_service.web.dashboard import data
from snippet_service.web.dashboard.access import ACCESS
from snippet_service.web.dashboard.control import setup_control_routes
from snippet_service.web.dashboard.groups import setup_group_routes
from snippet_service.web.dashboard.history import setup_history_routes
from snippet_service.web.dashboard.jobpage import job_context, setup_job_routes
from snippet_service.web.dashboard.pages import base_context, page_number
from snippet_service.web.dashboard.search import setup_search_routes
from snippet_service.web.typedefs import CONFIG, DB, REDIS

logger = logging.getLogger("snippet_service.web.dashboard")
MAX_IDS_LOGGED = 20


@aiohttp_jinja2.template("jobs/dashboard.html")
async def dashboard(request: web.Request) -> dict[str, Any]:
    redis = request.app[REDIS]
    processed, failed = await stats.totals(redis)
    hour = await stats.last_hour(redis)
    return {
        **base_context(request, "dashboard"),
        "processed": processed,
        "failed": failed,
        "rate": await stats.jobs_per_second(redis),
        "hour": hour,
        "peak": max([count for _, count in hour] + [1]),
        "queue_stats": await data.queue_stats(redis, request.app[CONFIG].queue_name),
        "server": await data.server_info(redis),
        "retrying": await redis.zcard(deadset.RETRY_SET),
        "dead": await redis.zcard(deadset.DEAD_SET),
    }


@aiohttp_jinja2.template("jobs/busy.html")
async def busy(request: web.Request) -> dict[str, Any]:
    redis = request.app[REDIS]
    live = await workers.live_workers(redis)
    jobs = {}
    for info in live:
        for running in info.running:
            jobs[running.job_id] = await data.job_detail(
                redis, request.app[CONFIG].queue_name, running.job_id
            )
    return {**base_context(request, "busy"), "workers": live, "jobs": jobs}


@aiohttp_jinja2.template("jobs/queues.html")
async def queues(request: web.Request) -> dict[str, Any]:
    redis = request.app[REDIS]
    return {**base_context(request, "queues"),
            "queues": [await data.queue_stats(redis, request.app[CONFIG].queue_name)]}


@aiohttp_jinja2.template("jobs/scheduled.html")
async def scheduled(request: web.Request) -> dict[str, Any]:
    page = await data.scheduled(request.app[REDIS], request.app[CONFIG].queue_name,
                                page_number(request))
    return {**base_context(request, "scheduled"), "page": page}


@aiohttp_jinja2.template("jobs/retries.html")
async def retries(request: web.Request) -> dict[str, Any]:
    return {**base_context(request, "retries"),
            "page": await data.retries(request.app[REDIS], page_number(request))}


@aiohttp_jinja2.template("jobs/dead.html")
async def dead(request: web.Request) -> dict[str, Any]:
    function = request.query.get("function", "")[:100]
    text = request.query.get("q", "")[:200]
    page = await data.dead(request.app[REDIS], page_number(request), function, text)
    return {**base_context(request, "dead"), "page": page, "function": function, "q": text}


@aiohttp_jinja2.template("jobs/job.html")
async def job(request: web.Request) -> dict[str, Any]:
    job_id = request.match_info["job_id"]
    context = await job_context(request, job_id)
    if context is None:
        raise web.HTTPNotFound(text=f"No job {job_id!r} is known to Redis (finished jobs are "
                               "kept for 10 minutes).")
    return {**base_context(request, "job"), **context}


async def action(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/{set}/{action}`` with ``job_id`` fields (several for "selected")."""
    redis, database = request.app[REDIS], request.app[DB]
    queue = request.app[CONFIG].queue_name
    target, verb = request.match_info["set"], request.match_info["action"]
    form = await request.post()
    ids = [str(value) for value in form.getall("job_id", []) if isinstance(value, str)]
    shown = [job_id[:100] for job_id in ids[:MAX_IDS_LOGGED]]
    logger.info("dashboard action %s/%s by %s (%s): %s%s", target, verb, request.remote,
                "authenticated" if request.get(ACCESS) == "password" else "loopback, no password",
                "every job" if verb.endswith("_all") else shown,
                f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else "")
    if verb.endswith("_all"):
        if (target, verb) == ("dead", "retry_all"):
            await actions.retry_all_dead(redis, database)
        elif (target, verb) == ("dead", "delete_all"):
            await actions.delete_all_dead(redis)
        else:
            raise web.HTTPNotFound(text="No such action.")
    elif not ids:
        raise web.HTTPBadRequest(text="Select at least one job.")
    for job_id in ids:
        match target, verb:
            case "dead", "retry":
                await actions.retry_dead(redis, database, job_id)
            case "dead", "delete":
                await actions.delete_dead(redis, job_id)
            case ("scheduled" | "retries"), "run_now":
                await actions.run_now(redis, queue, job_id)
            case ("scheduled" | "retries"), "delete":
                await actions.delete_job(redis, database, queue, job_id)
            case "retries", "kill":
                await actions.kill_retrying(redis, database, queue, job_id)
            case _:
                raise web.HTTPNotFound(text="No such action.")
    raise web.HTTPSeeOther(location=request.app.router[f"jobs_{target}"].url_for())


def setup_dashboard_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/jobs", dashboard, name="jobs_dashboard")
    router.add_get("/jobs/busy", busy, name="jobs_busy")
    router.add_get("/jobs/queues", queues, name="jobs_queues")
    router.add_get("/jobs/scheduled", scheduled, name="jobs_scheduled")
    router.add_get("/jobs/retries", retries, name="jobs_retries")
    router.add_get("/jobs/dead", dead, name="jobs_dead")
    router.add_get("/jobs/job/{job_id}", job, name="jobs_job")
    setup_history_routes(app)
    setup_job_routes(app)
    setup_group_routes(app)
    setup_search_routes(app)
    setup_control_routes(app)
    router.add_post("/jobs/{set:dead|scheduled|retries}/{action}", action, name="jobs_action")
