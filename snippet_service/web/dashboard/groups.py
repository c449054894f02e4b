"""The Retries and Dead pages grouped by failure (:mod:`snippet_service.deadset`'s groups):
each group's count, first and last seen, languages and pattern, its jobs, and retry-all and
delete-all for a group (POSTs, checked for the CSRF token like every dashboard action, and
logged)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from snippet_service import deadset, jobops
from snippet_service.web.dashboard.access import ACCESS
from snippet_service.web.dashboard.data import PAGE_SIZE, Page, page_bounds
from snippet_service.web.dashboard.pages import base_context, page_number
from snippet_service.web.typedefs import CONFIG, DB, REDIS

logger = logging.getLogger("snippet_service.web.dashboard")

# The URL's set (the tab it belongs to) -> the set's name in deadset.
SETS: dict[str, deadset.Where] = {"retries": "retry", "dead": "dead"}
TITLES = {"retries": "Retries", "dead": "Dead"}
WHERE = "{where:retries|dead}"
FINGERPRINT = "{fingerprint:[0-9a-f]{16}}"


@aiohttp_jinja2.template("jobs/groups.html")
async def groups(request: web.Request) -> dict[str, Any]:
    """``GET /jobs/{retries|dead}/groups``: the set's failure groups, most recent first."""
    tab = request.match_info["where"]
    redis, number = request.app[REDIS], page_number(request)
    found = await deadset.groups(redis, SETS[tab], number, PAGE_SIZE)
    total = await deadset.group_count(redis, SETS[tab])
    jobs = await redis.zcard(deadset.DEAD_SET if tab == "dead" else deadset.RETRY_SET)
    return {**base_context(request, tab), "where": tab, "title": TITLES[tab],
            "page": Page(found, number, total), "jobs": int(jobs)}


@aiohttp_jinja2.template("jobs/group.html")
async def group(request: web.Request) -> dict[str, Any]:
    """``GET /jobs/{retries|dead}/groups/{fingerprint}``: one group and a page of its jobs."""
    tab, fingerprint = request.match_info["where"], request.match_info["fingerprint"]
    redis, number = request.app[REDIS], page_number(request)
    found = await deadset.get_group(redis, SETS[tab], fingerprint)
    if found is None:
        raise web.HTTPNotFound(text=f"No {TITLES[tab].lower()} job has failure "
                               f"{fingerprint} now.")
    start, _ = page_bounds(number)
    jobs = await deadset.group_jobs(redis, SETS[tab], fingerprint, PAGE_SIZE, start)
    return {**base_context(request, tab), "where": tab, "title": TITLES[tab], "group": found,
            "page": Page(jobs, number, found.count)}


async def group_action(request: web.Request) -> web.StreamResponse:
    """``POST /jobs/{retries|dead}/groups/{fingerprint}/{retry|delete}``: every job of the
    group as it is now."""
    tab, fingerprint = request.match_info["where"], request.match_info["fingerprint"]
    verb = request.match_info["action"]
    redis, database = request.app[REDIS], request.app[DB]
    await request.post()
    logger.info("dashboard action %s/groups/%s by %s (%s): group %s", tab, verb,
                request.remote,
                "authenticated" if request.get(ACCESS) == "password" else "loopback, no password",
                fingerprint)
    operation = jobops.retry_group if verb == "retry" else jobops.delete_group
    count = await operation(redis, database, fingerprint, where=SETS[tab],
                            queue=request.app[CONFIG].queue_name)
    logger.info("dashboard action %s/groups/%s: %d jobs of group %s", tab, verb, count,
                fingerprint)
    raise web.HTTPSeeOther(location=request.app.router["jobs_groups"].url_for(where=tab))


def setup_group_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"/jobs/{WHERE}/groups", groups, name="jobs_groups")
    router.add_get(f"/jobs/{WHERE}/groups/{FINGERPRINT}", group, name="jobs_group")
    router.add_post(f"/jobs/{WHERE}/groups/{FINGERPRINT}/{{action:retry|delete}}",
                    group_action, name="jobs_group_action")
