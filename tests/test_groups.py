"""Failure groups: fingerprints, groups kept up to date as records come and go (never by
scanning), a thousand dead jobs of three causes in three groups, and the pages and actions
that show and act on them."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from arq.connections import ArqRedis

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.fingerprint import fingerprint_of, message_pattern, top_frames
from snippet_service.queue import open_pool
from snippet_service.stats import JobCounter
from tasks.client import HighlighterRejected, HighlighterUnavailable
from tasks.finish import run_commands
from tasks.policy import FAILURE_DETAILS, job
from tasks.retry import RetryPolicy
from tests.conftest import MakeStack, fresh_redis_url
from tests.helpers import create_via_api, form_token, token_cookie, until, wait_for_snippet

CONFIG = Config(job_timeout=1, highlight_retries=0, retry_delay_scale=0.01)


@pytest.mark.parametrize(("message", "pattern"), [
    ("highlighter answered 503: busy", "highlighter answered <n>: busy"),
    ("Cannot connect to host 127.0.0.1:8081 ssl:default [Connection refused]",
     "Cannot connect to host <address> ssl:default [Connection refused]"),
    ("GET http://user:pw@highlight-7.internal:8081/languages failed",
     "GET http://<host>/languages failed"),
    ("job 9b2f1c4e-6a0d-4c55-9d1e-0c7e2a51f3aa at 0x7f3a2c1d9e80 token deadbeef42",
     "job <uuid> at <hex> token <hex>"),
    ("unknown language 'brainfuck' for snippet 12345", "unknown language <str> for snippet <n>"),
    ('no lexer "foo-bar"', "no lexer <str>"),
    ("peer [::1]:6379 and fe80::1:2:3 went away", "peer <address> and <address> went away"),
    ("took   2.5 s\nthen  gave up", "took <n> s then gave up"),
])
def test_a_message_loses_its_variable_parts(message: str, pattern: str) -> None:
    assert message_pattern(message) == pattern


def _traceback_of(exc: BaseException) -> str:
    import traceback
    return "".join(traceback.format_exception(exc))


def _inner(n: int) -> None:
    raise ValueError(f"bad value {n}")


def _outer(n: int) -> None:
    try:
        _inner(n)
    except ValueError as exc:
        raise RuntimeError(f"wrapped {n}") from exc


def _caught(call: Any, *args: Any) -> BaseException:
    try:
        call(*args)
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def test_top_frames_are_the_exceptions_own_innermost_without_line_numbers() -> None:
    frames = top_frames(_traceback_of(_caught(_outer, 1)))
    assert frames == ["tests/test_groups.py:_caught", "tests/test_groups.py:_outer"]
    inner = top_frames(_traceback_of(_caught(_inner, 1)))
    assert inner == ["tests/test_groups.py:_caught", "tests/test_groups.py:_inner"]
    assert top_frames("no traceback at all") == []


def test_a_fingerprint_is_short_stable_and_tells_causes_apart() -> None:
    first = _caught(_outer, 1)
    again = _caught(_outer, 2)
    fp = fingerprint_of("f", "RuntimeError", str(first), _traceback_of(first))
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    assert fingerprint_of("f", "RuntimeError", str(again), _traceback_of(again)) == fp
    other_place = _caught(_inner, 1)
    assert fingerprint_of("f", "RuntimeError", str(first), _traceback_of(other_place)) != fp
    assert fingerprint_of("g", "RuntimeError", str(first), _traceback_of(first)) != fp
    assert fingerprint_of("f", "ValueError", str(first), _traceback_of(first)) != fp


@pytest.fixture
async def redis(valkey: str) -> AsyncIterator[ArqRedis]:
    pool = await open_pool(Config(redis_url=fresh_redis_url(valkey)))
    yield pool
    await pool.aclose(close_connection_pool=True)


def record(job_id: str, error: str, *, language: str = "python", at: float | None = None,
           error_class: str = "E", function: str = "highlight_snippet") -> deadset.FailedJob:
    return deadset.FailedJob(job_id, function, [1], error_class, error, "", 1, 3,
                             at or time.time(), extra={"language": language})


def summary(groups: list[deadset.Group]) -> dict[str, tuple[int, dict[str, int]]]:
    return {group.pattern: (group.count, group.languages) for group in groups}


async def test_groups_follow_records_in_and_out_of_the_dead_set(redis: ArqRedis) -> None:
    now = time.time()
    for n in range(30):
        await deadset.record_dead(redis, record(
            f"highlight:{n}:1", f"answered {500 + n % 3}" if n % 2 else f"refused #{n}",
            language="c" if n % 5 == 0 else "python", at=now - 100 + n))
    groups = await deadset.groups(redis, "dead")
    assert summary(groups) == {"answered <n>": (15, {"python": 12, "c": 3}),
                               "refused #<n>": (15, {"python": 12, "c": 3})}
    answered = next(group for group in groups if group.pattern == "answered <n>")
    assert (answered.first_seen, answered.last_seen) == (now - 99, now - 71)
    assert groups[0] is answered  # the most recently seen first

    assert await deadset.remove_dead(redis, "highlight:29:1")  # the newest goes
    assert not await deadset.remove_dead(redis, "highlight:29:1")
    answered = (await deadset.groups(redis, "dead"))[1]
    assert (answered.count, answered.last_seen) == (14, now - 73)

    assert await deadset.trim_dead(redis, max_entries=10, max_age=1e12) == 19
    groups = await deadset.groups(redis, "dead")
    assert sum(group.count for group in groups) == 10 == await deadset.dead_count(redis)
    assert await deadset.trim_dead(redis, max_age=time.time() - now + 90) == 0
    assert await deadset.trim_dead(redis, max_age=time.time() - now + 75.5) == 6
    assert sum(group.count for group in await deadset.groups(redis, "dead")) == 4

    assert await deadset.clear_dead(redis) == 4
    assert await deadset.groups(redis, "dead") == []
    assert await redis.keys("snippets:group*") == []


async def test_a_retried_job_moves_between_groups_and_leaves_when_it_succeeds(
        redis: ArqRedis) -> None:
    for n in range(5):
        await deadset.record_retry(redis, record(f"job-{n}", f"timeout after {n} s"))
    [group] = await deadset.groups(redis, "retry")
    assert (group.count, group.pattern) == (5, "timeout after <n> s")

    await deadset.record_retry(redis, record("job-0", "connection reset by 10.0.0.7"))
    assert summary(await deadset.groups(redis, "retry")) == {
        "timeout after <n> s": (4, {"python": 4}),
        "connection reset by <address>": (1, {"python": 1})}

    # A retried job that succeeds is forgotten by plain commands in its finish batch.
    await run_commands(redis, deadset.forget_commands("job-1"))
    await run_commands(redis, deadset.forget_commands("job-2"))
    assert summary(await deadset.groups(redis, "retry"))["timeout after <n> s"][0] == 2
    assert await deadset.group_members(redis, "retry", group.fingerprint, 10) == [
        "job-4", "job-3"]

    await deadset.forget_job(redis, "job-3")
    await deadset.record_dead(redis, await deadset.get_retrying(redis, "job-4") or record(
        "x", "x"))
    await deadset.record_dead(redis, record("job-0", "connection reset by 10.0.0.8"))
    assert await deadset.groups(redis, "retry") == []
    assert summary(await deadset.groups(redis, "dead")) == {
        "timeout after <n> s": (1, {"python": 1}),
        "connection reset by <address>": (1, {"python": 1})}
    assert await redis.keys("snippets:group:retry*") == []
    assert await redis.hlen("snippets:groups:retry:of") == 0  # type: ignore[misc]


LANGUAGES = ("python", "c", "rust")


def _refuse(n: int) -> None:
    raise HighlighterRejected(f"highlighter answered 400: unknown language 'x{n % 7}'", 400)


def _too_large(n: int) -> None:
    raise HighlighterRejected(f"the answer ({2_000_000 + n} bytes) is over 1048576 bytes")


def _bug(n: int) -> None:
    raise LookupError(f"snippet {n} has no row {uuid.uuid4()} at 0x{id(n):x}")


CAUSES = [_refuse] * 5 + [_too_large] * 3 + [_bug] * 2  # 500, 300 and 200 of 1,000


async def highlight_failing(ctx: dict[str, Any], snippet_id: int) -> str:
    """Fails as the highlight job does (saying its snippet's language first), for one of
    three causes by snippet id."""
    ctx[FAILURE_DETAILS] = {"language": LANGUAGES[snippet_id % 3]}
    CAUSES[snippet_id % 10](snippet_id)
    return "never"


async def kill_a_thousand(redis: ArqRedis) -> float:
    """1,000 jobs die through the retry policy, as in the worker; returns the seconds."""
    policy = RetryPolicy(retry=3, timeout=5, retry_on=(HighlighterUnavailable,),
                         fails_on=(HighlighterRejected,))
    function = job(highlight_failing, name="highlight_snippet", policy=policy)
    started = time.perf_counter()
    for n in range(1000):
        ctx = {"redis": redis, "job_id": f"highlight:{n}:1", "job_try": 1, "config": CONFIG,
               "stats": JobCounter(), "queue_name": "snippets:queue"}
        assert (await function.coroutine(ctx, n)).startswith("dead: ")
    return time.perf_counter() - started


async def post_action(http: aiohttp.ClientSession, url: str, token: str,
                      path: str) -> aiohttp.ClientResponse:
    async with http.post(f"{url}{path}", data={"csrf_token": token}, allow_redirects=False,
                         headers=token_cookie(token)) as response:
        await response.read()
        return response


@pytest.mark.timeout(120)
async def test_a_thousand_dead_jobs_of_three_causes_are_three_groups(
        valkey: str, make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    redis_url = fresh_redis_url(valkey)
    pool = await open_pool(Config(redis_url=redis_url))
    try:
        seconds = await kill_a_thousand(pool)
        print(f"1,000 jobs dead through the retry policy in {seconds:.2f} s")
        groups = await deadset.groups(pool, "dead")
        assert await deadset.group_count(pool, "dead") == 3
        by_count = {group.count: group for group in groups}
        assert sorted(by_count) == [200, 300, 500]
        refused, too_large, bug = by_count[500], by_count[300], by_count[200]
        assert (refused.error_class, refused.pattern) == (
            "HighlighterRejected", "highlighter answered <n>: unknown language <str>")
        assert refused.frames[-1] == "tests/test_groups.py:_refuse"
        assert too_large.pattern == "the answer (<n> bytes) is over <n> bytes"
        assert (bug.error_class, bug.pattern) == (
            "LookupError", "snippet <n> has no row <uuid> at <hex>")
        assert bug.frames[-2:] == ["tests/test_groups.py:highlight_failing",
                                   "tests/test_groups.py:_bug"]
        assert refused.languages == {"python": 167, "c": 167, "rust": 166}
        assert sum(too_large.languages.values()) == 300
        assert refused.last_seen >= too_large.first_seen >= refused.first_seen
        members = await deadset.group_members(pool, "dead", bug.fingerprint, 1000)
        assert len(members) == 200 and all(int(m.split(":")[1]) % 10 >= 8 for m in members)

        stack = make_stack(redis_url=redis_url)
        async with http.get(f"{stack.url}/jobs/dead/groups") as response:
            assert response.status == 200
            page = await response.text()
        assert "Dead by failure <small>3 groups, 1000 jobs</small>" in page
        for group in (refused, too_large, bug):
            row = page[page.index(f'id="group-{group.fingerprint}"'):]
            row = row[:row.index("</tr>")]
            assert f">{group.count}</a>" in row and "python (" in row
            assert html.escape(group.pattern) in row
        async with http.get(f"{stack.url}/jobs/dead/groups/{bug.fingerprint}?page=8") as response:
            assert response.status == 200
            assert "page 8 of 8" in await response.text()
        async with http.get(f"{stack.url}/jobs/dead/groups/{'0' * 16}") as response:
            assert response.status == 404

        token = await form_token(http, stack.url)
        base = f"/jobs/dead/groups/{refused.fingerprint}"
        async with http.post(f"{stack.url}{base}/retry", data={},
                             allow_redirects=False) as response:
            assert response.status == 403  # no token: refused like every dashboard action
        started = time.perf_counter()
        assert (await post_action(http, stack.url, token, f"{base}/retry")).status == 303
        print(f"retry-all of a group of 500 in {time.perf_counter() - started:.2f} s")
        assert (await post_action(http, stack.url, token,
                                  f"/jobs/dead/groups/{too_large.fingerprint}/delete")).status \
            == 303
        assert await deadset.dead_count(pool) == 200
        assert [group.count for group in await deadset.groups(pool, "dead")] == [200]
        assert re.search(rf"dashboard action dead/groups/retry by 127\.0\.0\.1 .*"
                         rf"{refused.fingerprint}", stack.web.log())
        assert re.search(rf"dead/groups/delete: 300 jobs of group {too_large.fingerprint}",
                         stack.web.log())
    finally:
        await pool.aclose()


@pytest.mark.timeout(120)
async def test_retries_and_dead_grouped_retried_and_deleted_through_a_real_worker(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    """Each of three snippets fails twice, then highlights: the first failure waits in a
    Retries group (the real schedule: 15 s or more), "retry all now" makes it dead, and
    retrying the Dead group highlights them. Two refused snippets are a group deleted."""
    stack = make_stack(highlighter_url=flaky_highlighter, HIGHLIGHT_RETRIES="1")
    flaky = [await create_via_api(http, stack.url, "err500", f"fail=2 # {uuid.uuid4()}")
             for _ in range(3)]
    refused = [await create_via_api(http, stack.url, "bad400", f"x # {uuid.uuid4()}")
               for _ in range(2)]
    pool = await open_pool(Config(redis_url=stack.redis_url))
    try:
        async def counts() -> tuple[int, int]:
            return (int(await pool.zcard(deadset.RETRY_SET)),
                    int(await pool.zcard(deadset.DEAD_SET)))

        await until(lambda: _equals(counts, (3, 2)), 20, "not 3 retrying and 2 dead")
        [waiting] = await deadset.groups(pool, "retry")
        assert (waiting.count, waiting.languages) == (3, {"err500": 3})
        assert waiting.pattern == "highlighter answered <n>: upstream exploded"
        async with http.get(f"{stack.url}/jobs/retries/groups") as response:
            page = await response.text()
        assert "Retries by failure <small>1 groups, 3 jobs</small>" in page
        assert "err500 (3)" in page and "Retry all now (3)" in page

        token = await form_token(http, stack.url)
        path = f"/jobs/retries/groups/{waiting.fingerprint}/retry"
        assert (await post_action(http, stack.url, token, path)).status == 303
        await until(lambda: _equals(counts, (0, 5)), 20, "the retried jobs did not die")
        assert await deadset.groups(pool, "retry") == []

        dead = {group.error_class: group for group in await deadset.groups(pool, "dead")}
        assert dead["HighlighterUnavailable"].fingerprint == waiting.fingerprint
        assert (dead["HighlighterUnavailable"].count, dead["HighlighterRejected"].count) == (3, 2)
        assert dead["HighlighterRejected"].languages == {"bad400": 2}
        path = f"/jobs/dead/groups/{waiting.fingerprint}/retry"
        assert (await post_action(http, stack.url, token, path)).status == 303
        for snippet in flaky:
            body = await wait_for_snippet(http, stack.url, snippet["id"], timeout=20)
            assert (body["status"], body["revision"]) == ("highlighted", 2)
        path = f"/jobs/dead/groups/{dead['HighlighterRejected'].fingerprint}/delete"
        assert (await post_action(http, stack.url, token, path)).status == 303
        assert await counts() == (0, 0)
        assert await deadset.groups(pool, "dead") == []
        for snippet in refused:
            assert (await wait_for_snippet(http, stack.url, snippet["id"], 0))["status"] \
                == "failed"
        async with http.get(f"{stack.url}/jobs/dead/groups") as response:
            assert "No dead jobs." in await response.text()
    finally:
        await pool.aclose()


async def _equals(read: Any, expected: object) -> bool:
    return bool(await read() == expected)
