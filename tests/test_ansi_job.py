"""The terminal colouring job end to end: a real highlighter, a worker, Valkey and the
database. ``request_ansi`` enqueues ``ansi_snippet`` for one revision (once while it is
queued), the worker stores the text with that revision and announces the snippet on the
done channel; a snippet gone or moved on is left alone, and a refusal ends the job at once
and still wakes the waiting request."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import Job
from redis.asyncio.client import PubSub

from snippet_service import db
from snippet_service.config import Config
from snippet_service.queue import DONE_CHANNEL, clear_result, deserialize, open_pool
from snippet_service.terminal import ANSI_JOB, ansi_job_id, ansi_pending, request_ansi
from tasks.ansi import clean_ansi
from tests.conftest import fresh_redis_url
from tests.helpers import wait_until
from tests.servers import Process, base_env, python, python_server

ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
CODE = 'def twice(x):\n    return x * 2  # twice\n'
IDLE_QUEUE = "ansi-test:idle"  # no worker takes jobs from it


@pytest.fixture(scope="module")
def highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, port = python_server("highlighter", ["-m", "snippet_service.highlighter"],
                                  base_env(), tmp_path_factory.mktemp("highlighter"),
                                  "HIGHLIGHTER_PORT")
    yield f"http://127.0.0.1:{port}/"
    process.stop()


@dataclass
class World:
    config: Config
    database: db.Database
    redis: ArqRedis
    done: PubSub
    worker: Process

    async def snippet(self, code: str = CODE) -> db.Snippet:
        return await db.create_snippet(self.database, "python", code, highlight_in=3600)

    async def result(self, snippet_id: str, revision: int, timeout: float = 20.0) -> str:
        job = Job(ansi_job_id(snippet_id, revision), self.redis, self.config.queue_name,
                  _deserializer=deserialize)
        try:
            return str(await job.result(timeout=timeout))
        except TimeoutError:
            raise AssertionError("the job never finished:\n" + self.worker.log()) from None

    async def announced(self, timeout: float = 10.0) -> list[str]:
        """Snippet ids published on the done channel, waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        found: list[str] = []
        while not found and time.monotonic() < deadline:
            message = await self.done.get_message(ignore_subscribe_messages=True,
                                                  timeout=deadline - time.monotonic())
            while message is not None:
                found.append(message["data"].decode())
                message = await self.done.get_message(ignore_subscribe_messages=True,
                                                      timeout=0.1)
        return found


MakeWorld = Callable[[str], Awaitable[World]]


@pytest.fixture
async def make_world(valkey: str, tmp_path: Path) -> AsyncIterator[MakeWorld]:
    """``await make_world(highlighter_url)``: a worker on a SQLite file and a Valkey
    database of their own, with the test's own access to both."""
    async with AsyncExitStack() as stack:
        async def make(highlighter_url: str) -> World:
            redis_url = fresh_redis_url(valkey)
            db_path = tmp_path / "snippets.db"
            config = Config(redis_url=redis_url, db_path=db_path)
            database = await stack.enter_async_context(db.database_ctx(config))
            redis = await open_pool(config)
            stack.push_async_callback(redis.aclose)
            done = redis.pubsub()
            await done.subscribe(DONE_CHANNEL)
            stack.push_async_callback(done.aclose)
            env = base_env(REDIS_URL=redis_url, SNIPPETS_DB=str(db_path),
                           HIGHLIGHTER_URL=highlighter_url, RETRY_DELAY_SCALE="0.01")
            worker = python("worker", ["run_worker.py"], env, tmp_path)
            stack.callback(worker.stop)
            wait_until(lambda: "Starting worker" in worker.log() or worker.popen.poll(), 20,
                       lambda: "the worker did not start:\n" + worker.log())
            assert worker.popen.poll() is None, worker.log()
            assert ANSI_JOB in worker.log()
            return World(config, database, redis, done, worker)

        yield make


