"""The job decides what is transient: which failures retry, which are final at once, and
what the logs and the dead set keep of them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from arq import Retry
from arq.connections import ArqRedis

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.queue import open_pool
from snippet_service.stats import JobCounter
from tasks.client import HighlighterRejected, HighlighterUnavailable
from tasks.policy import job
from tasks.retry import RetryPolicy
from tasks.worker import expire_policy, highlight_policy
from tests.conftest import MakeStack, fresh_redis_url
from tests.fake_highlighter import REFUSAL
from tests.helpers import create_via_api, until, wait_for_snippet

CONFIG = Config(job_timeout=0.2, highlight_retries=3, retry_delay_scale=0.01)


@pytest.mark.parametrize(("failure", "transient"), [
    (HighlighterUnavailable("highlighter answered 503: busy", status=503), True),
    (HighlighterRejected("bad400 is never accepted", status=400), False),
    (KeyError("plain_code"), False),
    (TypeError("unsupported operand"), False),
    (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
    (TimeoutError("not the job's own"), False),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_the_highlight_job_retries_only_an_unavailable_highlighter(
        failure: Exception, transient: bool) -> None:
    policy = highlight_policy(CONFIG)
    assert policy.is_transient(failure) is transient
    assert policy.is_transient(failure, timed_out=True)  # its own timeout always retries
    assert policy.is_expected(failure) is isinstance(failure, HighlighterUnavailable
                                                     | HighlighterRejected)


def test_the_expire_job_retries_a_busy_database_only() -> None:
    policy = expire_policy(CONFIG)
    assert policy.is_transient(sqlite3.OperationalError("database is locked"))
    assert not policy.is_transient(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
    assert not policy.is_transient(HighlighterUnavailable("not this job's business"))


def test_on_postgresql_the_expire_job_retries_an_unreachable_database_only() -> None:
    import asyncpg

    policy = expire_policy(Config(database_url="postgresql://app@db.example/snippets"))
    assert policy.is_transient(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert policy.is_transient(asyncpg.CannotConnectNowError("the database is starting up"))
    assert policy.is_transient(asyncpg.DeadlockDetectedError("deadlock detected"))
    assert not policy.is_transient(asyncpg.UniqueViolationError("duplicate key"))
    assert not policy.is_transient(sqlite3.OperationalError("not this backend's"))


@pytest.fixture
async def redis(valkey: str) -> AsyncIterator[ArqRedis]:
    pool = await open_pool(Config(redis_url=fresh_redis_url(valkey)))
    yield pool
    await pool.aclose(close_connection_pool=True)


def job_ctx(redis: ArqRedis, job_try: int = 1) -> dict[str, Any]:
    """What arq hands a job: its pool, id and try, and what our startup puts in ctx."""
    return {"redis": redis, "job_id": f"test:{uuid.uuid4().hex}", "job_try": job_try,
            "config": CONFIG, "stats": JobCounter(), "queue_name": "test:queue"}


class Failing:
    """A job that fails the way it is told to (or sleeps past its timeout); ``dead`` keeps
    what its on_dead hook was told."""

    def __init__(self, failure: Exception | None) -> None:
        self.failure = failure
        self.dead: list[tuple[Exception, str, int]] = []

    async def run(self, ctx: dict[str, Any], snippet_id: int) -> str:
        if self.failure is None:
            await asyncio.sleep(10)
            return "never"
        raise self.failure

    async def on_dead(self, ctx: dict[str, Any], exc: Exception, message: str,
                      snippet_id: int) -> None:
        self.dead.append((exc, message, snippet_id))


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


async def run_once(failing: Failing, ctx: dict[str, Any], retries: int = 3) -> Any:
    policy = RetryPolicy(retry=retries, timeout=0.05, retry_on=(HighlighterUnavailable,),
                         fails_on=(HighlighterRejected,))
    function = job(failing.run, name="highlight_snippet", policy=policy,
                   on_dead=failing.on_dead)
    return await function.coroutine(ctx, 7)


async def test_a_programming_error_is_dead_at_once_with_its_traceback(
        redis: ArqRedis, caplog: pytest.LogCaptureFixture) -> None:
    failing = Failing(KeyError("plain_code"))
    ctx = job_ctx(redis)
    with caplog.at_level(logging.ERROR, logger="tasks.policy"):
        assert await run_once(failing, ctx) == "dead: 'plain_code'"

    dead = await deadset.get_dead(redis, ctx["job_id"])
    assert dead is not None and await deadset.get_retrying(redis, ctx["job_id"]) is None
    assert (dead.error_class, dead.tries, dead.args) == ("KeyError", 1, [7])
    assert "Traceback" in dead.traceback and "raise self.failure" in dead.traceback
    assert [(type(exc), snippet_id) for exc, _, snippet_id in failing.dead] == [(KeyError, 7)]
    [record] = errors(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "unexpected KeyError" in record.getMessage()


async def test_a_refusal_is_dead_at_once_without_a_traceback_in_the_log(
        redis: ArqRedis, caplog: pytest.LogCaptureFixture) -> None:
    failing = Failing(HighlighterRejected("bad400 is never accepted", status=400))
    ctx = job_ctx(redis)
    with caplog.at_level(logging.ERROR, logger="tasks.policy"):
        assert await run_once(failing, ctx) == "dead: bad400 is never accepted"
    dead = await deadset.get_dead(redis, ctx["job_id"])
    assert dead is not None and dead.error_class == "HighlighterRejected"
    assert "Traceback" in dead.traceback  # the dead set keeps it all the same
    [record] = errors(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is None


@pytest.mark.parametrize(("failure", "error", "delay"), [
    (HighlighterUnavailable("highlighter answered 503: busy", status=503, retry_after=2),
     "highlighter answered 503: busy", 2.0),
    (None, "the job took longer than 0.05s", None),
], ids=["unavailable-with-retry-after", "own-timeout"])
async def test_transient_failures_retry(redis: ArqRedis, failure: Exception | None,
                                        error: str, delay: float | None) -> None:
    failing = Failing(failure)
    ctx = job_ctx(redis)
    with pytest.raises(Retry) as raised:
        await run_once(failing, ctx)
    retrying = await deadset.get_retrying(redis, ctx["job_id"])
    assert retrying is not None and retrying.error == error and retrying.tries == 1
    assert retrying.next_at is not None
    if delay is not None:  # Retry-After wins over the schedule
        assert raised.value.defer_score == delay * 1000
        assert retrying.next_at == pytest.approx(retrying.failed_at + delay)
    assert failing.dead == [] and await deadset.get_dead(redis, ctx["job_id"]) is None


async def test_a_transient_failure_is_dead_once_the_retries_run_out(
        redis: ArqRedis, caplog: pytest.LogCaptureFixture) -> None:
    failing = Failing(HighlighterUnavailable("highlighter unreachable"))
    ctx = job_ctx(redis)
    with pytest.raises(Retry):
        await run_once(failing, ctx, retries=1)
    with caplog.at_level(logging.ERROR, logger="tasks.policy"):
        assert await run_once(failing, {**ctx, "job_try": 2}, retries=1) == (
            "dead: highlighter unreachable")
    dead = await deadset.get_dead(redis, ctx["job_id"])
    assert dead is not None and dead.tries == 2
    [record] = errors(caplog)
    assert "is dead after 2 tries" in record.getMessage() and record.exc_info is None


async def test_a_dead_jobs_log_line_is_json_with_its_job_and_snippet(
        make_stack: MakeStack, fake_highlighter: str, http: aiohttp.ClientSession) -> None:
    stack = make_stack(highlighter_url=fake_highlighter, LOG_FORMAT="json")
    created = await create_via_api(http, stack.url, "refused", "anything")
    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "failed" and REFUSAL in body["error"]
    assert stack.worker is not None
    worker = stack.worker

    def dead_line() -> dict[str, Any] | None:
        for line in worker.log().splitlines():
            entry: dict[str, Any] = json.loads(line)  # every line is one JSON object
            if entry["logger"] == "tasks.policy" and entry["level"] == "ERROR":
                return entry
        return None

    entry: dict[str, Any] = await until(dead_line, 10,
                                        lambda: "no dead job line in:\n" + worker.log())
    assert entry["snippet_id"] == created["id"]
    assert entry["job_id"] == f"highlight:{created['id']}:1"
    assert REFUSAL in entry["message"]
