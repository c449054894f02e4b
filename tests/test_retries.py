"""The retry policy against an upstream that fails: Sidekiq's schedule (checked from the
times the upstream recorded), Retry-After, job timeouts, dead jobs and retrying them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp
import pytest
import redis

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.jobops import delete_all_dead, retry_dead
from snippet_service.queue import open_pool
from snippet_service.sqlite import Database
from tests.conftest import MakeStack, fresh_redis_url
from tests.helpers import create_via_api, wait_for_snippet
from tests.servers import Stack

SCALE = 0.01  # Sidekiq's schedule, a hundred times faster
RETRIES = 3


@pytest.fixture
def retry_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    return make_stack(shared=True, highlighter_url=flaky_highlighter,
                      RETRY_DELAY_SCALE=str(SCALE), HIGHLIGHT_RETRIES=str(RETRIES),
                      JOB_TIMEOUT="1")


@pytest.fixture
def one_try_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """HIGHLIGHT_RETRIES=0: the highlight job runs with retry=False."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter, HIGHLIGHT_RETRIES="0")


def unique(code: str) -> str:
    return f"{code} # {uuid.uuid4().hex}"


async def request_times(http: aiohttp.ClientSession, upstream: str, code: str) -> list[float]:
    async with http.get(upstream + "log", params={"code": code}) as response:
        times: list[float] = await response.json()
    return times


def dead_entry(stack: Stack, snippet_id: str) -> dict[str, Any] | None:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        for job_id in client.zrange(deadset.DEAD_SET, 0, -1):
            if job_id.decode().startswith(f"highlight:{snippet_id}:"):
                raw = client.hget(deadset.DEAD_DATA, job_id)
                return deadset.FailedJob.loads(raw).__dict__ if raw else None
        return None
    finally:
        client.close()


async def test_500s_retry_on_sidekiqs_schedule_then_succeed(
        retry_stack: Stack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    code = unique("fail=3")
    created = await create_via_api(http, retry_stack.url, "err500", code)
    body = await wait_for_snippet(http, retry_stack.url, created["id"], timeout=30)
    assert body["status"] == "highlighted", retry_stack.logs()

    times = await request_times(http, flaky_highlighter, code)
    assert len(times) == 4  # three failures, then success
    for count, (before, after) in enumerate(zip(times, times[1:], strict=False)):
        low = (count**4 + 15) * SCALE
        high = (count**4 + 15 + 10 * (count + 1)) * SCALE
        assert low <= after - before <= high + 0.5, (count, after - before)
    assert dead_entry(retry_stack, created["id"]) is None


async def test_retries_run_out_into_the_dead_set(
        retry_stack: Stack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    code = unique("fail=100")
    created = await create_via_api(http, retry_stack.url, "err500", code)
    body = await wait_for_snippet(http, retry_stack.url, created["id"], timeout=30)
    assert body["status"] == "failed"
    assert "highlighter answered 500: upstream exploded" in body["error"]
    assert len(await request_times(http, flaky_highlighter, code)) == RETRIES + 1

    dead = dead_entry(retry_stack, created["id"])
    assert dead is not None
    assert dead["function"] == "highlight_snippet"
    assert dead["args"] == [created["id"]]
    assert dead["error_class"] == "HighlighterUnavailable"
    assert dead["tries"] == RETRIES + 1
    assert "Traceback" in dead["traceback"]


async def test_503_retry_after_is_honoured(
        retry_stack: Stack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    code = unique("fail=1")
    created = await create_via_api(http, retry_stack.url, "err503", code)
    body = await wait_for_snippet(http, retry_stack.url, created["id"], timeout=30)
    assert body["status"] == "highlighted"
    first, second = await request_times(http, flaky_highlighter, code)
    assert second - first >= 1.0  # Retry-After: 1, although the scaled schedule says 0.15 s


async def test_a_hanging_upstream_times_out_and_retries(
        retry_stack: Stack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    code = unique("fail=1")
    created = await create_via_api(http, retry_stack.url, "hang", code)
    body = await wait_for_snippet(http, retry_stack.url, created["id"], timeout=30)
    assert body["status"] == "highlighted", retry_stack.logs()
    first, second = await request_times(http, flaky_highlighter, code)
    assert second - first >= 1.0 + 15 * SCALE  # JOB_TIMEOUT=1, then the first retry delay


async def test_a_4xx_fails_at_once(retry_stack: Stack, flaky_highlighter: str,
                                   http: aiohttp.ClientSession) -> None:
    code = unique("anything")
    created = await create_via_api(http, retry_stack.url, "bad400", code)
    body = await wait_for_snippet(http, retry_stack.url, created["id"], timeout=30)
    assert body["status"] == "failed"
    assert body["error"] == "bad400 is never accepted"
    assert len(await request_times(http, flaky_highlighter, code)) == 1
    dead = dead_entry(retry_stack, created["id"])
    assert dead is not None and dead["error_class"] == "HighlighterRejected"


async def test_retry_false_fails_once_then_retrying_from_dead_succeeds(
        one_try_stack: Stack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    code = unique("fail=1")
    created = await create_via_api(http, one_try_stack.url, "err500", code)
    body = await wait_for_snippet(http, one_try_stack.url, created["id"], timeout=30)
    assert body["status"] == "failed"
    assert len(await request_times(http, flaky_highlighter, code)) == 1
    dead = dead_entry(one_try_stack, created["id"])
    assert dead is not None and dead["tries"] == 1

    config = Config.from_env({"REDIS_URL": one_try_stack.redis_url,
                              "SNIPPETS_DB": str(one_try_stack.db_path)})
    pool = await open_pool(config)
    database = Database(config.db_path, 1)
    await database.open()
    try:
        assert await retry_dead(pool, database, dead["job_id"])
        assert not await retry_dead(pool, database, dead["job_id"])  # gone from the set
    finally:
        await database.close()
    body = await wait_for_snippet(http, one_try_stack.url, created["id"], timeout=30)
    assert body["status"] == "highlighted"
    assert body["revision"] == 2
    assert dead_entry(one_try_stack, created["id"]) is None
    try:
        await delete_all_dead(pool)
        assert await deadset.dead_count(pool) == 0
    finally:
        await pool.aclose()


async def test_dead_set_is_capped(valkey: str) -> None:
    pool = await open_pool(Config.from_env({"REDIS_URL": fresh_redis_url(valkey)}))
    try:
        now = time.time()
        for n in range(30):
            job = deadset.FailedJob(f"job-{n}", "f", [n], "E", "boom", "", 1, 0, now + n)
            await deadset.record_dead(pool, job)
        assert await deadset.dead_count(pool) == 30
        assert await deadset.trim_dead(pool, max_entries=10, max_age=1e12) == 20
        kept = await deadset.dead_jobs(pool, 0, 100)
        assert [job.job_id for job in kept] == [f"job-{n}" for n in range(29, 19, -1)]
        assert await pool.hlen(deadset.DEAD_DATA) == 10  # type: ignore[misc]
        assert await deadset.trim_dead(pool, max_age=-3600) == 10  # all "older" than that
    finally:
        await pool.aclose()

