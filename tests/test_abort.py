"""Stopping a job from its page (arq's abort) and re-queueing it, against a real worker,
Valkey and web app: the snippet stays pending, the reconciler leaves it alone, and one
click on Re-queue highlights it."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from urllib.parse import unquote

import aiohttp
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job

from snippet_service import jobops
from snippet_service.config import Config
from snippet_service.queue import deserialize, highlight_job_id, open_pool
from snippet_service.web.csrf import FIELD_NAME
from tests.conftest import MakeStack
from tests.helpers import create_via_api, form_token, snippet_json, token_cookie, until
from tests.servers import Stack

QUEUE = "snippets:queue"


@pytest.fixture
def abort_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """The flaky highlighter (``hang`` with ``fail=1`` hangs once, then answers), a long
    job timeout, and a reconciler that looks every second at snippets pending for one."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter, JOB_TIMEOUT="60",
                      RECONCILE_INTERVAL="1", RECONCILE_AFTER="1")


@pytest.fixture
async def pool(abort_stack: Stack) -> AsyncIterator[ArqRedis]:
    redis = await open_pool(Config(redis_url=abort_stack.redis_url))
    yield redis
    await redis.aclose()


async def job_page(http: aiohttp.ClientSession, stack: Stack, job_id: str,
                   query: str = "") -> str:
    async with http.get(f"{stack.url}/jobs/job/{job_id}{query}") as response:
        assert response.status == 200, await response.text()
        return unquote(await response.text())  # the first ":" of a job id is escaped


async def post_job(http: aiohttp.ClientSession, stack: Stack, job_id: str, verb: str,
                   token: str | None = None) -> tuple[int, str]:
    """POST the job page's Stop or Re-queue form; the status and the Location."""
    token = token or await form_token(http, stack.url)
    async with http.post(f"{stack.url}/jobs/job/{job_id}/{verb}", data={FIELD_NAME: token},
                         headers=token_cookie(token), allow_redirects=False) as response:
        return response.status, unquote(response.headers.get("Location", "")) or \
            await response.text()


def queued_at(stack: Stack, snippet_id: str) -> object:
    return stack.database.query("SELECT queued_at FROM snippets WHERE slug = ?",
                                (snippet_id,))[0][0]


@pytest.mark.timeout(90)
async def test_stop_a_running_job_then_requeue_it(
        abort_stack: Stack, pool: ArqRedis, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, abort_stack.url, "hang",
                                   f"fail=1 # {uuid.uuid4().hex}")
    snippet_id = created["id"]
    job_id = f"highlight:{snippet_id}:1"
    await until(lambda: pool.exists(f"arq:in-progress:{job_id}"), 15, "the job never started")
    page = await job_page(http, abort_stack, job_id)
    assert re.search(r'class="state state-running">running<', page), page
    assert f'action="/jobs/job/{job_id}/stop"' in page

    status, location = await post_job(http, abort_stack, job_id, "stop")
    assert status == 303, location
    assert location == f"/jobs/job/{job_id}?done=aborted"
    with pytest.raises(asyncio.CancelledError):  # the job's result reads aborted
        await Job(job_id, pool, _queue_name=QUEUE, _deserializer=deserialize).result(timeout=5)
    assert (await snippet_json(http, abort_stack.url, snippet_id))["status"] == "pending"

    page = await job_page(http, abort_stack, job_id, "?done=aborted")
    assert ">aborted<" in page and "Stopped: the job was aborted." in page
    assert f'action="/jobs/job/{job_id}/requeue"' in page
    assert f'action="/jobs/job/{job_id}/stop"' not in page

    # Two reconciler passes look at the snippet (pending, no job) and leave it alone.
    for _ in range(2):
        seen = queued_at(abort_stack, snippet_id)
        await until(lambda: queued_at(abort_stack, snippet_id) != seen, 15,  # noqa: B023
                    "no reconciler pass looked at the snippet")
    assert not await pool.exists(f"arq:job:{job_id}")
    assert (await snippet_json(http, abort_stack.url, snippet_id))["status"] == "pending"

    status, location = await post_job(http, abort_stack, job_id, "requeue")
    assert (status, location) == (303, f"/jobs/job/{job_id}?done=requeued")

    async def highlighted() -> bool:
        body = await snippet_json(http, abort_stack.url, snippet_id)
        return body["status"] == "highlighted" and body["revision"] == 1

    await until(highlighted, 20, "the re-queued job did not highlight the snippet")
    assert await Job(job_id, pool, _queue_name=QUEUE,
                     _deserializer=deserialize).result(timeout=5) == "highlighted"
    assert await jobops.stopped_at(pool, job_id) is None


async def deferred_snippet(http: aiohttp.ClientSession, stack: Stack) -> tuple[str, str]:
    """A new snippet whose highlight is deferred an hour: its id and its job's id."""
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": f"later # {uuid.uuid4().hex}",
            "highlight_in": 3600}) as response:
        snippet_id = str((await response.json())["id"])
    return snippet_id, highlight_job_id(snippet_id, 1)


async def test_stop_a_deferred_job_keeps_its_time_when_requeued(
        abort_stack: Stack, pool: ArqRedis, http: aiohttp.ClientSession) -> None:
    snippet_id, job_id = await deferred_snippet(http, abort_stack)
    run_at = await pool.zscore(QUEUE, job_id)
    assert run_at is not None
    assert 'class="state state-scheduled">scheduled<' in await job_page(http, abort_stack, job_id)

    status, location = await post_job(http, abort_stack, job_id, "stop")
    assert (status, location) == (303, f"/jobs/job/{job_id}?done=aborted")
    assert await pool.zscore(QUEUE, job_id) is None
    assert (await snippet_json(http, abort_stack.url, snippet_id))["status"] == "pending"

    status, location = await post_job(http, abort_stack, job_id, "requeue")
    assert (status, location) == (303, f"/jobs/job/{job_id}?done=requeued")
    assert abs(float(await pool.zscore(QUEUE, job_id) or 0) - run_at) < 1000  # same time
    assert 'class="state state-scheduled">scheduled<' in await job_page(http, abort_stack, job_id)

    # Stopping twice, or a job that is gone, changes nothing.
    assert (await post_job(http, abort_stack, job_id, "stop"))[1].endswith("done=aborted")
    assert (await post_job(http, abort_stack, job_id, "stop"))[1].endswith(
        "done=not+running")


async def test_stop_and_requeue_need_the_csrf_token(
        abort_stack: Stack, pool: ArqRedis, http: aiohttp.ClientSession) -> None:
    snippet_id, job_id = await deferred_snippet(http, abort_stack)
    token = await form_token(http, abort_stack.url)
    for verb in ("stop", "requeue"):
        async with http.post(f"{abort_stack.url}/jobs/job/{job_id}/{verb}",
                             data={FIELD_NAME: "x" * 43}, headers=token_cookie(token),
                             allow_redirects=False) as response:
            assert response.status == 403, await response.text()
        async with http.post(f"{abort_stack.url}/jobs/job/{job_id}/{verb}",
                             data={FIELD_NAME: token},
                             headers={**token_cookie(token), "Sec-Fetch-Site": "cross-site"},
                             allow_redirects=False) as response:
            assert response.status == 403, await response.text()
    assert await pool.zscore(QUEUE, job_id) is not None  # still scheduled
