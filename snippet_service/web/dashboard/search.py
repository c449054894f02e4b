"""``GET /jobs/search?q=…``: find jobs by snippet id, job id or error text in the queue
(ready and scheduled), the Retries and the Dead set, paged.

Every lookup stays within the bounds the dead set keeps. A job id names its snippet
(``highlight:{id}:{revision}``, ``expire:{id}``), so a snippet id is a direct lookup of its
revisions' job ids, plus a ZSCAN of the retry and dead sets' ids (at most
:data:`SCAN_LIMIT` entries of each) for jobs of older revisions; a job id is a direct lookup
and, with ``:`` in it, a prefix scanned the same way; error text reads at most the newest
:data:`SCAN_LIMIT` dead jobs and as many jobs waiting to retry (the Dead page's filter
bound).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from arq.connections import ArqRedis

from snippet_service import db, deadset
from snippet_service.queue import expire_job_id, highlight_job_id
from snippet_service.web.dashboard.data import FILTER_SCAN_LIMIT, PAGE_SIZE, Page, job_detail
from snippet_service.web.dashboard.pages import base_context
from snippet_service.web.typedefs import CONFIG, DB, REDIS

logger = logging.getLogger("snippet_service.web.dashboard")

MODES = {"any": "anything", "snippet": "snippet id", "job": "job id", "error": "error text"}
MAX_QUERY = 200
MAX_REVISIONS = 50  # a snippet's newest revisions looked up directly
SCAN_LIMIT = FILTER_SCAN_LIMIT
SCAN_COUNT = 1000
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class BadQuery(ValueError):
    """A search that cannot be run; its text is the page's message."""


@dataclass(frozen=True)
class Hit:
    """A job found: where it waits (queued, scheduled, retrying, dead) and why it matched."""

    job_id: str
    where: str
    matched: str


def parse(query: Mapping[str, str]) -> tuple[str, str, int]:
    """The search text, mode and page number of a request's query; raises :class:`BadQuery`."""
    text = query.get("q", "").strip()
    mode = query.get("mode", "any")
    raw_page = query.get("page", "1")
    if len(text) > MAX_QUERY:
        raise BadQuery(f"A search is at most {MAX_QUERY} characters.")
    if not text.isprintable():
        raise BadQuery("A search cannot contain control characters.")
    if mode not in MODES:
        raise BadQuery(f"Search in one of: {', '.join(MODES)}.")
    if not (raw_page.isascii() and raw_page.isdigit() and 0 < int(raw_page) < 1_000_000):
        raise BadQuery("The page is a number from 1.")
    if mode == "snippet" and text and _snippet_id(text) is None:
        raise BadQuery("A snippet id is like 42 or k3Jd9_x-Qa2.")
    return text, mode, int(raw_page)


def _snippet_id(text: str) -> str | None:
    ident = text.removeprefix("#")
    return ident if db.ID_PATTERN.fullmatch(ident) else None


async def find(redis: ArqRedis, database: db.Database, queue: str, text: str,
               mode: str) -> list[Hit]:
    """Every job the search finds (id matches first, then error text), each once per set."""
    hits: dict[tuple[str, str], Hit] = {}

    def add(found: list[tuple[str, str]], matched: str) -> None:
        for job_id, where in found:
            hits.setdefault((job_id, where), Hit(job_id, where, matched))

    snippet_id = _snippet_id(text)
    if mode in ("any", "snippet") and snippet_id is not None:
        add(await _locate(redis, queue, await _snippet_jobs(redis, database, snippet_id)),
            "snippet id")
    if mode in ("any", "job"):
        job_ids = [text]
        if mode == "job" or ":" in text:
            prefix = _GLOB_SPECIAL.sub(r"\\\1", text) + "*"
            scanned = {job_id for key in (queue, deadset.RETRY_SET, deadset.DEAD_SET)
                       for job_id in await _scan(redis, key, prefix)}
            job_ids += sorted(scanned, key=_natural)
        add(await _locate(redis, queue, job_ids), "job id")
    if mode in ("any", "error"):
        add(await _by_error(redis, text.lower()), "error text")
    return list(hits.values())


