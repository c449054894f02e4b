"""Pausing a queue: every worker stops claiming its jobs within a poll, running jobs
finish, deferred and retrying jobs keep their times, and resuming lets everything run;
the dashboard's Pause/Resume buttons (CSRF-checked) and the banner on every page."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from snippet_service import control
from snippet_service.config import Config
from snippet_service.queue import highlight_job_id, open_pool
from tests.conftest import MakeStack
from tests.databases import statuses
from tests.helpers import create_via_api, form_token, token_cookie, until, wait_for_snippet
from tests.servers import Stack

pytestmark = pytest.mark.spread  # every test starts a stack of its own

QUEUE = "snippets:queue"


@pytest.fixture
async def pool_for() -> AsyncIterator[list[ArqRedis]]:
    pools: list[ArqRedis] = []
    yield pools
    for pool in pools:
        await pool.aclose()


async def open_stack_pool(stack: Stack, pools: list[ArqRedis]) -> ArqRedis:
    pool = await open_pool(Config.from_env({"REDIS_URL": stack.redis_url}))
    pools.append(pool)
    return pool


async def healthz(http: aiohttp.ClientSession, stack: Stack) -> dict[str, object]:
    async with http.get(f"{stack.url}/healthz") as response:
        assert response.status == 200, await response.text()
        body: dict[str, object] = await response.json()
    return body


async def dashboard_post(http: aiohttp.ClientSession, stack: Stack, path: str,
                         fields: dict[str, str], token: str | None) -> int:
    data = {**fields, **({"csrf_token": token} if token else {})}
    headers = token_cookie(token) if token else {}
    async with http.post(f"{stack.url}{path}", data=data, headers=headers,
                         allow_redirects=False) as response:
        return response.status


async def running_highlights(pool: ArqRedis, job_ids: list[str]) -> int:
    marks = await pool.mget([in_progress_key_prefix + job_id for job_id in job_ids])
    return sum(mark is not None for mark in marks)


async def test_pause_holds_every_worker_and_resume_runs_all(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession,
        pool_for: list[ArqRedis]) -> None:
    stack = make_stack(highlighter_url=flaky_highlighter)
    stack.start_worker()  # two worker processes on one queue
    await until(lambda: _live_workers(http, stack, 2), 20, "two workers never beat")
    pool = await open_stack_pool(stack, pool_for)
    tag = uuid.uuid4().hex[:8]

    # In flight when the pause comes: two slow jobs, which must finish.
    slow = [(await create_via_api(http, stack.url, "slow", f"{tag}-slow-{n} sleep=3"))["id"]
            for n in range(2)]
    slow_jobs = [highlight_job_id(ident, 1) for ident in slow]
    await until(lambda: running_highlights(pool, slow_jobs), 10, "the slow jobs never started")
    # A retrying job (its retry ~15 s away) and a deferred one keep their times.
    retrying = (await create_via_api(http, stack.url, "err500", f"{tag} fail=9"))["id"]
    retry_job = highlight_job_id(retrying, 1)
    await until(lambda: _retry_scheduled(pool, retry_job), 10, "the failing job never retried")

    # Pause through the dashboard's button: without the token it is refused.
    assert await dashboard_post(http, stack, "/jobs/queues/pause", {"queue": QUEUE}, None) == 403
    assert await control.paused(pool) == {}
    token = await form_token(http, stack.url)
    assert await dashboard_post(http, stack, "/jobs/queues/pause", {"queue": QUEUE},
                                token) == 303
    paused_at = (await control.paused(pool))[QUEUE]
    assert await running_highlights(pool, slow_jobs) == 2  # in flight as the pause came
    assert abs(paused_at - time.time()) < 5
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": f"{tag} deferred", "highlight_in": 2}) as response:
        deferred = highlight_job_id((await response.json())["id"], 1)
    scores = {job_id: await pool.zscore(QUEUE, job_id) for job_id in (deferred, retry_job)}
    ids = [(await create_via_api(http, stack.url, "python", f"{tag}-{n}"))["id"]
           for n in range(50)]
    jobs = [highlight_job_id(ident, 1) for ident in ids]

    # The slow jobs finish; for 2.5 s (well past a poll and the deferred job's time) no
    # worker claims anything.
    started = time.monotonic()

    async def quiet_long_enough() -> bool:
        assert await running_highlights(pool, jobs + [deferred, retry_job]) == 0
        return time.monotonic() - started > 2.5

    await until(quiet_long_enough, 15, "the pause did not hold", interval=0.02)
    for ident in slow:
        assert (await wait_for_snippet(http, stack.url, ident, timeout=5))["status"] == \
            "highlighted"
    assert statuses(stack.database).get("pending") == 50 + 2  # and the deferred, the retrying
    assert await pool.zcard(QUEUE) >= 52
    for job_id, score in scores.items():
        assert await pool.zscore(QUEUE, job_id) == score, job_id
    health = await healthz(http, stack)
    assert health["paused"] == {QUEUE: pytest.approx(paused_at)}
    assert health["status"] == "ok"  # a pause is the operator's choice, not ill health

    # The banner shows on every dashboard page (every tab, whoever added it).
    await banner_everywhere(http, stack, "paused since")

    # Resume: every snippet is highlighted.
    assert await dashboard_post(http, stack, "/jobs/queues/resume", {"queue": QUEUE},
                                token) == 303
    assert await control.paused(pool) == {}
    for ident in ids:
        assert (await wait_for_snippet(http, stack.url, ident, timeout=20))["status"] == \
            "highlighted"
    async with http.get(f"{stack.url}/jobs/queues") as response:
        assert "control-banner" not in await response.text()


async def _live_workers(http: aiohttp.ClientSession, stack: Stack, count: int) -> bool:
    async with http.get(f"{stack.url}/healthz") as response:
        body = await response.json()
    return bool(body["checks"]["workers"] == count)


async def _retry_scheduled(pool: ArqRedis, job_id: str) -> bool:
    return bool(await pool.zscore("snippets:retrying", job_id))


async def banner_everywhere(http: aiohttp.ClientSession, stack: Stack, text: str) -> None:
    """Every tab of the dashboard (read from its nav) shows the control banner."""
    async with http.get(f"{stack.url}/jobs") as response:
        page = await response.text()
    nav = page[page.index('<nav class="tabs">'):page.index("</nav>")]
    tabs = re.findall(r'href="(/jobs[^"]*)"', nav)
    assert len(tabs) >= 7 and "/jobs/breaker" in tabs, tabs
    for path in tabs:
        async with http.get(f"{stack.url}{path}") as response:
            assert response.status == 200, path
            body = await response.text()
        assert "control-banner" in body and text in body, path


async def test_pause_and_resume_through_control(
        make_stack: MakeStack, http: aiohttp.ClientSession, pool_for: list[ArqRedis]) -> None:
    """What the command line calls: a paused queue claims nothing, resume runs it, and the
    other web process hears of it through the done channel."""
    stack = make_stack()
    pool = await open_stack_pool(stack, pool_for)
    assert await control.pause(pool, QUEUE, by="test") is True
    assert await control.pause(pool, QUEUE, by="again") is False  # keeps the first time
    assert await control.paused_by(pool) == {QUEUE: "again"}
    ident = (await create_via_api(http, stack.url, "python", "print('held')"))["id"]
    await until(lambda: _banner(http, stack), 5, "the web process never heard of the pause")
    started = time.monotonic()

    async def still_pending() -> bool:
        body = await wait_for_snippet(http, stack.url, ident, timeout=0)
        assert body["status"] == "pending"
        return time.monotonic() - started > 1.5

    await until(still_pending, 10)
    assert await control.resume(pool, QUEUE) is True
    assert await control.resume(pool, QUEUE) is False
    assert (await wait_for_snippet(http, stack.url, ident))["status"] == "highlighted"
    await until(lambda: _no_banner(http, stack), 5, "the banner stayed")


async def _banner(http: aiohttp.ClientSession, stack: Stack) -> bool:
    async with http.get(f"{stack.url}/jobs/retries") as response:
        return "paused since" in await response.text()


async def _no_banner(http: aiohttp.ClientSession, stack: Stack) -> bool:
    return not await _banner(http, stack)

