"""The highlighter's circuit breaker against real servers: an outage opens it, the pending
snippets are held instead of burning through their retries, probes find the highlighter
back, and recovery highlights everything and re-queues, once, what died just before.

The outage comes from tests/flaky_highlighter.py (``POST /outage?on=1&mode=reset``: every
highlight request and ``GET /languages`` has its connection closed), which counts the calls
it got; the test compares them with what the retry schedule alone would have made.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from arq.connections import ArqRedis
from playwright.async_api import Browser, expect

from snippet_service import control, deadset
from snippet_service.config import Config
from snippet_service.queue import highlight_job_id, open_pool
from tests.conftest import MakeStack, fresh_redis_url, run_upstream
from tests.databases import statuses
from tests.helpers import HTML, create_via_api, until, wait_for_snippet
from tests.servers import ROOT, Stack

RETRIES = 2
SCALE = 0.01
FAILURES = 5
SNIPPETS = 30
DELAYED = "Highlighting is delayed: the highlighter is unreachable"
FIGURES = ROOT / "var" / "figures" / "breaker-outage.txt"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A flaky highlighter of this module's own: its outage touches no other test."""
    yield from run_upstream("flaky_highlighter", tmp_path_factory)


@pytest.fixture
async def pool(make_stack: MakeStack, upstream: str) -> AsyncIterator[tuple[Stack, ArqRedis]]:
    stack = make_stack(highlighter_url=upstream, HIGHLIGHT_RETRIES=str(RETRIES),
                       RETRY_DELAY_SCALE=str(SCALE), BREAKER_FAILURES=str(FAILURES))
    redis = await open_pool(Config.from_env({"REDIS_URL": stack.redis_url}))
    yield stack, redis
    await redis.aclose()


async def outage(http: aiohttp.ClientSession, upstream: str,
                 on: bool | None = None) -> dict[str, float]:
    if on is None:
        async with http.get(upstream + "outage") as response:
            body: dict[str, float] = await response.json()
        return body
    async with http.post(upstream + "outage", params={"on": "1" if on else "0",
                                                      "mode": "reset"}) as response:
        body = await response.json()
    return body


def schedule_calls(created: list[float], ends: float) -> int:
    """Highlighter calls the retry schedule alone makes for snippets created at
    ``created`` when every call fails until ``ends``: a try at creation, then one after
    each retry delay (Sidekiq's n⁴ + 15 + mean jitter 5·(n+1), × SCALE) while retries last."""
    calls = 0
    for at in created:
        for retry in range(RETRIES + 1):
            if at >= ends:
                break
            calls += 1
            at += (retry**4 + 15 + 5 * (retry + 1)) * SCALE
    return calls


async def first_event(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """The first event a snippet's live-update stream sends (its name and data)."""
    async with http.get(url) as response:
        assert response.status == 200
        event = ""
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                return event, line[6:]
    raise AssertionError("the stream ended without an event")


async def page_text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, headers=HTML) as response:
        assert response.status == 200
        return await response.text()


async def test_an_outage_opens_the_breaker_and_recovery_resumes(
        pool: tuple[Stack, ArqRedis], upstream: str, http: aiohttp.ClientSession,
        browser: Browser) -> None:
    stack, redis = pool
    tag = uuid.uuid4().hex[:8]

    # Before the outage: a snippet whose highlight fails three times (500) goes dead, and
    # a good one resets the count of consecutive failures.
    doomed = (await create_via_api(http, stack.url, "err500", f"{tag} fail={RETRIES + 1}"))["id"]
    assert (await wait_for_snippet(http, stack.url, doomed))["status"] == "failed"
    doomed_job = highlight_job_id(doomed, 1)
    assert await deadset.get_dead(redis, doomed_job) is not None
    warm = (await create_via_api(http, stack.url, "python", f"{tag} warm"))["id"]
    assert (await wait_for_snippet(http, stack.url, warm))["status"] == "highlighted"
    assert not (await control.breaker_state(redis)).open

    # The outage: snippets keep coming.
    await outage(http, upstream, on=True)
    began = time.time()
    created, ids = [], []
    for n in range(SNIPPETS):
        created.append(time.time())
        ids.append((await create_via_api(http, stack.url, "python", f"{tag}-{n}"))["id"])
    breaker = await until(lambda: _opened(redis), 10, "the breaker never opened")
    assert f"{FAILURES} consecutive transient failures" in breaker.reason
    # The pending pages say why; a stream opened now says so too (live, no reload).
    assert DELAYED in await page_text(http, f"{stack.url}/snippets/{ids[-1]}")
    assert DELAYED in await page_text(http, f"{stack.url}/snippets/{ids[-1]}/code")
    assert await first_event(http, f"{stack.url}/snippets/{ids[-1]}/events") == \
        ("delayed", '{"delayed": true}')
    page = await browser.new_page()
    await page.goto(f"{stack.url}/snippets/{ids[0]}")
    await expect(page.locator(".status-delayed")).to_contain_text(DELAYED)
    # The dashboard: the Breaker tab, and the banner on another page.
    breaker_page = await page_text(http, f"{stack.url}/jobs/breaker")
    assert "breaker-open" in breaker_page and "consecutive transient failures" in breaker_page
    assert "circuit breaker is open" in await page_text(http, f"{stack.url}/jobs/dead")
    health = await (await http.get(f"{stack.url}/healthz")).json()
    assert health["breaker"]["state"] == "open" and health["status"] == "ok"
    at_open = await outage(http, upstream)  # the calls in flight as it opened have failed

    # Let two probes fail (about 3 s of outage), no snippet failing meanwhile.
    async def probed_twice() -> bool:
        assert statuses(stack.database).get("failed", 0) == 1  # the doomed one only
        assert (await control.breaker_state(redis)).open
        # A probe counts once its failure is recorded, not when a worker claims it (a
        # claimed probe could still meet the highlighter back up).
        history = await control.breaker_history(redis, 100)
        return [event.kind for event in history].count("probe") >= 2

    await until(probed_twice, 15, "the probes did not run", interval=0.1)
    ended = time.time()
    during = await outage(http, upstream, on=False)
    assert statuses(stack.database) == {"pending": SNIPPETS, "highlighted": 1, "failed": 1}

    # Recovery: the next probe closes it; everything is highlighted, the doomed snippet too
    # (re-queued once, as a new revision).
    await until(lambda: _closed(redis), 15, "the breaker never closed")
    for ident in ids:
        assert (await wait_for_snippet(http, stack.url, ident, timeout=15))["status"] == \
            "highlighted"
    assert (await wait_for_snippet(http, stack.url, doomed))["status"] == "highlighted"
    assert await deadset.get_dead(redis, doomed_job) is None
    assert await redis.zcard(control.OUTAGE_DEAD) == 0
    history = await control.breaker_history(redis, 100)
    kinds = [event.kind for event in history]
    assert kinds.count("opened") == 1 and kinds.count("closed") == 1
    assert kinds.count("requeued") == 1 and history[kinds.index("requeued")].extra["count"] == 1
    assert kinds.count("probe") >= 2
    await expect(page.locator(".status-highlighted")).to_be_visible(timeout=10_000)
    await expect(page.locator(".status-delayed")).to_have_count(0)
    await page.close()
    assert DELAYED not in await page_text(http, f"{stack.url}/snippets/{ids[-1]}")
    assert "control-banner" not in await page_text(http, f"{stack.url}/jobs/breaker")

    # The calls the highlighter got during the outage, against the retry schedule alone.
    posts, probes = int(during["posts"]), int(during["probes"])
    alone = schedule_calls(created, ended)
    print(f"\noutage of {ended - began:.1f} s: {posts} highlight calls and {probes} probes "
          f"with the breaker; the retry schedule alone: {alone} calls, "
          f"and all {SNIPPETS} snippets dead")
    assert posts <= SNIPPETS
    assert posts == at_open["posts"]  # no highlight call after the breaker opened
    assert posts + probes < alone / 2
    _write_note(ended - began, posts, probes, alone, kinds.count("probe"))


