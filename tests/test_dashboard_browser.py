"""Every dashboard page in a real browser with data in it, against a real worker, Valkey
and web app: a screenshot of each under var/screenshots/, Pause with its banner on every
page and Resume, Stop and Re-queue from a running job's page, and the breaker opened by
hand and closed by its probe."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from arq.connections import ArqRedis
from playwright.async_api import Page, expect

from snippet_service import control, deadset
from snippet_service.config import Config
from snippet_service.queue import open_pool
from tests.conftest import MakeStack
from tests.helpers import create_via_api, shot, snippet_json, unique, until, wait_for_snippet
from tests.servers import Stack

QUEUE = "snippets:queue"
PAGES = [  # tab label, route path, heading
    ("Dashboard", "/jobs", "Dashboard"), ("Busy", "/jobs/busy", "Busy"),
    ("Queues", "/jobs/queues", "Queues"), ("Scheduled", "/jobs/scheduled", "Scheduled"),
    ("Retries", "/jobs/retries", "Retries"), ("Dead", "/jobs/dead", "Dead"),
    ("Search", "/jobs/search", "Search"), ("History", "/jobs/history", "History"),
    ("Finished", "/jobs/finished", "Finished"), ("Breaker", "/jobs/breaker", "Breaker"),
]


@pytest.fixture
def ui_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """Retries on Sidekiq's real schedule (a failed job waits 15–25 s to retry), and a job
    timeout long enough for a hanging highlight to be stopped by hand."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter, HIGHLIGHT_RETRIES="3",
                      JOB_TIMEOUT="120")


@pytest.fixture
async def pool(ui_stack: Stack) -> AsyncIterator[ArqRedis]:
    redis = await open_pool(Config(redis_url=ui_stack.redis_url))
    yield redis
    await redis.aclose()


async def seed(http: aiohttp.ClientSession, stack: Stack, pool: ArqRedis) -> dict[str, str]:
    """A snippet in every state: highlighted, dead (refused), retrying, scheduled, running
    (a highlight that hangs once), and dead jobs of two more causes for the groups."""
    base = stack.url
    ids = {}
    ids["done"] = (await create_via_api(http, base, "python", unique("ok = 1")))["id"]
    await wait_for_snippet(http, base, ids["done"])
    ids["refused"] = (await create_via_api(http, base, "bad400", unique("never")))["id"]
    assert (await wait_for_snippet(http, base, ids["refused"]))["status"] == "failed"
    ids["flaky"] = (await create_via_api(http, base, "err500", unique("fail=1")))["id"]
    async with http.post(f"{base}/api/snippets", json={
            "language": "python", "code": unique("later"), "highlight_in": 3600}) as response:
        ids["later"] = (await response.json())["id"]
    ids["hang"] = (await create_via_api(http, base, "hang", unique("fail=1")))["id"]
    now = time.time()
    for n in range(12):  # two more causes, as the retry policy records them
        cause = n % 2
        await deadset.record_dead(pool, deadset.FailedJob(
            job_id=f"highlight:{900_000 + n}:1", function="highlight_snippet",
            args=[str(900_000 + n)], error_class="HighlighterUnavailable",
            error=(f"highlighter answered 502 after {n * 7} ms" if cause
                   else f"Cannot connect to host 10.0.0.{n}:8081 [Connection refused]"),
            traceback="", tries=4, retries=3, failed_at=now - 60 * n,
            extra={"language": ["python", "rust", "go"][n % 3]}))
    await until(lambda: pool.zcard(deadset.RETRY_SET), 15, "no job is waiting to retry")
    await until(lambda: pool.exists(f"arq:in-progress:highlight:{ids['hang']}:1"), 15,
                "the hanging job never started")
    return ids