def _natural(job_id: str) -> list[tuple[int, int, str]]:
    """Sorts ``highlight:9:1`` before ``highlight:10:1``."""
    return [(0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
            for part in job_id.split(":")]


async def _snippet_jobs(redis: ArqRedis, database: db.Database, snippet_id: str) -> list[str]:
    """The job ids that may belong to a snippet: its newest revisions' and its expiry's
    (direct), and those in the retry and dead sets (scanned, bounded)."""
    job_ids = [expire_job_id(snippet_id)]
    status = await db.snippet_status(database, snippet_id)
    if status is not None:
        revision = status[1]
        job_ids += [highlight_job_id(snippet_id, number)
                    for number in range(revision, max(0, revision - MAX_REVISIONS), -1)]
    for key in (deadset.RETRY_SET, deadset.DEAD_SET):
        job_ids += [job_id for job_id in await _scan(redis, key, f"*:{snippet_id}*")
                    if job_id.split(":")[1:2] == [snippet_id]]
    return job_ids


async def _scan(redis: ArqRedis, key: str, match: str) -> list[str]:
    """Members of a sorted set matching a glob, looking at no more than SCAN_LIMIT."""
    found: list[str] = []
    cursor, looked = 0, 0
    while True:
        cursor, members = await redis.zscan(key, cursor, match=match, count=SCAN_COUNT)
        found += [member.decode() for member, _ in members]
        looked += SCAN_COUNT
        if cursor == 0 or looked >= SCAN_LIMIT:
            return found


async def _locate(redis: ArqRedis, queue: str, job_ids: list[str]) -> list[tuple[str, str]]:
    """Where each of these job ids is (if anywhere): queued or scheduled, retrying, dead."""
    unique = list(dict.fromkeys(job_ids))
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in unique:
            pipe.zscore(queue, job_id)
            pipe.zscore(deadset.RETRY_SET, job_id)
            pipe.zscore(deadset.DEAD_SET, job_id)
        scores = await pipe.execute()
    now_ms = time.time() * 1000
    found = []
    for index, job_id in enumerate(unique):
        queued, retrying, dead = scores[3 * index:3 * index + 3]
        if queued is not None:
            found.append((job_id, "retrying" if retrying is not None
                          else "scheduled" if queued > now_ms else "queued"))
        if dead is not None:
            found.append((job_id, "dead"))
    return found


async def _by_error(redis: ArqRedis, needle: str) -> list[tuple[str, str]]:
    """Jobs waiting to retry (soonest first), then dead jobs (newest first), whose error
    contains the text; at most SCAN_LIMIT of each read."""
    found = []
    for where, read in (("retrying", deadset.retrying_jobs), ("dead", deadset.dead_jobs)):
        for offset in range(0, SCAN_LIMIT, 500):
            chunk = await read(redis, offset, 500)
            found += [(job.job_id, where) for job in chunk
                      if needle in f"{job.error_class}: {job.error}".lower()]
            if len(chunk) < 500:
                break
    return found


async def search(request: web.Request) -> web.StreamResponse:
    """The search form and a page of what it found; 400 for a search that cannot run."""
    context: dict[str, Any] = {
        **base_context(request, "search"), "modes": MODES, "q": "", "mode": "any",
        "page": None, "rows": [], "problem": None,
    }
    try:
        text, mode, number = parse(request.query)
    except BadQuery as exc:
        shown = "".join(char for char in request.query.get("q", "") if char.isprintable())
        context.update(problem=str(exc), q=shown[:MAX_QUERY])
        return aiohttp_jinja2.render_template("jobs/search.html", request, context, status=400)
    context.update(q=text, mode=mode)
    if text:
        redis, queue = request.app[REDIS], request.app[CONFIG].queue_name
        hits = await find(redis, request.app[DB], queue, text, mode)
        start = (number - 1) * PAGE_SIZE
        shown_hits = hits[start:start + PAGE_SIZE]
        context["page"] = Page(shown_hits, number, len(hits))
        context["rows"] = [(hit, await job_detail(redis, queue, hit.job_id))
                           for hit in shown_hits]
    return aiohttp_jinja2.render_template("jobs/search.html", request, context)


def setup_search_routes(app: web.Application) -> None:
    app.router.add_get("/jobs/search", search, name="jobs_search")
