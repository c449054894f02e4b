"""``python -m snippet_service.admin``, run as a subprocess against a real Valkey, database,
worker and web app: every command, in text and in JSON, and its exit statuses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from arq.connections import ArqRedis

from snippet_service import control, deadset, stats
from snippet_service.config import Config
from snippet_service.queue import open_pool
from tests.conftest import MakeStack
from tests.helpers import create_via_api, snippet_json, until, wait_for_snippet
from tests.servers import ROOT, Stack, base_env

QUEUE = "snippets:queue"


@pytest.fixture
def admin_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """The flaky highlighter (``bad400`` is refused: the job dies at once)."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter)


@pytest.fixture
async def pool(admin_stack: Stack) -> AsyncIterator[ArqRedis]:
    redis = await open_pool(Config(redis_url=admin_stack.redis_url))
    yield redis
    await redis.aclose()


def admin(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snippet_service.admin", *args], cwd=ROOT,
                          env=dict(env), capture_output=True, text=True, timeout=60)


async def admin_json(stack: Stack, *args: str) -> dict[str, Any]:
    """Run a command with --json; its answer, which must parse."""
    done = await asyncio.to_thread(admin, stack.env, "--json", *args)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def dead_snippet(http: aiohttp.ClientSession, stack: Stack) -> str:
    created = await create_via_api(http, stack.url, "bad400", f"never # {uuid.uuid4().hex}")
    assert (await wait_for_snippet(http, stack.url, created["id"]))["status"] == "failed"
    return str(created["id"])


async def test_stats_match_redis(admin_stack: Stack, pool: ArqRedis,
                                 http: aiohttp.ClientSession) -> None:
    done = await create_via_api(http, admin_stack.url, "python", f"x = 1 # {uuid.uuid4().hex}")
    await wait_for_snippet(http, admin_stack.url, done["id"])
    await dead_snippet(http, admin_stack)
    async with http.post(f"{admin_stack.url}/api/snippets", json={
            "language": "python", "code": f"later # {uuid.uuid4().hex}",
            "highlight_in": 3600}) as response:
        assert response.status == 201

    async def counted() -> bool:  # the worker flushes its counts every second
        return (await stats.totals(pool))[0] >= 2
    await until(counted, 10, "the job counts never reached Redis")

    answer = await admin_json(admin_stack, "stats")
    processed, failed = await stats.totals(pool)
    assert (answer["processed"], answer["failed"]) == (processed, failed)
    assert answer["dead"] == await pool.zcard(deadset.DEAD_SET) >= 1
    assert answer["retrying"] == await pool.zcard(deadset.RETRY_SET)
    queue = answer["queue"]
    assert queue["name"] == QUEUE and queue["size"] == await pool.zcard(QUEUE)
    assert queue["scheduled"] >= 1 and queue["ready"] == queue["size"] - queue["scheduled"]
    assert queue["paused_since"] is None and answer["paused"] == {}
    assert answer["workers"] == 1
    assert answer["breaker"]["state"] == "closed"

    text = await asyncio.to_thread(admin, admin_stack.env, "stats")
    assert text.returncode == 0, text.stderr
    assert f"processed: {processed}" in text.stdout.splitlines()
    assert f"  name: {QUEUE}" in text.stdout.splitlines()


async def test_pause_and_resume(admin_stack: Stack, pool: ArqRedis) -> None:
    answer = await admin_json(admin_stack, "pause")
    assert answer["queue"] == QUEUE and answer["paused"] and not answer["was_paused"]
    assert QUEUE in await control.paused(pool)
    assert (await admin_json(admin_stack, "stats"))["queue"]["paused_since"] == pytest.approx(
        (await control.paused(pool))[QUEUE])
    assert (await admin_json(admin_stack, "pause", QUEUE))["was_paused"]

    text = await asyncio.to_thread(admin, admin_stack.env, "resume", QUEUE)
    assert text.returncode == 0, text.stderr
    assert "was_paused: True" in text.stdout
    assert await control.paused(pool) == {}
    assert not (await admin_json(admin_stack, "resume"))["was_paused"]

    unknown = await asyncio.to_thread(admin, admin_stack.env, "pause", "no-such-queue")
    assert unknown.returncode == 2 and "no queue named 'no-such-queue'" in unknown.stderr
    assert await control.paused(pool) == {}


async def test_retry_dead(admin_stack: Stack, pool: ArqRedis,
                          http: aiohttp.ClientSession) -> None:
    ids = [await dead_snippet(http, admin_stack) for _ in range(2)]
    dead_now = await pool.zcard(deadset.DEAD_SET)
    assert dead_now >= 2
    answer = await admin_json(admin_stack, "retry-dead")
    assert answer == {"retried": dead_now}
    for snippet_id in ids:  # each retried as a new revision (refused again: dead again)
        async def retried(snippet_id: str = snippet_id) -> bool:
            body = await snippet_json(http, admin_stack.url, snippet_id)
            return body["revision"] == 2 and body["status"] == "failed"
        await until(retried, 15, f"snippet {snippet_id} was not retried")
        assert await pool.hexists(deadset.DEAD_DATA, f"highlight:{snippet_id}:2")
        assert not await pool.hexists(deadset.DEAD_DATA, f"highlight:{snippet_id}:1")


