"""Search: a job found by snippet id, job id or error text in the queue, Scheduled, Retries
and Dead; paged; a search that cannot run is a 400 page, never a 500."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import aiohttp
import pytest
from yarl import URL

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.queue import open_pool
from snippet_service.web.dashboard.search import BadQuery, parse
from tests.conftest import MakeStack
from tests.helpers import create_via_api, until
from tests.servers import Stack

_ROW = re.compile(r'<td class="where">(\w+)[^<]*</td>\s*<td><a href="[^"]*"><code>([^<]+)</code>')


@pytest.fixture
def search_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    """Retries on Sidekiq's real schedule: a failed job waits 15 s or more to retry."""
    return make_stack(shared=True, highlighter_url=flaky_highlighter)


async def search(http: aiohttp.ClientSession, stack: Stack, **query: str) -> tuple[int, str]:
    async with http.get(URL(f"{stack.url}/jobs/search").with_query(query)) as response:
        return response.status, await response.text()


async def found(http: aiohttp.ClientSession, stack: Stack, **query: str) -> list[tuple[str, str]]:
    """(where, job id) of each row of the search's page."""
    status, page = await search(http, stack, **query)
    assert status == 200, page
    return _ROW.findall(page)


@pytest.mark.timeout(90)
async def test_a_job_is_found_in_every_set_by_snippet_id_job_id_and_error(
        search_stack: Stack, http: aiohttp.ClientSession) -> None:
    stack = search_stack
    marker = uuid.uuid4().hex[:8]
    retrying = await create_via_api(http, stack.url, "err500", f"fail=9 # {marker}")
    dead = await create_via_api(http, stack.url, "bad400", f"x # {marker}")
    pool = await open_pool(Config(redis_url=stack.redis_url))
    try:
        async def settled() -> bool:
            return (await pool.zscore(deadset.RETRY_SET, f"highlight:{retrying['id']}:1")
                    is not None and await pool.zscore(deadset.DEAD_SET,
                                                      f"highlight:{dead['id']}:1") is not None)

        await until(settled, 20, "the failing snippets did not reach Retries and Dead")
    finally:
        await pool.aclose()
    assert stack.worker is not None
    await asyncio.to_thread(stack.worker.stop)  # what is created now stays in the queue
    queued = await create_via_api(http, stack.url, "python", f"q = 1 # {marker}")
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": f"later # {marker}", "highlight_in": 3600}) as response:
        scheduled = await response.json()

    for snippet, where in ((queued, "queued"), (scheduled, "scheduled"),
                           (retrying, "retrying"), (dead, "dead")):
        job_id = f"highlight:{snippet['id']}:1"
        assert await found(http, stack, q=str(snippet["id"]), mode="snippet") == [
            (where, job_id)]
        assert (where, job_id) in await found(http, stack, q=f"#{snippet['id']}")
        assert await found(http, stack, q=job_id, mode="job") == [(where, job_id)]
        assert (where, job_id) in await found(http, stack, q=job_id)  # any: the id itself
    prefix = f"highlight:{retrying['id']}"  # a job id's beginning
    assert await found(http, stack, q=prefix) == [("retrying", f"highlight:{retrying['id']}:1")]

    status, page = await search(http, stack, q="UPSTREAM exploded")
    assert status == 200
    assert ("retrying", f"highlight:{retrying['id']}:1") in _ROW.findall(page)
    assert "HighlighterUnavailable: highlighter answered 500: upstream exploded" in page
    assert await found(http, stack, q="bad400 is never", mode="error") == [
        ("dead", f"highlight:{dead['id']}:1")]
    assert await found(http, stack, q=f"no such thing {marker}") == []
    assert "Nothing found." in (await search(http, stack, q=f"nothing {marker}"))[1]
    status, page = await search(http, stack)
    assert status == 200 and "Nothing found." not in page and 'name="q"' in page


async def test_results_are_paged(search_stack: Stack, http: aiohttp.ClientSession) -> None:
    needle = f"paging needle {uuid.uuid4().hex[:8]}"
    pool = await open_pool(Config(redis_url=search_stack.redis_url))
    try:
        now = time.time()
        for n in range(60):
            await deadset.record_dead(pool, deadset.FailedJob(
                f"paged:{n}", "highlight_snippet", [str(n)], "E", f"{needle} {n}", "", 1, 0,
                now - 60 + n))
    finally:
        await pool.aclose()
    first = await found(http, search_stack, q=needle)
    assert first == [("dead", f"paged:{n}") for n in range(59, 34, -1)]  # newest first
    status, page = await search(http, search_stack, q=needle, page="3")
    assert "Search <small>60 found</small>" in page and "page 3 of 3" in page
    assert _ROW.findall(page) == [("dead", f"paged:{n}") for n in range(9, -1, -1)]
    assert "?page=2&amp;q=paging%20needle" in page  # the pager keeps the search


@pytest.mark.parametrize(("query", "message"), [
    ({"q": "x" * 201}, "at most 200 characters"),
    ({"q": "bad\x00byte"}, "control characters"),
    ({"q": "1", "mode": "everything"}, "Search in one of"),
    ({"q": "1", "page": "0"}, "The page is a number"),
    ({"q": "1", "page": "two"}, "The page is a number"),
    ({"q": "abc", "mode": "snippet"}, "A snippet id is like 42 or k3Jd9_x-Qa2"),
    ({"q": "k3Jd9_x-Qa2!", "mode": "snippet"}, "A snippet id is like 42"),
    ({"q": "k" * 33, "mode": "snippet"}, "A snippet id is like 42"),
])
def test_a_search_that_cannot_run_is_refused(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        parse(query)


async def test_a_bad_search_is_a_400_page(search_stack: Stack,
                                          http: aiohttp.ClientSession) -> None:
    bad: list[dict[str, Any]] = [
        {"q": "x" * 5000}, {"q": "a\x00b"}, {"q": "1", "mode": "nope"}, {"q": "1", "page": "-1"},
        {"q": "not/an-id", "mode": "snippet"}]
    for query in bad:
        status, page = await search(http, search_stack, **query)
        assert status == 400, (query, page)
        assert 'role="alert"' in page and 'name="q"' in page
    # Odd but valid: glob characters, a huge number in "any" mode, markup (escaped), a lone
    # surrogate (it arrives as U+FFFD).
    for text in ("highlight:*", "[a-z]?\\", "99999999999999999999999", "<b>x</b>", "\ud800"):
        status, page = await search(http, search_stack, q=text)
        assert status == 200, (text, page)
        assert "<b>x</b>" not in page
