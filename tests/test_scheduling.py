"""Deferred highlights (`perform_in`), expiring snippets, and re-highlighting, on each
backend."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
import redis

from snippet_service import db
from snippet_service.config import Config
from snippet_service.jobops import delete_job
from snippet_service.queue import open_pool
from tests.databases import stored_time
from tests.helpers import HTML, create_via_api, owner, until, wait_for_snippet
from tests.servers import Stack

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL


async def test_deferred_highlight_runs_no_earlier_than_asked(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "deferred = True", "highlight_in": 2}) as response:
        assert response.status == 201
        created = await response.json()
    asked = datetime.fromisoformat(created["highlight_at"])
    waited = (asked - datetime.fromisoformat(created["created_at"])).total_seconds()
    assert waited == pytest.approx(2, abs=0.1)
    await asyncio.sleep(1)  # what is tested: a second later, it is still waiting its turn
    assert (await wait_for_snippet(http, stack.url, created["id"], 0))["status"] == "pending"
    body = await wait_for_snippet(http, stack.url, created["id"], timeout=10)
    assert body["status"] == "highlighted"
    assert datetime.fromisoformat(body["updated_at"]) >= asked


async def test_bad_highlight_in_is_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    """One bad value end to end; the table of values is in test_options.py."""
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "x", "highlight_in": "soon"}) as response:
        assert response.status == 400
        assert "highlight_in" in (await response.json())["fields"]


async def test_expiring_snippet_is_deleted_by_its_deferred_job(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "bye = 1", "expires_in": "10m"}) as response:
        created = await response.json()
    expires = datetime.fromisoformat(created["expires_at"]).timestamp()
    assert expires - time.time() == pytest.approx(600, abs=5)

    client = redis.Redis.from_url(stack.redis_url)
    try:
        job_id = f"expire:{created['id']}"
        score = client.zscore("snippets:queue", job_id)
        assert score is not None and score / 1000 == pytest.approx(expires, abs=1)
        client.zadd("snippets:queue", {job_id: int(time.time() * 1000)})  # run it now
    finally:
        client.close()
    def deleted() -> bool:
        return not stack.database.query("SELECT 1 FROM snippets WHERE slug = ?",
                                        (created["id"],))

    await until(deleted, 10, "the expiry job did not delete the snippet")
    async with http.get(f"{stack.url}/snippets/{created['id']}") as response:
        assert response.status == 404


async def test_expired_snippet_is_404_even_if_its_job_was_lost(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, stack.url, "python", "old = 1")
    past = stored_time(stack.database, datetime(2000, 1, 1, tzinfo=UTC))
    stack.database.query("UPDATE snippets SET expires_at = ? WHERE slug = ?",
                         (past, created["id"]))
    for path in (f"/snippets/{created['id']}", f"/snippets/{created['id']}/raw",
                 f"/api/snippets/{created['id']}"):
        async with http.get(stack.url + path) as response:
            assert response.status == 404, path


async def test_form_offers_expiry_and_rejects_unknown_choices(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.url}/", headers=HTML) as response:
        page = await response.text()
    for label in ("Never", "10 minutes", "1 hour", "1 day", "1 week", "1 month", "1 year"):
        assert f">{label}</option>" in page
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "x", "expires_in": "2y"}) as response:
        assert response.status == 400
        assert "Expiry must be one of" in (await response.json())["error"]


async def test_rehighlight_in_another_language_uses_a_new_job(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, stack.url, "python", "def f(): pass")
    first = await wait_for_snippet(http, stack.url, created["id"])
    assert '<span class="k">def</span>' in first["highlighted_code"]

    async with http.post(f"{stack.url}/api/snippets/{created['id']}/highlight",
                         json={"language": "text"}) as response:
        assert response.status == 403  # only its owner may
    async with http.post(f"{stack.url}/api/snippets/{created['id']}/highlight",
                         json={"language": "text"}, headers=owner(created)) as response:
        assert response.status == 202
        second = await response.json()
    assert (second["revision"], second["language"], second["status"]) == (2, "text", "pending")
    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "highlighted"
    assert '<span class="k">' not in body["highlighted_code"]
    assert "def f(): pass" in body["highlighted_code"]

    async with http.post(f"{stack.url}/api/snippets/{created['id']}/highlight",
                         json={"language": "nope"}, headers=owner(created)) as response:
        assert response.status == 400
    async with http.post(f"{stack.url}/api/snippets/999999/highlight") as response:
        assert response.status == 404


async def test_rehighlight_refuses_bad_bodies(stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, stack.url, "python", "z = 0")
    url = f"{stack.url}/api/snippets/{created['id']}/highlight"
    async with http.post(url, json={"language": []}, headers=owner(created)) as response:
        assert response.status == 400
    async with http.post(url, data=b"", headers={
            "Content-Type": "application/x-www-form-urlencoded", **owner(created)}) as response:
        assert response.status == 415  # what a cross-site form would send


async def test_deleting_a_deferred_highlight_fails_its_snippet(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "never = 1", "highlight_in": 3600}) as response:
        created = await response.json()
    config = Config.from_env({**stack.env, "DB_POOL_SIZE": "1"})
    pool = await open_pool(config)
    database = db.connect(config)
    await database.open()
    try:
        job_id = f"highlight:{created['id']}:1"
        assert await delete_job(pool, database, config.queue_name, job_id)
    finally:
        await database.close()
        await pool.aclose()
    body = await wait_for_snippet(http, stack.url, created["id"], 0)
    assert body["status"] == "failed"  # so the reconciler leaves it alone
    assert body["error"] == "the highlight job was deleted from the dashboard"
