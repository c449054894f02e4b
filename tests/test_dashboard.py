"""The jobs dashboard with a real Valkey, real workers and a real browser: every page with
seeded data in each state, actions by clicking, and what it refuses."""

from __future__ import annotations

import asyncio
import base64
import re
import time

import aiohttp
import pytest
import redis
from playwright.async_api import Page, expect

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.queue import open_pool
from snippet_service.web.dashboard.access import _is_loopback
from tests.conftest import MakeStack, fresh_redis_url
from tests.helpers import create_via_api, shot, unique, until, wait_for_snippet
from tests.servers import Stack


@pytest.fixture
def dash_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """Retries on Sidekiq's real schedule, so a failed job waits 15–25 s to retry."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter, HIGHLIGHT_RETRIES="3")


@pytest.mark.timeout(180)
async def test_every_page_in_every_state_and_actions_by_clicking(
        dash_stack: Stack, page: Page, http: aiohttp.ClientSession) -> None:
    base = dash_stack.url
    done = await create_via_api(http, base, "python", unique("ok = 1"))
    await wait_for_snippet(http, base, done["id"])
    refused = await create_via_api(http, base, "bad400", unique("never"))
    assert (await wait_for_snippet(http, base, refused["id"]))["status"] == "failed"
    flaky = await create_via_api(http, base, "err500", unique("fail=1"))
    async with http.post(f"{base}/api/snippets", json={
            "language": "python", "code": unique("later"), "highlight_in": 3600}) as response:
        later = await response.json()
    slow = await create_via_api(http, base, "slow", unique("sleep=20"))
    client = redis.Redis.from_url(dash_stack.redis_url)
    await until(lambda: asyncio.to_thread(client.zcard, deadset.RETRY_SET), 15,
                "no job is waiting to retry")

    async def busy_shown() -> bool:  # the running job shows up on the worker's next beat
        async with http.get(f"{base}/jobs/busy") as response:
            return f"highlight:{slow['id']}:1" in await response.text()

    await until(busy_shown, 15, "the running job never showed on /jobs/busy")

    await page.goto(f"{base}/jobs")
    await expect(page.locator("h1")).to_have_text("Dashboard")
    assert int(await page.locator("#processed").inner_text()) >= 3
    assert int(await page.locator("#failed").inner_text()) >= 2
    await expect(page.locator("svg.graph rect")).to_have_count(60)
    await expect(page.locator("table.facts")).to_contain_text("Uptime")
    await shot(page, "dashboard")

    await page.click("text=Busy")
    await expect(page.locator("main")).to_contain_text(f"highlight:{slow['id']}:1")
    await expect(page.locator("main")).to_contain_text("max jobs 200")
    await shot(page, "busy")

    await page.click("text=Queues")
    await expect(page.locator("td.size")).not_to_have_text("0")
    await shot(page, "queues")

    await page.click("text=Scheduled")
    row = page.locator("tr", has_text=f"highlight:{later['id']}:1")
    await expect(row).to_contain_text(re.compile(r"in (60 min|1 h)"))
    await shot(page, "scheduled")

    await page.click("text=Retries")
    row = page.locator("tr", has_text=f"highlight:{flaky['id']}:1")
    await expect(row).to_contain_text("1 of 4")
    await expect(row).to_contain_text("HighlighterUnavailable: highlighter answered 500")
    await shot(page, "retries")
    await row.locator("button", has_text="Kill").click()  # retrying → dead
    await expect(page.locator("main")).not_to_contain_text(f"highlight:{flaky['id']}:1")

    await page.click("text=Dead")
    row = page.locator("tr", has_text=f"highlight:{flaky['id']}:1")
    await expect(row).to_contain_text("HighlighterUnavailable")
    await expect(page.locator("tr", has_text=f"highlight:{refused['id']}:1")).to_contain_text(
        "HighlighterRejected: bad400 is never accepted")
    assert (await wait_for_snippet(http, base, flaky["id"], 0))["status"] == "failed"
    await shot(page, "dead")
    await row.locator("button", has_text="Retry").click()  # a new revision, upstream now ok
    body = await wait_for_snippet(http, base, flaky["id"], timeout=20)
    assert body["status"] == "highlighted" and body["revision"] == 2

    await page.goto(f"{base}/jobs/dead?function=highlight_snippet&q=bad400")
    await expect(page.locator("tbody tr")).to_have_count(1)

    await page.goto(f"{base}/snippets/{refused['id']}")
    await page.click("text=job")
    await expect(page.locator("h1")).to_contain_text("dead")
    await expect(page.locator("pre.traceback")).to_contain_text("Traceback")
    await shot(page, "job")

    await page.goto(f"{base}/jobs/scheduled")
    row = page.locator("tr", has_text=f"highlight:{later['id']}:1")
    await row.locator("button", has_text="Run now").click()
    body = await wait_for_snippet(http, base, later["id"], timeout=10)
    assert body["status"] == "highlighted"
    client.close()


async def test_live_refresh_updates_and_can_be_paused(dash_stack: Stack, page: Page,
                                                      http: aiohttp.ClientSession) -> None:
    await page.goto(f"{dash_stack.url}/jobs")
    before = int(await page.locator("#processed").inner_text())
    await create_via_api(http, dash_stack.url, "python", unique("tick = 1"))
    await expect(page.locator("#processed")).not_to_have_text(str(before), timeout=10_000)
    await page.click("#live-toggle")
    await expect(page.locator("#live-toggle")).to_have_text("Resume live refresh")
    paused_at = await page.locator("#processed").inner_text()
    tock = await create_via_api(http, dash_stack.url, "python", unique("tock = 1"))
    await wait_for_snippet(http, dash_stack.url, tock["id"])  # the count has changed
    # The wait is what is tested: longer than the page's 3 s refresh, nothing changes.
    await asyncio.sleep(4)
    assert await page.locator("#processed").inner_text() == paused_at
    await page.click("#live-toggle")


async def test_actions_without_the_token_or_cross_site_are_refused(
        dash_stack: Stack, http: aiohttp.ClientSession) -> None:
    pool = await open_pool(Config.from_env({"REDIS_URL": dash_stack.redis_url}))
    try:
        await deadset.record_dead(pool, deadset.FailedJob(
            "planted", "highlight_snippet", [1], "E", "x", "", 1, 0, time.time()))
        before = await deadset.dead_count(pool)
        async with http.post(f"{dash_stack.url}/jobs/dead/delete_all",
                             data={"job_id": "planted"}) as response:
            assert response.status == 403
        async with http.post(f"{dash_stack.url}/jobs/dead/delete_all", data={},
                             headers={"Sec-Fetch-Site": "cross-site"}) as response:
            assert response.status == 403
        assert await deadset.dead_count(pool) == before
    finally:
        await pool.aclose()


async def test_job_arguments_and_errors_are_escaped(dash_stack: Stack, page: Page) -> None:
    pool = await open_pool(Config.from_env({"REDIS_URL": dash_stack.redis_url}))
    try:
        await deadset.record_dead(pool, deadset.FailedJob(
            "hostile", "highlight_snippet", ["<img src=x onerror=alert(1)>"], "E",
            "<script>window.pwned = 1</script>", "<b>tb</b>", 1, 0, time.time()))
    finally:
        await pool.aclose()
    await page.goto(f"{dash_stack.url}/jobs/dead")
    await expect(page.locator("tr", has_text="hostile")).to_contain_text(
        "<script>window.pwned = 1</script>")
    assert await page.evaluate("window.pwned === undefined")
    assert await page.locator("img").count() == 0
    response = await page.goto(f"{dash_stack.url}/jobs/job/hostile")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await expect(page.locator("pre.traceback")).to_have_text("<b>tb</b>")


async def test_paging_a_dead_set_of_100000(valkey: str, make_stack: MakeStack,
                                           http: aiohttp.ClientSession) -> None:
    redis_url = fresh_redis_url(valkey)
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    for start in range(0, 100_000, 10_000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, start + 10_000):
            job = deadset.FailedJob(f"bulk-{n}", "highlight_snippet", [n], "E", f"e{n}", "",
                                    1, 0, now - 100_000 + n)
            pipe.zadd(deadset.DEAD_SET, {job.job_id: job.failed_at})
            pipe.hset(deadset.DEAD_DATA, job.job_id, job.dumps())
        pipe.execute()
    client.close()
    stack = make_stack(redis_url=redis_url)
    async with http.get(f"{stack.url}/jobs/dead") as response:
        first = await response.text()
    assert "Dead <small>100000</small>" in first
    assert "bulk-99999" in first and "page 1 of 4000" in first
    async with http.get(f"{stack.url}/jobs/dead?page=4000") as response:
        last = await response.text()
    assert "bulk-0<" in last or "bulk-0\"" in last


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_loopback_addresses() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1")
    assert not _is_loopback("10.1.2.3") and not _is_loopback(None)


async def test_password_rules(make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    stack = make_stack(DASHBOARD_PASSWORD="s3cret")
    async with http.get(f"{stack.url}/jobs") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    async with http.get(f"{stack.url}/jobs", headers=basic("ops", "wrong")) as response:
        assert response.status == 401
    async with http.get(f"{stack.url}/jobs/dead", headers=basic("ops", "s3cret")) as response:
        assert response.status == 200
    async with http.get(f"{stack.url}/") as response:
        assert response.status == 200  # the rest of the site is open


async def test_proxied_requests_are_not_taken_for_local_ones(
        dash_stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{dash_stack.url}/jobs") as response:
        assert response.status == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        async with http.get(f"{dash_stack.url}/jobs",
                            headers={header: "203.0.113.9"}) as response:
            assert response.status == 403, header
            assert "DASHBOARD_PASSWORD" in await response.text()
