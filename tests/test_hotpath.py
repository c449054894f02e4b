"""The batched worker keeps arq's guarantees: jobs claimed and finished in batches still run
once per worker crowd, survive a SIGKILL and a Valkey restart in the middle of a batch,
and show their results, tries and aborts through arq's own ``Job`` API."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from snippet_service.config import Config
from snippet_service.queue import highlight_job_id, open_pool
from tests.conftest import MakeStack
from tests.databases import count_highlight_writes, statuses, writes_per_snippet
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import OwnValkey, Stack
from tests.test_recovery import wait_for_calls

pytestmark = pytest.mark.spread  # every test starts a stack of its own


async def create_many(http: aiohttp.ClientSession, base_url: str, language: str,
                      codes: list[str]) -> list[str]:
    """Create a snippet for each code through the API, 200 requests at a time."""
    ids: list[str] = []
    for first in range(0, len(codes), 200):
        bodies = await asyncio.gather(*(create_via_api(http, base_url, language, code)
                                        for code in codes[first:first + 200]))
        ids += [body["id"] for body in bodies]
    return ids


async def upstream_counts(http: aiohttp.ClientSession, upstream: str,
                          prefix: str) -> dict[str, int]:
    async with http.get(upstream + "counts", params={"prefix": prefix}) as response:
        counts: dict[str, int] = await response.json()
    return counts


def spread_codes(tag: str, count: int) -> list[str]:
    """Codes for the flaky highlighter's ``slow`` language, answered after 0.3 to 1.5 s, so
    that the jobs of one claimed batch finish in many different finish batches."""
    return [f"{tag}-{n} sleep={0.3 + (n % 13) * 0.1:.1f}" for n in range(count)]


async def start_mid_batch(stack: Stack, http: aiohttp.ClientSession, tag: str, count: int,
                          done: int) -> list[str]:
    """Create ``count`` slow snippets and wait until ``done`` of them are highlighted: the
    worker is then in the middle of its batches (some written, most still running)."""
    count_highlight_writes(stack.database)
    ids = await create_many(http, stack.url, "slow", spread_codes(tag, count))
    await until(lambda: statuses(stack.database).get("highlighted", 0) >= done, 30,
                "nothing was highlighted", interval=0.1)
    return ids


async def all_written_once(stack: Stack, count: int, message: str) -> None:
    """Wait until nothing is pending; then every snippet is highlighted, written once."""
    await until(lambda: statuses(stack.database).get("pending", 0) == 0, 120, message,
                interval=0.1)
    assert statuses(stack.database) == {"highlighted": count}, stack.logs()
    writes = writes_per_snippet(stack.database)
    assert len(writes) == count
    assert set(writes.values()) == {1}  # every revision written exactly once


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL
async def test_two_workers_share_5000_jobs_and_each_runs_once(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    stack = make_stack(highlighter_url=flaky_highlighter, WORKER_MAX_JOBS="300")
    count_highlight_writes(stack.database)
    first = stack.worker
    second = stack.start_worker()
    tag = uuid.uuid4().hex
    codes = [f"{tag}-{n}" for n in range(5000)]
    await create_many(http, stack.url, "python", codes)
    await until(lambda: statuses(stack.database).get("pending", 0) == 0, 150,
                "jobs were still pending", interval=0.1)
    assert statuses(stack.database) == {"highlighted": 5000}
    counts = await upstream_counts(http, flaky_highlighter, tag)
    assert len(counts) == 5000
    assert set(counts.values()) == {1}  # no job ran twice, in one worker or across both
    assert set(writes_per_snippet(stack.database).values()) == {1}
    assert first is not None
    for worker in (first, second):
        worker.stop()
        assert "j_complete=0 " not in worker.log(), worker.log()[-2000:]  # both worked


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("backend")
async def test_sigkill_with_1000_in_flight_mid_batch_loses_nothing(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    # JOB_TIMEOUT=3: arq's in-progress keys of the killed worker's jobs expire after 18 s.
    stack = make_stack(highlighter_url=flaky_highlighter, WORKER_MAX_JOBS="1000",
                       JOB_TIMEOUT="3")
    tag = uuid.uuid4().hex
    await start_mid_batch(stack, http, tag, 1000, done=50)
    assert stack.worker is not None
    stack.worker.stop(signal.SIGKILL)
    done_at_kill = statuses(stack.database).get("highlighted", 0)
    assert done_at_kill < 1000, "the kill came too late to land in the middle"
    stack.start_worker()
    await all_written_once(stack, 1000, "jobs of the killed worker never ran again")
    counts = await upstream_counts(http, flaky_highlighter, tag)
    assert max(counts.values()) == 2 and min(counts.values()) == 1  # some ran again


@pytest.mark.timeout(240)
async def test_valkey_restarted_mid_batch_loses_nothing(
        make_stack: MakeStack, own_valkey: OwnValkey, flaky_highlighter: str,
        http: aiohttp.ClientSession) -> None:
    stack = make_stack(redis_url=own_valkey.url, highlighter_url=flaky_highlighter,
                       WORKER_MAX_JOBS="500", RECONCILE_INTERVAL="1", RECONCILE_AFTER="1")
    await start_mid_batch(stack, http, uuid.uuid4().hex, 500, done=25)
    own_valkey.kill()
    assert statuses(stack.database).get("pending", 0) > 0
    await asyncio.sleep(0.5)  # the outage under test: half a second without Valkey
    own_valkey.start()  # empty: every queued and running job is gone from Redis
    await all_written_once(stack, 500, "snippets were lost with the queue")


@pytest.fixture
async def arq_pool(job_stack: Stack) -> AsyncIterator[ArqRedis]:
    pool = await open_pool(Config(redis_url=job_stack.redis_url))
    yield pool
    await pool.aclose()


@pytest.fixture
def job_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    return make_stack(highlighter_url=flaky_highlighter, RETRY_DELAY_SCALE="0.01",
                      JOB_TIMEOUT="5")


def job(pool: ArqRedis, snippet_id: str, revision: int = 1) -> Job:
    return Job(highlight_job_id(snippet_id, revision), pool,
               _queue_name=Config.queue_name, _deserializer=pool.job_deserializer)


async def test_results_and_try_numbers_through_arqs_job_api(
        job_stack: Stack, arq_pool: ArqRedis, http: aiohttp.ClientSession) -> None:
    plain = await create_via_api(http, job_stack.url, "python", f"ok {uuid.uuid4().hex}")
    flaky = await create_via_api(http, job_stack.url, "err500",
                                 f"fail=2 {uuid.uuid4().hex}")
    for created in (plain, flaky):
        body = await wait_for_snippet(http, job_stack.url, created["id"], timeout=30)
        assert body["status"] == "highlighted", job_stack.logs()
    plain_job, flaky_job = job(arq_pool, plain["id"]), job(arq_pool, flaky["id"])
    assert await plain_job.status() == JobStatus.complete
    assert await plain_job.result(timeout=5) == "highlighted"
    info = await flaky_job.result_info()
    assert info is not None and info.success and info.result == "highlighted"
    assert info.job_try == 3  # two failures, then the third try
    assert list(info.args) == [flaky["id"]]  # JSON keeps the tuple as a list


async def test_an_aborted_job_does_not_run(
        job_stack: Stack, arq_pool: ArqRedis, flaky_highlighter: str,
        http: aiohttp.ClientSession) -> None:
    # arq's Job.abort() first makes a deferred job ready, then marks it aborted; a worker
    # polling in between starts it, and then cancels it on its next poll. The highlighter
    # answering after 3 s keeps such a run from ever finishing, so either way the job
    # does no work: it is refused at its claim, or cancelled while it waits.
    code = f"deferred sleep=3 {uuid.uuid4().hex}"
    async with http.post(f"{job_stack.url}/api/snippets",
                         json={"language": "slow", "code": code,
                               "highlight_in": 30}) as response:
        assert response.status == 201
        created = await response.json()
    assert await job(arq_pool, created["id"]).abort(timeout=10, poll_delay=0.1)
    info = await job(arq_pool, created["id"]).result_info()
    assert info is not None and not info.success
    assert await upstream_counts(http, flaky_highlighter, code) in ({}, {code: 1})
    assert (await wait_for_snippet(http, job_stack.url, created["id"], 0))["status"] == "pending"


async def test_a_running_job_can_be_aborted(
        job_stack: Stack, arq_pool: ArqRedis, flaky_highlighter: str,
        http: aiohttp.ClientSession) -> None:
    code = f"fail=1 {uuid.uuid4().hex}"
    created = await create_via_api(http, job_stack.url, "hang", code)
    await wait_for_calls(http, flaky_highlighter, code, 1)
    started = time.monotonic()
    assert await job(arq_pool, created["id"]).abort(timeout=10, poll_delay=0.1)
    assert time.monotonic() - started < 5  # cancelled, not left to time out
    info = await job(arq_pool, created["id"]).result_info()
    assert info is not None and not info.success
    assert await upstream_counts(http, flaky_highlighter, code) == {code: 1}
