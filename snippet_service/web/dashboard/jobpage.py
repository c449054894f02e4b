"""A job's page beyond what Redis keeps of it: Stop (arq's abort) and Re-queue, as POSTs
that redirect back to the page (Post/Redirect/Get) with what happened."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from snippet_service import jobops
from snippet_service.queue import job_is_live
from snippet_service.web.dashboard import data
from snippet_service.web.dashboard.access import ACCESS
from snippet_service.web.typedefs import CONFIG, DB, REDIS

logger = logging.getLogger("snippet_service.web.dashboard")

STOPPABLE = frozenset({"queued", "scheduled", "retrying", "running"})
NOTES = {
    "aborted": "Stopped: the job was aborted. Its snippet stays pending until it is re-queued.",
    "requested": "Stop requested: the job is dropped when a worker next claims it (not while "
                 "its queue is paused).",
    "finished": "The job finished before it could be stopped.",
    "not running": "The job is not queued or running: there is nothing to stop.",
    "requeued": "Re-queued: the job waits in the queue again.",
    "refused": "Nothing to re-queue: the job is still in the queue, or its snippet is no "
               "longer pending at this revision.",
}


async def job_context(request: web.Request, job_id: str) -> dict[str, Any] | None:
    """The job page's view of a job, with what may be done to it; None if Redis knows
    nothing of it (a stopped job is remembered after its kept result has gone)."""
    redis, queue = request.app[REDIS], request.app[CONFIG].queue_name
    view = await data.job_detail(redis, queue, job_id)
    stopped = await jobops.stopped_at(redis, job_id)
    if view is None:
        if stopped is None:
            return None
        view = data.JobView(job_id=job_id, state="aborted")
    live = view.state in STOPPABLE and await job_is_live(redis, job_id)
    done = request.query.get("done", "")
    return {
        "job": view,
        "stopped_at": stopped,
        "can_stop": live and stopped is None,
        "can_requeue": not live and (stopped is not None or view.state == "aborted"),
        "note": NOTES.get(done, ""),
    }


def _log(request: web.Request, verb: str, job_id: str, outcome: str) -> None:
    logger.info("dashboard action job/%s by %s (%s): [%r]: %s", verb, request.remote,
                "authenticated" if request.get(ACCESS) == "password" else "loopback, no password",
                job_id[:100], outcome)


def _back(request: web.Request, job_id: str, done: str) -> web.HTTPSeeOther:
    url = request.app.router["jobs_job"].url_for(job_id=job_id).with_query(done=done)
    return web.HTTPSeeOther(location=url)


async def stop(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/job/{job_id}/stop``: abort the job (its snippet stays pending)."""
    job_id = request.match_info["job_id"]
    outcome = await jobops.stop_job(request.app[REDIS], request.app[CONFIG].queue_name, job_id)
    _log(request, "stop", job_id, outcome)
    raise _back(request, job_id, outcome)


async def requeue(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/job/{job_id}/requeue``: enqueue a stopped job again, same job id."""
    job_id = request.match_info["job_id"]
    requeued = await jobops.requeue_job(request.app[REDIS], request.app[DB],
                                        request.app[CONFIG].queue_name, job_id)
    _log(request, "requeue", job_id, "requeued" if requeued else "refused")
    raise _back(request, job_id, "requeued" if requeued else "refused")


def setup_job_routes(app: web.Application) -> None:
    """The Stop and Re-queue POSTs (CSRF-checked and limited to the dashboard's users by
    the app's guards, like every /jobs POST)."""
    app.router.add_post("/jobs/job/{job_id}/stop", stop, name="jobs_job_stop")
    app.router.add_post("/jobs/job/{job_id}/requeue", requeue, name="jobs_job_requeue")