async def _opened(redis: ArqRedis) -> control.Breaker | None:
    state = await control.breaker_state(redis)
    return state if state.open else None


async def _closed(redis: ArqRedis) -> bool:
    return not (await control.breaker_state(redis)).open


def _write_note(seconds: float, posts: int, probes: int, alone: int, failed: int) -> None:
    """The outage's figures, in var/figures/breaker-outage.txt (and on stdout with -s)."""
    text = (
        f"{SNIPPETS} snippets posted during an outage of {seconds:.1f} s "
        f"(HIGHLIGHT_RETRIES={RETRIES}, RETRY_DELAY_SCALE={SCALE}, "
        f"BREAKER_FAILURES={FAILURES}): the highlighter got {posts} highlight calls and "
        f"{probes} GET /languages requests ({failed} failed probes before one succeeded); "
        f"the retry schedule alone would have made {alone} calls in that time.\n")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(text)
    print(text, end="")


@pytest.fixture
async def redis_only(valkey: str) -> AsyncIterator[ArqRedis]:
    redis = await open_pool(Config.from_env({"REDIS_URL": fresh_redis_url(valkey)}))
    yield redis
    await redis.aclose()


async def test_the_rules_count_every_workers_reports(redis_only: ArqRedis) -> None:
    """Consecutive failures add up across workers' reports and a success resets them; the
    error rate needs its minimum of calls; a rule set to 0 is off; one caller alone gets a
    probe and acts on the close."""
    redis = redis_only
    consecutive = control.Rules(failures=5, error_rate=0, window=30, min_calls=20)
    assert not (await control.report(redis, consecutive, 0, 3, 3)).open
    assert not (await control.report(redis, consecutive, 1, 2, 2)).open  # reset, then 2
    assert not (await control.report(redis, consecutive, 0, 2, 2)).open  # 4
    seen = await control.report(redis, consecutive, 0, 1, 1, "highlighter answered 503")
    assert seen.open and seen.epoch == 1 and seen.next_probe_at > time.time()
    state = await control.breaker_state(redis)
    assert state.reason == "5 consecutive transient failures; last: highlighter answered 503"
    assert await control.probe_due(redis, 5) == 0  # not before its time
    await redis.hset(control.BREAKER, "next_probe_at", "0")  # type: ignore[misc]
    assert [await control.probe_due(redis, 5) for _ in range(3)] == [1, 0, 0]
    opened_at = await control.close_breaker(redis, "probe 1 answered")
    assert opened_at == state.since
    assert await control.close_breaker(redis, "again") is None

    rate = control.Rules(failures=0, error_rate=0.5, window=30, min_calls=20)
    assert not (await control.report(redis, rate, 0, 12, 12)).open  # 12 calls: too few
    assert not (await control.report(redis, rate, 7, 0, 0)).open  # 12 of 19
    seen = await control.report(redis, rate, 1, 0, 0)  # 12 of 20
    assert seen.open and seen.epoch == 3
    assert (await control.breaker_state(redis)).reason == "12 of 20 calls failed in 30 s"
    kinds = [event.kind for event in await control.breaker_history(redis, 10)]
    assert kinds == ["opened", "closed", "opened"]
