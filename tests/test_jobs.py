"""Jobs take ids, are enqueued once per revision, are safe to run twice, and the database
holds up under concurrent requests and jobs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter

import aiohttp
import pytest
import redis

from snippet_service.config import Config
from snippet_service.queue import HIGHLIGHT_JOB, enqueue_highlight, highlight_job_id, open_pool
from tests.conftest import row_count
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import Stack


async def test_job_payload_is_json_with_the_snippet_id_only(stack: Stack,
                                                            http: aiohttp.ClientSession) -> None:
    stack.worker and stack.worker.stop()
    try:
        created = await create_via_api(http, stack.url, "python", "a = 1")
        client = redis.Redis.from_url(stack.redis_url)
        payload = client.get(f"arq:job:{highlight_job_id(created['id'], 1)}")
        client.close()
        assert payload is not None
        job = json.loads(payload)
        assert job["f"] == HIGHLIGHT_JOB
        assert job["a"] == [created["id"]]
    finally:
        stack.start_worker()
    assert (await wait_for_snippet(http, stack.url, created["id"]))["status"] == "highlighted"


async def test_enqueueing_twice_and_running_twice_leave_one_result(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, stack.url, "python", "b = 2")
    first = await wait_for_snippet(http, stack.url, created["id"])
    assert first["status"] == "highlighted"

    pool = await open_pool(Config.from_env({"REDIS_URL": stack.redis_url}))
    try:
        assert await enqueue_highlight(pool, created["id"], 1) is None  # same job id: refused
        job = await pool.enqueue_job(HIGHLIGHT_JOB, created["id"], _job_id="run-again")
        assert job is not None
        assert await job.result(timeout=10, poll_delay=0.05) == "already highlighted"
    finally:
        await pool.aclose()
    again = await wait_for_snippet(http, stack.url, created["id"])
    assert again["updated_at"] == first["updated_at"]
    assert again["highlighted_code"] == first["highlighted_code"]


@pytest.mark.timeout(240)
async def test_1000_concurrent_creations_all_stored_and_highlighted(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    """All at once (no client-side connection limit) while the worker runs."""
    count = 1000
    rows = row_count(stack.db_path)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def create(n: int) -> tuple[int, str]:
            async with session.post(f"{stack.url}/api/snippets",
                                    json={"language": "python", "code": f"n = {n}"}) as response:
                body = await response.json()
                return response.status, body.get("id", "")

        results = await asyncio.gather(*(create(n) for n in range(count)))
    assert Counter(status for status, _ in results) == {201: count}
    ids = {snippet_id for _, snippet_id in results}
    assert len(ids) == count
    assert row_count(stack.db_path) == rows + count

    def statuses() -> Counter[str]:
        with sqlite3.connect(stack.db_path, timeout=10) as conn:
            return Counter(dict(conn.execute(
                f"SELECT status, count(*) FROM snippets WHERE slug IN ({','.join('?' * count)})"
                " GROUP BY status", sorted(ids)).fetchall()))

    await until(lambda: statuses().get("pending", 0) == 0, 120,
                lambda: f"still pending: {statuses()}", interval=0.2)
    assert statuses() == {"highlighted": count}
    logs = stack.logs()
    assert "database is locked" not in logs
    assert "Traceback" not in stack.web.log()