async def test_retry_dead_of_one_group(admin_stack: Stack, pool: ArqRedis) -> None:
    records = [deadset.FailedJob(
        job_id=f"group:{cause}:{n}:{uuid.uuid4().hex[:6]}", function="expire_snippet",
        args=[str(10_000_000 + n)], error_class="OSError",
        error=f"no room for {n * 100} bytes" if cause == "a" else f"lost contact after {n} s",
        traceback="", tries=1, retries=0, failed_at=time.time())
        for cause, count in (("a", 3), ("b", 2)) for n in range(count)]
    for record in records:
        await deadset.record_dead(pool, record)
    room, contact = deadset.fingerprint(records[0]), deadset.fingerprint(records[-1])
    assert room != contact and {deadset.fingerprint(r) for r in records} == {room, contact}

    answer = await admin_json(admin_stack, "retry-dead", "--group", room)
    assert answer == {"retried": 3, "group": room}
    assert await deadset.get_group(pool, "dead", room) is None
    left = await deadset.get_group(pool, "dead", contact)
    assert left is not None and left.count == 2
    for record in records:
        assert await pool.hexists(deadset.DEAD_DATA, record.job_id) == (record in records[3:])

    unknown = await asyncio.to_thread(admin, admin_stack.env, "retry-dead", "--group", room)
    assert unknown.returncode == 2 and "no failure group" in unknown.stderr


async def test_purge_dead_older_than(admin_stack: Stack, pool: ArqRedis) -> None:
    now = time.time()
    ages = {"old-a": 8 * 86400, "old-b": 30 * 86400, "young-a": 3600, "young-b": 6 * 86400}
    for name, age in ages.items():
        await deadset.record_dead(pool, deadset.FailedJob(
            job_id=f"purge:{name}", function="expire_snippet", args=["0"], error_class="E",
            error="boom", traceback="", tries=1, retries=0, failed_at=now - age))
    answer = await admin_json(admin_stack, "purge-dead", "--older-than", "7d")
    assert answer["purged"] == 2 and answer["older_than_seconds"] == 7 * 86400
    left = {job_id.decode() for job_id in await pool.zrange(deadset.DEAD_SET, 0, -1)}
    assert {"purge:young-a", "purge:young-b"} <= left
    assert not {"purge:old-a", "purge:old-b"} & left
    assert not await pool.hexists(deadset.DEAD_DATA, "purge:old-a")
    assert answer["dead"] == len(left)


@pytest.mark.parametrize("args", [
    [], ["purge-dead"], ["purge-dead", "--older-than", "seven days"], ["no-such-command"],
    ["retry-dead", "--group"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    done = admin(base_env(REDIS_URL="redis://127.0.0.1:9/0"), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "usage:" in done.stderr


def test_unreachable_redis_exits_1_with_a_message() -> None:
    done = admin(base_env(REDIS_URL="redis://:secret@127.0.0.1:9/0"), "stats")
    assert done.returncode == 1
    assert "failed: Redis at redis://:***@127.0.0.1:9/0" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    bad = admin(base_env(REDIS_URL="http://nowhere"), "stats")
    assert bad.returncode == 1 and "configuration error: REDIS_URL" in bad.stderr


@pytest.mark.timeout(90)
async def test_requeue_pending_brings_back_a_lost_job(
        make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    stack = make_stack()
    assert stack.worker is not None
    stack.worker.stop()
    created = await create_via_api(http, stack.url, "python", f"lost = 1 # {uuid.uuid4().hex}")
    job_id = f"highlight:{created['id']}:1"
    redis = await open_pool(Config(redis_url=stack.redis_url))
    try:
        assert await redis.zscore(QUEUE, job_id) is not None
        await redis.zrem(QUEUE, job_id)  # Redis lost it (a flush, a restart without data)
        await redis.delete(f"arq:job:{job_id}")
        answer = await admin_json(stack, "requeue-pending", "--older-than", "0s")
        assert answer["requeued"] == 1 and answer["older_than_seconds"] == 0
        assert await redis.zscore(QUEUE, job_id) is not None
        assert await redis.exists(f"arq:job:{job_id}")
        assert (await admin_json(stack, "requeue-pending", "--older-than", "0s"))[
            "requeued"] == 0  # its job is there now
    finally:
        await redis.aclose()
    stack.start_worker()
    assert (await wait_for_snippet(http, stack.url, created["id"]))["status"] == "highlighted"