async def test_the_job_stores_the_text_and_wakes_the_waiter(
        make_world: MakeWorld, highlighter: str) -> None:
    world = await make_world(highlighter)
    snippet = await world.snippet()
    await request_ansi(world.redis, snippet.id, snippet.revision, world.config.queue_name)
    assert await world.result(snippet.id, snippet.revision) == "stored"
    assert snippet.id in await world.announced()
    stored = await db.get_snippet(world.database, snippet.id)
    assert stored.ansi_revision == snippet.revision and stored.ansi_code is not None
    assert "\x1b[38;5;" in stored.ansi_code
    assert ESCAPES.sub("", stored.ansi_code) == CODE
    assert not await ansi_pending(world.redis, snippet.id, snippet.revision)

    # its result is kept a while: asking again does nothing; once it is gone, the job
    # runs again and finds the text already there
    await request_ansi(world.redis, snippet.id, snippet.revision, world.config.queue_name)
    assert not await ansi_pending(world.redis, snippet.id, snippet.revision)
    await clear_result(world.redis, ansi_job_id(snippet.id, snippet.revision))
    await request_ansi(world.redis, snippet.id, snippet.revision, world.config.queue_name)
    assert await world.result(snippet.id, snippet.revision) == "already done"


async def test_a_snippet_gone_or_moved_on_is_left_alone(
        make_world: MakeWorld, highlighter: str) -> None:
    world = await make_world(highlighter)
    queue = world.config.queue_name
    await request_ansi(world.redis, "NoSuchSnippet1", 1, queue)
    assert await world.result("NoSuchSnippet1", 1) == "gone"

    snippet = await world.snippet()
    moved = await db.rehighlight(world.database, snippet.id)
    assert moved.revision > snippet.revision
    await request_ansi(world.redis, snippet.id, snippet.revision, queue)
    assert await world.result(snippet.id, snippet.revision) == \
        f"superseded by revision {moved.revision}"
    stored = await db.get_snippet(world.database, snippet.id)
    assert (stored.ansi_code, stored.ansi_revision) == (None, None)


async def test_a_refusal_is_final_and_still_wakes_the_waiter(
        make_world: MakeWorld, fake_highlighter: str) -> None:
    """The stand-in highlighter answers HTML whatever is asked: the worker refuses that
    answer, the job is dead at once, and the waiting request is told."""
    world = await make_world(fake_highlighter)
    snippet = await world.snippet()
    await request_ansi(world.redis, snippet.id, snippet.revision, world.config.queue_name)
    result = await world.result(snippet.id, snippet.revision)
    assert result.startswith("dead: ") and "not text/plain" in result
    assert snippet.id in await world.announced()
    assert not await ansi_pending(world.redis, snippet.id, snippet.revision)
    stored = await db.get_snippet(world.database, snippet.id)
    assert stored.ansi_code is None


async def test_a_second_request_while_one_is_queued_does_nothing(valkey: str) -> None:
    redis = await open_pool(Config(redis_url=fresh_redis_url(valkey)))
    try:
        for _ in range(3):
            await request_ansi(redis, "AbCdEfGhIj_1", 4, IDLE_QUEUE)
        await request_ansi(redis, "AbCdEfGhIj_1", 5, IDLE_QUEUE)
        queued = [raw.decode() for raw in await redis.zrange(IDLE_QUEUE, 0, -1)]
        assert sorted(queued) == ["ansi:AbCdEfGhIj_1:4", "ansi:AbCdEfGhIj_1:5"]
        payload = json.loads(await redis.get(job_key_prefix + "ansi:AbCdEfGhIj_1:4"))
        assert (payload["f"], payload["a"]) == (ANSI_JOB, ["AbCdEfGhIj_1", 4])
        assert await ansi_pending(redis, "AbCdEfGhIj_1", 4)
        assert not await ansi_pending(redis, "AbCdEfGhIj_1", 6)
        assert 0 < await redis.pttl(job_key_prefix + "ansi:AbCdEfGhIj_1:4") <= 3600 * 1000
    finally:
        await redis.aclose()


def test_only_colours_of_the_highlighters_answer_are_stored() -> None:
    coloured = "\x1b[38;5;28;01mdef\x1b[39;00m f():\n\tpass\n"
    assert clean_ansi(coloured) == coloured
    hostile = "\x1b]0;title\x07\x1b[2J\x1b[38;5;1mx\x1b[39m\x9b1m\r\x7f\n"
    assert clean_ansi(hostile) == \
        "\u241b]0;title\u2407\u241b[2J\x1b[38;5;1mx\x1b[39m\ufffd1m\u240d\u2421\n"


def test_the_job_id_names_the_revision() -> None:
    assert ansi_job_id("AbCdEfGhIj_1", 3) == "ansi:AbCdEfGhIj_1:3"
    assert ansi_job_id("42", 1) == "ansi:42:1"