@pytest.mark.timeout(240)
async def test_every_page_pause_and_stop_in_a_browser(
        ui_stack: Stack, pool: ArqRedis, page: Page, http: aiohttp.ClientSession) -> None:
    base = ui_stack.url
    ids = await seed(http, ui_stack, pool)
    hang_job, flaky_job = f"highlight:{ids['hang']}:1", f"highlight:{ids['flaky']}:1"

    async def busy_shown() -> bool:  # the running job shows on the worker's next beat
        async with http.get(f"{base}/jobs/busy") as response:
            return hang_job in await response.text()
    await until(busy_shown, 15, "the running job never showed on /jobs/busy")

    # Every tab, reached by clicking, with its data.
    await page.goto(f"{base}/jobs")
    for label, path, heading in PAGES:
        await page.locator("nav.tabs").get_by_role("link", name=label, exact=True).click()
        await expect(page).to_have_url(f"{base}{path}")
        await expect(page.locator("h1")).to_contain_text(heading)
        await expect(page.locator(".control-banner")).to_have_count(0)
        if label == "Busy":
            await expect(page.locator("main")).to_contain_text(hang_job)
        elif label == "Scheduled":
            await expect(page.locator("main")).to_contain_text(f"highlight:{ids['later']}:1")
        elif label == "Retries":
            await expect(page.locator("main")).to_contain_text(flaky_job)
        elif label == "Dead":
            await expect(page.locator("main")).to_contain_text(f"highlight:{ids['refused']}:1")
        elif label == "Finished":
            await expect(page.locator("main")).to_contain_text(f"highlight:{ids['done']}:1")
        elif label == "Breaker":
            await expect(page.locator("main")).to_contain_text("closed")
        await shot(page, label.lower())

    # The failure groups of Retries and Dead, and one group's page.
    await page.goto(f"{base}/jobs/retries")
    await page.get_by_role("link", name="Group by failure").click()
    await expect(page.locator("table.groups tbody tr")).to_have_count(1)
    await shot(page, "retries-groups")
    await page.goto(f"{base}/jobs/dead")
    await page.get_by_role("link", name="Group by failure").click()
    rows = page.locator("table.groups tbody tr")
    await expect(rows).to_have_count(3)  # refused, connection refused, 502
    await expect(page.locator("table.groups")).to_contain_text("<address>")
    await shot(page, "dead-groups")
    await rows.filter(has_text="answered <n>").locator("td.count a").click()
    await expect(page.locator("h1")).to_contain_text("6 jobs")
    await shot(page, "dead-group")

    # Search by snippet id, and the history's other spans.
    await page.goto(f"{base}/jobs/search")
    await page.get_by_label("search", exact=True).fill(str(ids["flaky"]))
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("table.results")).to_contain_text(flaky_job)
    await shot(page, "search")
    for span in ("1d", "7d"):
        await page.goto(f"{base}/jobs/history?span={span}")
        await expect(page.locator("svg.graph")).to_be_visible()
        await shot(page, f"history-{span}")

    # Pause from the Queues page: a banner on every page, then Resume.
    await page.goto(f"{base}/jobs/queues")
    await page.get_by_role("button", name="Pause", exact=True).click()
    await expect(page.locator(".control-banner")).to_contain_text("paused")
    assert QUEUE in await control.paused(pool)
    await shot(page, "queues-paused")
    for _, path, _ in PAGES:
        await page.goto(f"{base}{path}")
        await expect(page.locator(".control-banner")).to_contain_text("paused")
    await page.goto(f"{base}/jobs/queues")
    await page.get_by_role("button", name="Resume", exact=True).click()
    await expect(page.locator(".control-banner")).to_have_count(0)
    assert await control.paused(pool) == {}

    # Stop the hanging job from its page (reached from its snippet's page), then re-queue.
    await page.goto(f"{base}/snippets/{ids['hang']}")
    await page.click("text=job")
    await expect(page.locator("h1")).to_contain_text("running")
    await shot(page, "job")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator("h1")).to_contain_text("aborted")
    await expect(page.locator("p.note")).to_contain_text("Stopped: the job was aborted.")
    assert (await snippet_json(http, base, ids["hang"]))["status"] == "pending"
    await shot(page, "job-stopped")
    await page.get_by_role("button", name="Re-queue").click()
    await expect(page.locator("p.note")).to_contain_text("Re-queued")
    body = await wait_for_snippet(http, base, ids["hang"], timeout=20)
    assert body["status"] == "highlighted" and body["revision"] == 1
    await page.reload()
    await expect(page.locator("h1")).to_contain_text("complete")

    # A dead job's page, for the record.
    await page.goto(f"{base}/jobs/job/highlight:{ids['refused']}:1")
    await expect(page.locator("pre.traceback")).to_contain_text("Traceback")
    await shot(page, "job-dead")

    # Open the breaker by hand: the banner shows, and a probe of the (healthy) highlighter
    # closes it again; the Breaker page then has a history.
    await page.goto(f"{base}/jobs/breaker")
    await page.get_by_role("button", name="Open now (hold highlight jobs)").click()
    await expect(page.locator(".control-banner .breaker-banner")).to_be_visible()
    await shot(page, "breaker-open")

    async def closed_by_probe() -> bool:
        return not (await control.breaker_state(pool)).open
    await until(closed_by_probe, 30, "no probe closed the breaker")
    await page.goto(f"{base}/jobs/breaker")
    await expect(page.locator("table.breaker-history tr.event-closed")).to_have_count(1)
    await expect(page.locator("table.breaker-history tr.event-opened")).to_have_count(1)
    await expect(page.locator(".control-banner")).to_have_count(0)
    await shot(page, "breaker")
