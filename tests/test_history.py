"""Job history: per-minute processed and failed counts with per-function run times, kept at
three resolutions for 7 days and graphed for 1 hour, 1 day and 7 days; and the finished-jobs
list, held for FINISHED_JOBS_WINDOW and trimmed by the workers' finish batches. Against a
real Valkey and real stacks."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser
from redis.asyncio import Redis

from snippet_service import stats
from snippet_service.queue import highlight_job_id
from tests.conftest import MakeStack, fresh_redis_url
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import ROOT, Stack

SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
async def redis_db(valkey: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(fresh_redis_url(valkey))
    yield client
    await client.aclose()


@pytest.fixture
def history_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    return make_stack(shared=True, highlighter_url=flaky_highlighter, RETRY_DELAY_SCALE="0.01")


async def test_counts_flush_into_every_span_with_percentiles(redis_db: Redis) -> None:
    counter = stats.JobCounter()
    for _ in range(100):
        counter.count("fast", 0.03, stats.SUCCESS)
    for _ in range(10):
        counter.count("fast", 2.0, stats.DEAD)
    for _ in range(5):
        counter.count("other", 0.2, stats.RETRY)
    await counter.flush(redis_db)
    await counter.flush(redis_db)  # nothing new: writes nothing
    for span, bars in (("1h", 60), ("1d", 144), ("7d", 168)):
        points = await stats.history(redis_db, span)
        assert len(points) == bars
        assert [p.at for p in points] == sorted(p.at for p in points)
        assert sum(p.processed for p in points) == 115
        assert sum(p.failed for p in points) == 15
    assert await stats.totals(redis_db) == (115, 15)
    p50, p95 = await stats.durations(redis_db, "fast", "1h")
    assert p50 is not None and 0.025 < p50 <= 0.05
    assert p95 is not None and 1.0 < p95 <= 2.5
    assert await stats.durations(redis_db, "fast", "7d") == (p50, p95)
    assert await stats.durations(redis_db, "nothing", "1d") == (None, None)
    table = {entry.function: entry for entry in await stats.duration_table(redis_db, "1d")}
    assert table["fast"].outcomes == {"success": 100, "dead": 10}
    assert table["other"].outcomes == {"retry": 5} and table["other"].runs == 5
    assert table["fast"].mean == pytest.approx((100 * 0.03 + 10 * 2.0) / 110, rel=0.01)
    totals = {entry.function: entry for entry in await stats.job_totals(redis_db)}
    assert totals["fast"].buckets == table["fast"].buckets
    # Bounded: every history hash expires 7 days (and one period) after it was written.
    keys = [key async for key in redis_db.scan_iter(match=stats.HISTORY_PREFIX + "*")]
    assert 3 <= len(keys) <= 6  # one per resolution (two if a period rolled over)
    for key in keys:
        resolution = int(key.decode().removeprefix(stats.HISTORY_PREFIX).split(":")[0])
        ttl = await redis_db.ttl(key)
        assert stats.HISTORY_SECONDS < ttl <= stats.HISTORY_SECONDS + resolution


def test_quantile_of_buckets() -> None:
    buckets = [0] * (len(stats.DURATION_BUCKETS) + 1)
    assert stats.quantile(buckets, 0.5) is None
    buckets[stats.DURATION_BUCKETS.index(0.1)] = 10  # 10 runs in (0.05, 0.1]
    assert stats.quantile(buckets, 0.5) == pytest.approx(0.075)
    buckets[-1] = 90  # beyond the last bound: reported as that bound
    assert stats.quantile(buckets, 0.95) == stats.DURATION_BUCKETS[-1]


async def _page(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.text()


def _card(page: str, name: str) -> int:
    match = re.search(rf'id="span-{name}">(\d+)<', page)
    assert match is not None, page
    return int(match.group(1))


@pytest.mark.timeout(90)
async def test_history_and_finished_pages(history_stack: Stack,
                                          http: aiohttp.ClientSession) -> None:
    base, tag = history_stack.url, uuid.uuid4().hex[:8]
    good = [await create_via_api(http, base, "slow", f"sleep=0.05 # {tag} {n}")
            for n in range(6)]
    dead = await create_via_api(http, base, "bad400", f"refused {tag}")
    retried = await create_via_api(http, base, "err500", f"fail=1 # {tag}")
    for body in [*good, dead, retried]:
        await wait_for_snippet(http, base, body["id"], 30)

    async def settled() -> str | None:  # the worker flushes its counts once a second
        page = await _page(http, f"{base}/jobs/history?span=1h")
        return page if _card(page, "processed") == 9 else None

    page = await until(settled, 15, "the history never showed 9 runs")
    assert page is not None
    assert _card(page, "failed") == 2  # the dead run and the run that retried
    assert "<svg" in page and page.count('class="failed"') >= 1
    row = re.search(r"<tr><td>highlight_snippet</td><td>(\d+)</td>\s*<td>([^<]*)</td>", page)
    assert row is not None, page
    assert row.group(1) == "9" and row.group(2) == "dead 1, retry 1, success 7"
    for span in ("1d", "7d", "nonsense"):
        other = await _page(http, f"{base}/jobs/history?span={span}")
        assert _card(other, "processed") == 9 and _card(other, "failed") == 2

    page = await _page(http, f"{base}/jobs/finished")
    rows = re.findall(r'<code>(highlight:[^<]+)</code></a></td><td>([^<]+)</td>\s*'
                      r'<td><span class="state outcome-(\w+)">', page)
    outcomes = {job_id: outcome for job_id, _, outcome in rows}
    expected = {highlight_job_id(body["id"], body["revision"]): "success" for body in good}
    expected[highlight_job_id(dead["id"], dead["revision"])] = "dead"
    expected[highlight_job_id(retried["id"], retried["revision"])] = "success"
    assert outcomes == expected  # a retry is not a finish: each job is listed once
    times = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC</td>", page)
    assert times == sorted(times, reverse=True)  # newest first


async def test_history_pages_in_a_browser(history_stack: Stack, browser: Browser,
                                          http: aiohttp.ClientSession) -> None:
    """The graphs and the list render without script errors; screenshots for the README."""
    body = await create_via_api(http, history_stack.url, "python", f"z = {uuid.uuid4().hex}")
    await wait_for_snippet(http, history_stack.url, body["id"])
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, path in (("history", "/jobs/history?span=1h"),
                       ("history-1d", "/jobs/history?span=1d"),
                       ("history-7d", "/jobs/history?span=7d"), ("finished", "/jobs/finished")):
        response = await page.goto(history_stack.url + path)
        assert response is not None and response.status == 200
        await page.wait_for_selector("#finished" if name == "finished" else "svg.history rect")
        await page.screenshot(path=str(SCREENSHOTS / f"jobs-{name}.png"), full_page=True)
    assert errors == []


@pytest.mark.timeout(90)
async def test_finished_list_is_trimmed_to_its_window_and_size(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    stack = make_stack(highlighter_url=flaky_highlighter, FINISHED_JOBS_WINDOW="3",
                       FINISHED_JOBS_MAX="4")
    base = stack.url
    first = [await create_via_api(http, base, "python", f"x = {n}") for n in range(6)]
    for body in first:
        await wait_for_snippet(http, base, body["id"])
    first_ids = {highlight_job_id(body["id"], body["revision"]) for body in first}
    redis = Redis.from_url(stack.redis_url)
    try:
        members = [m.decode() for m in await redis.zrange(stats.FINISHED, 0, -1)]
        assert len(members) <= 4  # FINISHED_JOBS_MAX, whatever else finished meanwhile

        async def aged_out() -> bool:
            page = await _page(http, f"{base}/jobs/finished")
            return not any(job_id in page for job_id in first_ids)

        await until(aged_out, 10, "jobs older than the window are still listed")
        last = await create_via_api(http, base, "python", "y = 1")
        await wait_for_snippet(http, base, last["id"])
        last_id = highlight_job_id(last["id"], last["revision"])

        async def trimmed() -> bool:  # the next finish batch dropped the old entries
            members = [m.decode().split("|")[0] for m in await redis.zrange(stats.FINISHED, 0, -1)]
            return last_id in members and not first_ids & set(members)

        await until(trimmed, 10, "the finish batch did not trim the finished list")
        assert last_id in await _page(http, f"{base}/jobs/finished")
    finally:
        await redis.aclose()
